"""Helpers of the Discord tests (not a test module): the users, the bot over the real
core, connected to the fake Discord, and shortcuts for common steps."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from fakes.discord_api import BOT_TOKEN, FakeDiscord, FakeInteraction, FakeMessage, FakeUser
from PIL import Image

from bot.config import Config, Secret
from bot.core import Booth, Identity, open_booth
from bot.discord import DiscordFrontEnd
from engine.intake import FaceAnalyzer
from storage import NewPhoto

MANAGE_GUILD = 1 << 5
ADMIN = FakeUser(3_001, "ada", permissions=MANAGE_GUILD)
ANN = FakeUser(3_002, "ann")
BOB = FakeUser(3_003, "bob")
EDIT_INTERVAL = 0.4
TIMEOUT = 180.0  # seconds for anything that waits on the engine


def who(user: FakeUser) -> Identity:
    return Identity("discord", str(user.id))


@dataclass
class Bot:
    booth: Booth
    front: DiscordFrontEnd


@asynccontextmanager
async def running_bot(
    config: Config, fake: FakeDiscord, analyzer: FaceAnalyzer | None = None, **options: Any
) -> AsyncIterator[Bot]:
    """The core with its dispatcher and the Discord front end, connected to the fake."""
    async with open_booth(config, analyzer, dispatch=True) as booth:
        front = DiscordFrontEnd(booth, config, Secret(BOT_TOKEN), **options)
        identified = len(fake.frames(2))
        await front.start()
        try:
            await fake.wait_for(lambda: len(fake.frames(2)) > identified, "IDENTIFY")
            await fake.wait_ready()
            yield Bot(booth, front)
        finally:
            await front.stop()


async def consent(fake: FakeDiscord, user: FakeUser) -> None:
    """The user accepts the consent text through /consent and its button."""
    shown = await fake.reply(await fake.command(user, "consent"))
    pressed = await fake.press(user, shown, shown.button("Accept"))
    await fake.wait_for(lambda: "accepted" in shown.content, "the consent to be accepted")
    assert pressed.callback_type == 6


async def seed_photos(booth: Booth, user: FakeUser, count: int = 3) -> None:
    """Accepted crops stored directly (noise: training needs no faces), for engine-only tests."""
    found = await booth.repo.find_user("discord", str(user.id))
    assert found is not None
    rng = np.random.default_rng(user.id)
    side = booth.family.resolution
    rows = []
    for n in range(count):
        img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        key = await booth.blobs.put(buf.getvalue())
        rows.append(
            NewPhoto(f"{n:064x}", key, key, b"\0" * 512, f"{n:016x}", (0, 0, side, side), 99.0)
        )
    await booth.repo.add_photos(found.id, rows)


async def results_of(fake: FakeDiscord, interaction: FakeInteraction) -> FakeMessage:
    """The public message with the pictures of the job the interaction started."""
    message: FakeMessage = await fake.wait_for(
        lambda: next(iter(fake.followups(interaction)), None), "the pictures", TIMEOUT
    )
    return message


async def shows(fake: FakeDiscord, message: FakeMessage, text: str, what: str) -> None:
    """Wait until `message` shows `text`; fail at once if its job failed instead."""
    await fake.wait_for(
        lambda: text in message.content or "failed" in message.content, what, TIMEOUT
    )
    assert text in message.content, message.content
