// Keyboard shortcuts of the review queue: j/k move between items, a/r/b press the
// focused item's Approve, Reject or Ban button. Keys typed into a text field are text.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const items = Array.from(document.querySelectorAll(".item"));
  if (items.length) {
    items[0].focus();
  }
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) {
      return;
    }
    const current = items.indexOf(document.activeElement.closest(".item"));
    if (event.key === "j" || event.key === "k") {
      const next = current + (event.key === "j" ? 1 : -1);
      if (next >= 0 && next < items.length) {
        items[next].focus();
      }
      return;
    }
    const item = items[current < 0 ? 0 : current];
    const button = item && item.querySelector(`button[data-key="${event.key}"]`);
    if (button) {
      event.preventDefault();
      button.click();
    }
  });
});
