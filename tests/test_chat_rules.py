"""Rules of the core, pinned over both chats: each chat must do what the other does.

Each case runs the real front end (discord.py or python-telegram-bot) against its fake
platform on loopback, over the real core.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).parent / "discord"), str(Path(__file__).parent / "telegram")]

import discord_harness  # noqa: E402
import telegram_harness  # noqa: E402
from fakes.discord_api import FakeDiscord, FakeUser  # noqa: E402
from fakes.telegram_api import FakeTelegram, Person  # noqa: E402

from bot.config import Config  # noqa: E402
from bot.core import Booth, Identity  # noqa: E402
from engine.intake import FaceAnalyzer  # noqa: E402

# A chat's view of one person: accept the consent, press Decline, and what the bot said.
Decline = Callable[[], Awaitable[str]]


class Chat:
    booth: Booth
    who: Identity
    accept: Callable[[], Awaitable[None]]
    decline: Decline


@asynccontextmanager
async def telegram_chat(config: Config, analyzer: FaceAnalyzer) -> AsyncIterator[Chat]:
    fake = FakeTelegram()
    await fake.start()
    try:
        config = telegram_harness.telegram_config(config, fake)
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

            chat.accept, chat.decline = ann.accept, decline
            yield chat
    finally:
        await fake.stop()


@asynccontextmanager
async def discord_chat(config: Config, analyzer: FaceAnalyzer) -> AsyncIterator[Chat]:
    fake = FakeDiscord()
    await fake.start()
    try:
        settings = dataclasses.replace(
            config.discord, api_base_url=fake.api_url, gateway_url=fake.gateway_url
        )
        config = dataclasses.replace(config, discord=settings)
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

            chat.accept, chat.decline = accept, decline
            yield chat
    finally:
        await fake.stop()


CHATS = {"telegram": telegram_chat, "discord": discord_chat}


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
