"""Operations of a real `selfiebooth run` process serving Telegram and Discord (their fakes
on loopback): metrics move as a journey's jobs run, /healthz follows the engine's death
and restart, the JSON log carries each job event's fields, and neither token is logged."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes.discord_api import BOT_TOKEN, FakeDiscord
from fakes.telegram_api import TOKEN, FakeTelegram, Person
from helpers_images import person
from telegram_harness import ADMIN, TIMEOUT, Conversation

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ANN = Person(6161, "Ann")
# A scrape: (metric name, its labels) -> value.
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


class RunningBot:
    """`selfiebooth -v run` as a child process, its stderr in a file."""

    def __init__(self, process: asyncio.subprocess.Process, base: str, log: Path) -> None:
        self.process, self.base, self.log = process, base, log

    async def get(self, path: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as http, http.get(self.base + path) as answer:
            return answer.status, await answer.text()

    async def health_until(self, check: Callable[[int, dict[str, Any]], bool]) -> dict[str, Any]:
        """/healthz's answer once `check(status, body)` holds: the state it waits for."""
        async with asyncio.timeout(TIMEOUT):
            while True:
                try:
                    status, text = await self.get("/healthz")
                except aiohttp.ClientConnectionError:
                    status, text = 0, "{}"  # not listening yet
                body = json.loads(text)
                if check(status, body):
                    return body
                await asyncio.sleep(0.2)  # polling an HTTP state, not timing the bot

    async def metrics(self) -> Samples:
        status, text = await self.get("/metrics")
        assert status == 200
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                sample, value = line.rsplit(" ", 1)
                name, _, labels = sample.partition("{")
                pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels))
                samples[name, pairs] = float(value)
        return samples


@pytest.fixture
async def running(
    tmp_path: Path, fake: FakeTelegram, discord_fake: FakeDiscord
) -> AsyncIterator[RunningBot]:
    port = free_port()
    config = tmp_path / "selfiebooth.toml"
    config.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
log_format = "json"
[operations]
listen = "127.0.0.1:{port}"
[web]
listen = "127.0.0.1:{port}"
[training]
min_photos = 3
steps = 3
checkpoint_every = 1
batch_size = 1
likeness = false
[moderation]
commands_per_minute = 6000.0
command_burst = 1000
[image_filter]
enabled = false
[telegram]
api_base_url = "{fake.api_base_url}"
file_base_url = "{fake.file_base_url}"
admin_ids = ["{ADMIN.id}"]
edit_interval = 0.3
[discord]
api_base_url = "{discord_fake.api_url}"
gateway_url = "{discord_fake.gateway_url}"
""",
        encoding="utf-8",
    )
    env = dict(os.environ)
    env.update(SELFIEBOOTH_TELEGRAM_TOKEN=TOKEN, SELFIEBOOTH_DISCORD_TOKEN=BOT_TOKEN)
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "--config", str(config), "-v", "run",
            stdout=stderr, stderr=stderr, env=env,
        )  # fmt: skip
    bot = RunningBot(process, f"http://127.0.0.1:{port}", log)
    try:
        yield bot
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()


def counter(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metrics_health_and_logs_of_a_running_bot(
    running: RunningBot, fake: FakeTelegram, faces: Path, tmp_path: Path
) -> None:
    ok = await running.health_until(lambda status, _: status == 200)
    assert ok["checks"]["database"] == "ok"
    assert ok["checks"]["telegram"] == ok["checks"]["discord"] == "connected"
    before = await running.metrics()

    ann = Conversation(fake, ANN)
    await ann.accept()
    since = fake.mark()
    for path in person(faces, "guido_van_rossum")[:3]:
        await fake.photo(ANN, path.read_bytes(), media_group_id="album")
    assert "You have 3 photo(s)" in (await ann.reply(since)).text
    progress = await ann.send("/train")
    await ann.job_done(progress, "Model version 1 is ready")
    since = fake.mark()
    await fake.say(ANN, "/imagine me on the moon --steps 2 --n 2")
    assert len((await ann.reply(since, "sendMediaGroup")).json("media")) == 2
    await ann.reply(since, where=lambda c: any(b.startswith("reroll:") for b in c.buttons()))
    refused = await ann.send("/imagine me, n.u.d.e on a beach")
    assert "sexual" in refused.text

    after = await running.metrics()
    jobs = "selfiebooth_jobs_total"
    for kind in ("train", "imagine"):
        for event in ("queued", "started", "succeeded"):
            assert counter(after, jobs, kind=kind, event=event) == 1, (kind, event)
    assert counter(before, jobs, kind="train", event="succeeded") == 0
    timed = "selfiebooth_job_duration_seconds_count"
    assert counter(after, timed, kind="train", family="tiny") == 1
    assert counter(after, "selfiebooth_job_duration_seconds_sum", kind="train", family="tiny") > 0
    assert counter(after, "selfiebooth_pictures_total", outcome="made") == 2
    assert counter(after, "selfiebooth_refusals_total", category="sexual") == 1
    assert counter(after, "selfiebooth_training_steps_per_second", family="tiny") > 0
    assert counter(after, "selfiebooth_queue_depth", kind="imagine") == 0
    assert counter(after, "selfiebooth_engine_restarts_total") == 0

    # The engine dies while the queue is paused (so that nothing starts it again yet).
    admin = Conversation(fake, ADMIN)
    assert "paused" in (await admin.send("/admin pause maintenance")).text.lower()
    body = await running.health_until(lambda status, _: status == 200)
    engine = re.fullmatch(r"running \(process (\d+)\)", body["checks"]["engine"])
    assert engine is not None, body
    os.kill(int(engine[1]), signal.SIGKILL)
    down = await running.health_until(lambda status, _: status == 503)
    assert down["status"] == "unhealthy"
    assert down["checks"]["engine"] == "ended unexpectedly with exit code -9"
    assert down["checks"]["telegram"] == "connected"
    await admin.send("/admin resume")
    up = await running.health_until(lambda _, b: b["checks"]["engine"].startswith("running"))
    assert up["status"] == "ok"
    assert up["checks"]["engine"] != body["checks"]["engine"]
    assert counter(await running.metrics(), "selfiebooth_engine_restarts_total") == 1

    # The admin web console is served beside the metrics, signed in with a chat's link.
    link = (await admin.send("/admin web")).text
    url = re.search(r"(http://\S+/signin/\S+)", link)
    assert url is not None and url[1].startswith(running.base), link
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(url[1]) as page:
            assert page.status == 200 and "Review queue" in await page.text()
            assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        async with browser.get(running.base + "/metrics") as scrape:
            assert "Content-Security-Policy" not in scrape.headers
            assert "selfiebooth_jobs_total" in await scrape.text()
        # Removed from the config file: locked out without a restart.
        config = tmp_path / "selfiebooth.toml"
        text = config.read_text(encoding="utf-8")
        config.write_text(text.replace(f'admin_ids = ["{ADMIN.id}"]', "admin_ids = []"))
        async with asyncio.timeout(TIMEOUT):
            while True:
                async with browser.get(running.base + "/review") as page:
                    if page.status == 401:
                        break
                await asyncio.sleep(0.2)  # polling an HTTP state, not timing the bot
        assert "for the bot's admins only" in (await admin.send("/admin stats")).text

    running.process.send_signal(signal.SIGTERM)  # as systemd and Docker stop it
    assert await asyncio.wait_for(running.process.wait(), 60) == 0
    text = running.log.read_text(encoding="utf-8")
    assert TOKEN not in text and TOKEN.split(":")[1] not in text and BOT_TOKEN not in text
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert any("getUpdates" in r["message"] for r in records)  # URLs were logged, redacted
    events = [(r["event"], r["kind"]) for r in records if "job_id" in r]
    for kind in ("train", "imagine"):
        for event in ("queued", "started", "progress", "succeeded"):
            assert (event, kind) in events, (event, kind)
    started = next(r for r in records if r.get("event") == "started" and r["kind"] == "train")
    assert isinstance(started["user"], int) and isinstance(started["job_id"], int)
    assert started["attempt"] == 1 and started["level"] == "INFO"
    assert any(r["message"].startswith("Stopping: ") for r in records)
    assert str(ANN.id) not in json.dumps([r for r in records if "job_id" in r])
