"""Rules of the core, pinned over both chats: each chat must do what the other does.

Each case runs the real front end (discord.py or python-telegram-bot) against its fake
platform on loopback, over the real core.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path[:0] = [str(Path(__file__).parent / "discord"), str(Path(__file__).parent / "telegram")]

import discord_harness  # noqa: E402
import telegram_harness  # noqa: E402
from fakes.discord_api import FakeDiscord, FakeUser  # noqa: E402
from fakes.telegram_api import BOT_USERNAME, FakeTelegram, Person  # noqa: E402

from bot.config import Config  # noqa: E402
from bot.core import Booth, Identity  # noqa: E402
from engine.intake import FaceAnalyzer  # noqa: E402
from storage import NewPhoto  # noqa: E402

TIMEOUT = 180.0
# PTB 22 warns about its own RetryAfter (an int until PTB_TIMEDELTA is set) on every 429.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


class Chat:
    """One person in one chat, as the tests below drive it."""

    booth: Booth
    who: Identity
    accept: Callable[[], Awaitable[None]]
    # Press Decline; what the bot said.
    decline: Callable[[], Awaitable[str]]
    # Train on the stored photos; wait until the model is ready.
    train: Callable[[], Awaitable[None]]
    # /imagine in a group (Telegram) or a server channel (Discord), two steps; every text
    # (messages, captions) the bot posted where others read it, once the pictures are there.
    imagine_in_public: Callable[[str], Awaitable[list[str]]]
    # The seconds the chat's progress edits must keep apart.
    edit_interval: float
    # How long the platform's 429 below asks to wait.
    retry_after: float
    # Train, the platform answering the first progress edit with 429; every attempt to
    # edit the training's message as (when it arrived, HTTP status), once it says ready.
    train_through_429: Callable[[], Awaitable[list[tuple[float, int]]]]


def small(config: Config, steps: int) -> Config:
    """A short training, no likeness checks and no image filter: these tests are about
    the chats."""
    training = dataclasses.replace(
        config.training,
        min_photos=3,
        steps=steps,
        checkpoint_every=steps,
        batch_size=1,
        likeness=False,
    )
    screening = dataclasses.replace(config.image_filter, enabled=False)
    return dataclasses.replace(config, training=training, image_filter=screening)


async def seed_crops(booth: Booth, who: Identity) -> None:
    """Accepted crops stored directly (noise: training needs no faces)."""
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    rng = np.random.default_rng(7)
    side = booth.family.resolution
    rows = []
    for n in range(3):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
        key = await booth.blobs.put(buf.getvalue())
        rows.append(NewPhoto(f"{n:064x}", key, key, b"\0" * 512, f"{n:016x}", (0, 0, 9, 9), 99.0))
    await booth.repo.add_photos(user.id, rows)


@asynccontextmanager
async def telegram_chat(
    config: Config, analyzer: FaceAnalyzer, steps: int = 3
) -> AsyncIterator[Chat]:
    fake = FakeTelegram()
    await fake.start()
    try:
        config = small(telegram_harness.telegram_config(config, fake), steps)
        async with telegram_harness.running_bot(config, analyzer) as (booth, _):
            ann = telegram_harness.Conversation(fake, Person(4343, "Ann"))
            chat = Chat()
            chat.booth, chat.who = booth, Identity("telegram", "4343")

            first_start = []

            async def decline() -> str:
                # Once accepted, /start offers no buttons: the old message's Decline is pressed.
                if not first_start:
                    first_start.append(await ann.send("/start"))
                start = first_start[0]
                no = next(b for b in start.buttons() if b.startswith("consent:no:"))
                return (await ann.reply(await ann.press(start, no))).text

            async def train() -> None:
                await ann.job_done(await ann.send("/train"), "done")

            async def imagine_in_public(prompt: str) -> list[str]:
                group, since = fake.group(), fake.mark()
                text = f"/imagine@{BOT_USERNAME} {prompt} --steps 2"
                await fake.say(Person(4343, "Ann"), text, chat=group)
                await fake.expect("sendPhoto", chat_id=group["id"], since=since, within=TIMEOUT)
                calls = [c for c in fake.calls[since:] if c.chat_id == group["id"]]
                return [json.dumps(c.params, ensure_ascii=False) for c in calls]

            async def train_through_429() -> list[tuple[float, int]]:
                fake.fail("editMessageText", 1, retry_after=1)
                progress = await ann.send("/train")
                await ann.job_done(progress, "done")
                key = str(progress.result["message_id"])
                edits = fake.of("editMessageText", chat_id=ann.chat_id)
                return [(c.at, c.status) for c in edits if c.params["message_id"] == key]

            chat.accept, chat.decline = ann.accept, decline
            chat.train, chat.imagine_in_public = train, imagine_in_public
            chat.edit_interval, chat.retry_after = config.telegram.edit_interval, 1.0
            chat.train_through_429 = train_through_429
            yield chat
    finally:
        await fake.stop()


@asynccontextmanager
async def discord_chat(
    config: Config, analyzer: FaceAnalyzer, steps: int = 3
) -> AsyncIterator[Chat]:
    fake = FakeDiscord()
    await fake.start()
    try:
        settings = dataclasses.replace(
            config.discord,
            api_base_url=fake.api_url,
            gateway_url=fake.gateway_url,
            edit_interval=discord_harness.EDIT_INTERVAL,
        )
        config = small(dataclasses.replace(config, discord=settings), steps)
        async with discord_harness.running_bot(config, fake, analyzer) as bot:
            ann = FakeUser(3_444, "ann")
            chat = Chat()
            chat.booth, chat.who = bot.booth, discord_harness.who(ann)

            async def accept() -> None:
                await discord_harness.consent(fake, ann)

            async def decline() -> str:
                shown = await fake.reply(await fake.command(ann, "consent"))
                before = shown.content
                await fake.press(ann, shown, shown.button("Decline"))
                await fake.wait_for(lambda: shown.content != before, "the answer to Decline")
                return shown.content

            async def train() -> None:
                progress = await fake.reply(await fake.command(ann, "train"))
                await discord_harness.shows(fake, progress, "is ready", "the trained model")

            async def imagine_in_public(prompt: str) -> list[str]:
                imagine = await fake.command(ann, "imagine", {"prompt": prompt, "steps": 2})
                await discord_harness.results_of(fake, imagine)
                public = [m for m in fake.messages.values() if not m.ephemeral]
                return [text for m in public for text in (m.content, *(h[1] for h in m.history))]

            async def train_through_429() -> list[tuple[float, int]]:
                # discord.py waits out a 429 that says how long, and tries again.
                fake.throttle_next("PATCH")
                train = await fake.command(ann, "train")
                progress = await fake.reply(train)
                await discord_harness.shows(fake, progress, "is ready", "the trained model")
                edits = fake.bot_requests(rf"PATCH .*/{train.token}/messages/")
                return [(r.at, r.status) for r in edits]

            chat.accept, chat.decline = accept, decline
            chat.train, chat.imagine_in_public = train, imagine_in_public
            chat.edit_interval, chat.retry_after = config.discord.edit_interval, 0.3
            chat.train_through_429 = train_through_429
            yield chat
    finally:
        await fake.stop()


CHATS = {"telegram": telegram_chat, "discord": discord_chat}
STEPS_PAST_A_429 = 150


@pytest.mark.parametrize("platform", CHATS)
async def test_decline_stores_nothing_and_deletes_nothing(
    platform: str, config: Config, analyzer: FaceAnalyzer
) -> None:
    async with CHATS[platform](config, analyzer) as chat:
        # A new user: nothing is stored, and the bot says so.
        said = await chat.decline()
        assert "Declined: nothing about you was stored" in said
        assert await chat.booth.repo.find_user(chat.who.platform, chat.who.user_id) is None

        # A user who has consented: Decline changes nothing; withdrawing is /forget.
        await chat.accept()
        said = await chat.decline()
        assert "nothing changes and your data stays" in said and "/forget" in said
        status = await chat.booth.status(chat.who)
        assert status.consent is not None and status.consent_current


@pytest.mark.parametrize("platform", CHATS)
async def test_a_trigger_word_never_reaches_a_group_or_server_channel(
    platform: str, config: Config, analyzer: FaceAnalyzer
) -> None:
    async with CHATS[platform](config, analyzer) as chat:
        await chat.accept()
        await seed_crops(chat.booth, chat.who)
        await chat.train()
        user = await chat.booth.repo.find_user(chat.who.platform, chat.who.user_id)
        lora = await chat.booth.repo.active_lora(user.id) if user else None
        assert lora is not None
        # The user names their own trigger word, as the /status they were shown tells it.
        texts = await chat.imagine_in_public(f"{lora.trigger_word.upper()} at the beach")
        assert any("at the beach" in text for text in texts), texts  # the caption is there
        assert not [text for text in texts if lora.trigger_word in text.casefold()]


@pytest.mark.parametrize("platform", CHATS)
async def test_progress_edits_keep_their_interval_even_right_after_a_429(
    platform: str, config: Config, analyzer: FaceAnalyzer
) -> None:
    # Long enough that the training still runs when the 429 has been waited out.
    async with CHATS[platform](config, analyzer, STEPS_PAST_A_429) as chat:
        await chat.accept()
        await seed_crops(chat.booth, chat.who)
        attempts = await chat.train_through_429()
        statuses = [status for _, status in attempts]
        assert statuses[0] == 429 and statuses.count(429) == 1, statuses
        # After the 429: the edit it held back, then at least one more (the training's end).
        shown = [at for at, status in attempts if status == 200]
        assert len(shown) >= 2, statuses
        assert shown[0] - attempts[0][0] >= chat.retry_after * 0.95  # the 429 was waited out
        gaps = [after - before for before, after in itertools.pairwise(shown)]
        assert min(gaps) >= chat.edit_interval * 0.95, (chat.edit_interval, gaps)
