"""The admin web console in a real headless browser: Playwright driving Debian's chromium
(scripts/install-browser). An admin signs in with a one-time link and works through a
review queue of three items with the keyboard; screenshots of each page at desktop and
phone widths are written to $SELFIEBOOTH_SCREENSHOTS (the README's come from there)."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from test_web_console import ADMIN, booth, seed_week, three_items  # noqa: F401 (a fixture)

from bot.core import Booth
from bot.web import add_console_routes
from engine.jobs import ImagineRequest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or ""
if not CHROMIUM:
    pytest.skip(
        "no chromium on this machine: run scripts/install-browser (Debian's package)",
        allow_module_level=True,
    )
playwright = pytest.importorskip(
    "playwright.async_api", reason="Playwright is not installed: scripts/setup installs it"
)

# As the machine's own probe starts it: no sandbox as root, and no background traffic to
# hosts a closed network refuses.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
async def base_url(booth: Booth) -> AsyncIterator[str]:  # noqa: F811
    app = web.Application()
    add_console_routes(app, booth)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    async with playwright.async_playwright() as p:
        chromium = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield chromium
        await chromium.close()


async def test_an_admin_works_through_the_review_queue_with_the_keyboard(
    booth: Booth,  # noqa: F811
    base_url: str,
    browser: object,
    tmp_path: Path,
) -> None:
    items = await three_items(booth)
    link = await booth.admin.web_link(ADMIN)
    path = "/signin/" + link.split("/signin/")[1].split()[0]
    shots = Path(os.environ.get("SELFIEBOOTH_SCREENSHOTS") or tmp_path)
    os.makedirs(shots, exist_ok=True)

    page = await browser.new_page(viewport=SIZES["desktop"])  # type: ignore[attr-defined]
    blocked: list[str] = []
    page.on("console", lambda message: blocked.append(message.text))
    await page.goto(base_url + path)
    assert page.url == base_url + "/review"
    assert await page.locator(".item").count() == 3
    # The picture of the image item loads (signed URL, same session), and nothing on the
    # page breaks the Content-Security-Policy.
    loaded = await page.eval_on_selector("img", "img => img.complete && img.naturalWidth")
    assert loaded == 64
    await page.screenshot(path=str(shots / "review-desktop.png"), full_page=True)
    await page.set_viewport_size(SIZES["phone"])
    await page.screenshot(path=str(shots / "review-phone.png"), full_page=True)

    for key, count in (("a", 2), ("r", 1), ("b", 0)):
        await page.keyboard.press(key)
        await page.wait_for_load_state("load")
        await page.locator(".said").wait_for()
        assert await page.locator(".item").count() == count
    assert "The review queue is empty." in await page.content()

    decided = [await booth.repo.review_item(i) for i in items]
    assert [d.status for d in decided if d] == ["approved", "rejected", "banned"]
    actions = [e.action for e in await booth.repo.audit_entries(3)]
    assert actions == ["admin.review.ban", "admin.review.reject", "admin.review.approve"]

    for platform_id in ("77", "78"):
        user = await booth.repo.get_or_create_user("telegram", platform_id)
        await booth.jobs.enqueue(user.id, ImagineRequest("me on the moon"))
    maker = await booth.repo.find_user("telegram", "77")
    assert maker is not None
    await booth.admin.blocklist_add(ADMIN, "violence", "grond hammer")
    pages = ("queue", "audit", "blocklist", "styles")
    for name, where in (*((p, p) for p in pages), ("user", f"users/{maker.id}")):
        await page.goto(f"{base_url}/{where}")
        if name == "queue":
            assert await page.locator("tbody tr").count() == 2
        for size, viewport in SIZES.items():
            await page.set_viewport_size(viewport)
            await page.screenshot(path=str(shots / f"{name}-{size}.png"), full_page=True)
    await seed_week(booth)
    await page.goto(f"{base_url}/figures?window=week")
    assert await page.locator("svg.chart").count() == 5
    for size, viewport in SIZES.items():
        await page.set_viewport_size(viewport)
        await page.screenshot(path=str(shots / f"figures-{size}.png"), full_page=True)
    assert not [m for m in blocked if "Content Security Policy" in m], blocked

    # The link is spent: opening it again in a fresh browser is refused.
    again = await browser.new_page()  # type: ignore[attr-defined]
    answer = await again.goto(base_url + path)
    assert answer is not None and answer.status == 403
