"""The admin web console over real HTTP on loopback: sign-in links, sessions, the review
queue with its pictures, CSRF and the security headers (bot.web)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html import unescape as html_unescape
from pathlib import Path

import pytest
from aiohttp import ClientSession, CookieJar, FormData, web
from aiohttp.test_utils import TestServer
from helpers_images import encode, gradient, person
from helpers_styles import lora_file

from bot.config import Config
from bot.core import Booth, Identity, Upload, open_booth
from bot.core.dispatcher import QUEUE_PAUSED
from bot.core.types import NotAuthorized
from bot.web import add_console_routes
from bot.web.console import COOKIE
from bot.web.figures import window
from engine.intake import FaceAnalyzer
from engine.jobs import ImagineRequest

ADMIN = Identity("telegram", "1001")
OTHER_ADMIN = Identity("discord", "2002")


@pytest.fixture
async def booth(config: Config, analyzer: FaceAnalyzer) -> AsyncIterator[Booth]:
    config = dataclasses.replace(
        config,
        telegram=dataclasses.replace(config.telegram, admin_ids=("1001",)),
        discord=dataclasses.replace(config.discord, admin_ids=("2002",)),
        web=dataclasses.replace(config.web, listen="127.0.0.1:8080"),
    )
    async with open_booth(config, analyzer) as booth:
        yield booth


@pytest.fixture
async def server(booth: Booth) -> AsyncIterator[TestServer]:
    app = web.Application()
    add_console_routes(app, booth)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


def browser(server: TestServer) -> ClientSession:
    # unsafe: keep cookies of an IP address host (127.0.0.1), as browsers do.
    return ClientSession(str(server.make_url("")), cookie_jar=CookieJar(unsafe=True))


async def sign_in(booth: Booth, server: TestServer, who: Identity = ADMIN) -> ClientSession:
    """A browser-like client signed in through a fresh link of `who`."""
    link = await booth.admin.web_link(who)
    path = re.search(r"https?://\S+?(/signin/\S+)", link)
    assert path is not None, link
    client = browser(server)
    async with client.get(path[1], allow_redirects=False) as response:
        assert response.status == 303 and response.headers["Location"] == "/review"
        cookie = response.cookies[COOKIE]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
    return client


async def three_items(booth: Booth) -> list[int]:
    user = await booth.repo.get_or_create_user("telegram", "77")
    blob = await booth.blobs.put(encode(gradient(64, 48), "PNG"))
    return [
        await booth.repo.add_review_item(
            "prompt", user.id, {"prompt": "a bad one", "category": "violence", "field": "prompt"}
        ),
        await booth.repo.add_review_item(
            "image", user.id, {"classes": ["FEMALE_BREAST_EXPOSED"]}, blob=blob
        ),
        await booth.repo.add_review_item(
            "prompt", user.id, {"prompt": "another", "category": "hate", "field": "negative"}
        ),
    ]


async def test_a_link_signs_in_once_and_the_queue_is_decided(
    booth: Booth, server: TestServer
) -> None:
    items = await three_items(booth)
    client = await sign_in(booth, server)
    async with client:
        async with client.get("/review") as page:
            html = await page.text()
            assert page.status == 200
            headers = page.headers
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY" and headers["Cache-Control"] == "no-store"
        assert "<script>" not in html  # no inline script
        assert [f"item-{i}" in html for i in items] == [True] * 3
        assert "a bad one" in html and "violence" in html
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        pictures = re.findall(r'<img src="(/review/\d+/picture/\w+)"', html)
        assert csrf is not None and len(pictures) == 1

        async with client.get(pictures[0]) as picture:
            assert picture.status == 200 and picture.content_type == "image/png"
            assert picture.headers["Cache-Control"] == "no-store"
        for item, decision in zip(items, ("approve", "reject", "ban"), strict=True):
            form = {"csrf": csrf[1], "decision": decision, "reason": f"web {decision}"}
            async with client.post(f"/review/{item}", data=form) as answer:
                said = f"Review item {item} {decision.rstrip('e')}"
                assert answer.status == 200 and said in await answer.text()
        async with client.get("/review") as page:
            assert "The review queue is empty." in await page.text()
        async with client.get(pictures[0]) as picture:
            assert picture.status == 404  # decided: no longer shown

    decided = [await booth.repo.review_item(i) for i in items]
    assert [(d.status, d.resolved_by) for d in decided if d] == [
        ("approved", "telegram:1001"),
        ("rejected", "telegram:1001"),
        ("banned", "telegram:1001"),
    ]
    actions = [e.action for e in await booth.repo.audit_entries()]
    assert actions[:4] == [
        "admin.review.ban",
        "admin.review.reject",
        "admin.review.approve",
        "admin.web.signin",
    ]


async def test_spent_expired_and_foreign_links_are_refused(
    booth: Booth, server: TestServer
) -> None:
    link = await booth.admin.web_link(ADMIN)
    path = "/signin/" + link.split("/signin/")[1].split()[0]
    async with browser(server) as client:
        async with client.get(path, allow_redirects=False) as first:
            assert first.status == 303
        async with client.get(path, allow_redirects=False) as again:
            assert again.status == 403 and "used, expired" in await again.text()
            assert COOKIE not in again.cookies
        async with client.get("/signin/made-up-token") as made_up:
            assert made_up.status == 403

        stale = await booth.admin.web_link(ADMIN)
        old = (datetime.now(UTC) - timedelta(minutes=6)).isoformat(timespec="milliseconds")
        await booth.repo.db.conn.execute("UPDATE web_links SET expires_at = ?", (old,))
        async with client.get("/signin/" + stale.split("/signin/")[1].split()[0]) as expired:
            assert expired.status == 403

    with pytest.raises(NotAuthorized):
        await booth.admin.web_link(Identity("telegram", "77"))


async def test_no_cookie_no_csrf_and_a_removed_admin_are_refused(
    booth: Booth, server: TestServer
) -> None:
    items = await three_items(booth)
    client = await sign_in(booth, server)
    async with client:
        async with client.get("/review") as page:
            html = await page.text()
        picture = re.findall(r'<img src="(/review/\d+/picture/\w+)"', html)[0]
        async with browser(server) as stranger:
            async with stranger.get(picture) as response:
                assert response.status == 401
            async with stranger.get("/review") as response:
                assert response.status == 401 and "/admin web" in await response.text()
        # Another session's signature does not open the picture either.
        other = await sign_in(booth, server, OTHER_ADMIN)
        async with other, other.get(picture) as response:
            assert response.status == 404

        async with client.post(f"/review/{items[0]}", data={"decision": "ban"}) as response:
            assert response.status == 403
        item = await booth.repo.review_item(items[0])
        assert item is not None and item.status == "open"

        # Removed from the config: locked out at the next request.
        config = booth.admin.authorization.config
        booth.admin.authorization.config = dataclasses.replace(
            config, telegram=dataclasses.replace(config.telegram, admin_ids=())
        )
        async with client.get("/review") as response:
            assert response.status == 401
        booth.admin.authorization.config = config
        async with client.get("/review") as response:
            assert response.status == 401  # the session was closed, not just refused


async def test_the_queue_pauses_and_the_audit_log_pages_and_filters(
    booth: Booth, server: TestServer
) -> None:
    user = await booth.repo.get_or_create_user("telegram", "77")
    jobs = [await booth.jobs.enqueue(user.id, ImagineRequest(f"a cat {n}")) for n in range(2)]
    for n in range(60):
        await booth.repo.audit("telegram:1001", "admin.quota", {"user": n % 3})
    client = await sign_in(booth, server)
    async with client:
        async with client.get("/queue") as page:
            html = await page.text()
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf is not None and "Nothing is running." in html
        rows = re.findall(r'"Position">(\d+)</td><td data-label="Job">(\d+)</td>', html)
        assert rows == [("1", str(jobs[0].id)), ("2", str(jobs[1].id))]
        form = {"csrf": csrf[1], "action": "pause", "reason": "upgrade"}
        async with client.post("/queue", data=form) as paused:
            assert "Paused: upgrade" in await paused.text()
        assert await booth.repo.setting(QUEUE_PAUSED) == "upgrade"
        async with client.post("/queue", data={**form, "action": "resume"}) as resumed:
            assert "Pause</button>" in await resumed.text()
        assert await booth.repo.setting(QUEUE_PAUSED) is None

        async with client.get("/audit") as page:
            first = await page.text()
        shown = [int(n) for n in re.findall(r'<tr><td data-label="#">(\d+)</td>', first)]
        assert len(shown) == 50 and shown == sorted(shown, reverse=True)
        older = re.search(r'<a href="(/audit\?[^"]+)">Older entries', first)
        assert older is not None
        async with client.get(older[1].replace("&amp;", "&")) as page:
            rest = [
                int(n) for n in re.findall(r'<tr><td data-label="#">(\d+)</td>', await page.text())
            ]
        assert rest and max(rest) < min(shown)
        async with client.get("/audit", params={"action": "admin.pause"}) as page:
            paused_rows = re.findall(r'"Action">(admin\.[a-z.]+)</td>', await page.text())
        assert paused_rows == ["admin.pause"]
        async with client.get("/audit", params={"user": "#2", "action": "admin.quota"}) as page:
            about = re.findall(r'data-label="Detail">([^<]+)</td>', await page.text())
        assert len(about) == 20 and all(html_unescape(d) == '{"user": 2}' for d in about)


async def test_a_users_page_shows_photos_only_when_asked_and_purge_needs_typing(
    booth: Booth, server: TestServer, faces: Path
) -> None:
    ann = Identity("telegram", "77")
    await booth.accept_consent(ann)
    photos = [Upload(p.name, p.read_bytes()) for p in person(faces, "paul_allen")[:3]]
    assert all(v.accepted for v in await booth.upload(ann, photos))
    user = await booth.repo.find_user("telegram", "77")
    assert user is not None
    await booth.repo.set_trigger_word(user.id, "zqxwv")
    client = await sign_in(booth, server)
    async with client:
        async with client.get("/users", params={"q": "telegram:77"}) as found:
            assert found.url.path == f"/users/{user.id}"
            html = await found.text()
        assert "Photos (3)" in html and "<img" not in html and "zqxwv" not in html
        assert "version 1" in html  # the consent accepted
        csrf = re.search(r'name="csrf" value="([^"]+)"', html)
        assert csrf is not None
        async with client.get(f"/users/{user.id}", params={"photos": "shown"}) as shown:
            crops = re.findall(r'<img src="(/users/\d+/photos/\d+/\w+)"', await shown.text())
        assert len(crops) == 3
        async with client.get(crops[0]) as crop:
            assert crop.status == 200 and crop.content_type.startswith("image/")
        looks = await booth.repo.audit_entries(action="admin.user.photo")
        assert [e.actor for e in looks] == ["telegram:1001"]

        form = {"csrf": csrf[1], "action": "quota", "images": "7", "trainings": "1"}
        async with client.post(f"/users/{user.id}", data=form) as answer:
            assert "7 images a day" in await answer.text()
        form = {"csrf": csrf[1], "action": "purge", "reason": "asked", "confirm": "purge"}
        async with client.post(f"/users/{user.id}", data=form) as answer:
            assert "Nothing was erased" in await answer.text()
        assert await booth.repo.get_user(user.id) is not None
        form["confirm"] = f"purge #{user.id}"
        async with client.post(f"/users/{user.id}", data=form) as answer:
            assert answer.url.path == "/users"
        assert await booth.repo.get_user(user.id) is None
        for gone in (f"/users/{user.id}", crops[0]):
            async with client.get(gone) as response:
                assert response.status == 404, gone


async def seed_week(booth: Booth) -> dict[str, int]:
    """A week of generations (day d has d + 1), refusals and a restart; the counts of
    generations by the week window's bucket labels."""
    user = await booth.repo.get_or_create_user("telegram", "77")
    chosen, start = window("week")
    expected: dict[str, int] = {}
    for day in range(7):
        at = start + timedelta(days=day, minutes=1)
        label = at.strftime(chosen.label)
        expected[label] = day + 1
        for n in range(day + 1):
            job = await booth.jobs.enqueue(user.id, ImagineRequest(f"a cat {n}"))
            result = '{"images": [], "withheld": 2}' if day == 2 and n == 0 else None
            await booth.repo.db.conn.execute(
                "UPDATE jobs SET created_at = ?, started_at = ?, finished_at = ?, result = ?,"
                " status = 'succeeded' WHERE id = ?",
                (
                    _iso(at),
                    _iso(at + timedelta(seconds=10)),
                    _iso(at + timedelta(seconds=40)),
                    result,
                    job.id,
                ),
            )
    old = await booth.jobs.enqueue(user.id, ImagineRequest("long ago"))
    await booth.repo.db.conn.execute(
        "UPDATE jobs SET created_at = ? WHERE id = ?",
        (_iso(start - timedelta(days=3)), old.id),
    )
    for category in ("violence", "violence", "violence", "hate"):
        await booth.repo.add_strike(user.id, category, _iso(start + timedelta(days=1)))
    await booth.repo.add_engine_restart(_iso(start + timedelta(days=3, hours=2)))

    return expected


async def test_the_figures_are_drawn_from_a_week_of_jobs(booth: Booth, server: TestServer) -> None:
    expected = await seed_week(booth)
    chosen, start = window("week")
    client = await sign_in(booth, server)
    async with client, client.get("/figures", params={"window": "week"}) as page:
        html = await page.text()
    counted = dict(re.findall(r"<title>imagine ([^:<]+): (\d+)</title>", html))
    assert {label: int(n) for label, n in counted.items()} == expected  # not the old one
    day_two = (start + timedelta(days=2)).strftime(chosen.label)
    assert f"<title>withheld {day_two}: 2</title>" in html
    assert f"<title>wait median {day_two}: 10 s</title>" in html
    assert f"<title>run p95 {day_two}: 30 s</title>" in html
    assert "<title>violence: 3</title>" in html and "<title>hate: 1</title>" in html
    day_three = (start + timedelta(days=3)).strftime(chosen.label)
    assert f"<title>restarts {day_three}: 1</title>" in html
    assert html.count("<script") == 1  # the console's own file; the charts have none


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds")


async def test_the_blocklist_and_the_style_library_are_kept_from_the_console(
    booth: Booth, server: TestServer, tmp_path: Path
) -> None:
    client = await sign_in(booth, server)
    async with client:
        async with client.get("/blocklist") as page:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text())
        assert csrf is not None
        form = {"csrf": csrf[1], "category": "violence", "term": "Grond  Hammer", "action": "add"}
        async with client.post("/blocklist", data=form) as answer:
            html = await answer.text()
        assert "&#39;grond hammer&#39; is blocked as violence." in html
        assert '<td data-label="Term">grond hammer</td>' in html
        verdict = (await booth.prompt_filter()).check("me with a grond hammer")
        assert verdict.category == "violence"
        async with client.post("/blocklist", data={**form, "category": "nonsense"}) as answer:
            assert "Unknown category" in await answer.text()

        style = lora_file(tmp_path / "watercolor.safetensors")
        upload = FormData()
        upload.add_field("csrf", csrf[1])
        upload.add_field("name", "watercolor")
        upload.add_field("weight", "0.7")
        upload.add_field("action", "add")
        upload.add_field("file", style.read_bytes(), filename=style.name)
        async with client.post("/styles", data=upload) as answer:
            html = await answer.text()
        assert "Style &#39;watercolor&#39; added" in html, html
        assert '<td data-label="Weight">0.7</td>' in html
        gone = {"csrf": csrf[1], "name": "watercolor", "action": "remove"}
        async with client.post("/styles", data=gone) as answer:
            assert "The style library is empty." in await answer.text()
        nothing = {"csrf": csrf[1], "name": "x", "action": "add"}
        async with client.post("/styles", data=nothing) as answer:
            assert "Choose the style" in await answer.text()
    actions = [e.action for e in await booth.repo.audit_entries(3)]
    assert actions == ["admin.style.remove", "admin.style.add", "admin.blocklist.add"]
