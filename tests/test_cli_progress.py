"""The command line's progress: a bar redrawn in place on a terminal, a few plain lines
elsewhere, instead of a line per step."""

from __future__ import annotations

import io

from bot.cli.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_pipe_gets_the_first_step_and_one_line_per_tenth() -> None:
    out = io.StringIO()
    with Progress("job 3", stream=out) as progress:
        for step in range(1, 31):
            progress.update(step, 30, f"loss {1 / step:.4f}")
        progress.note("paused: making way for pictures")
    lines = out.getvalue().splitlines()
    assert lines[0] == "  step 1/30, loss 1.0000"
    assert [line.split(",")[0] for line in lines[1:-1]] == [
        f"  step {n}/30" for n in range(3, 31, 3)
    ]
    assert lines[-1] == "  paused: making way for pictures"


def test_a_terminal_gets_one_bar_redrawn_in_place() -> None:
    out = Terminal()
    with Progress("job 3", stream=out) as progress:
        for step in range(1, 31):
            progress.update(step, 30, "about 4 s left")
        progress.note("retrying: the engine stopped")
    text = out.getvalue()
    assert text.count("\n") <= 3  # the bar, the note and the bar again: not 30 lines
    assert "\r" in text and "30/30" in text and "about 4 s left" in text
    assert "job 3" in text and "  retrying: the engine stopped\n" in text


def test_a_new_total_starts_a_new_bar() -> None:
    out = Terminal()
    progress = Progress("analysing", unit="photo", stream=out)
    progress.update(1, 2)
    progress.update(2, 2)
    progress.update(1, 5)
    progress.close()
    assert "2/2" in out.getvalue() and "1/5" in out.getvalue()
