"""Running the real Telegram front end against the fake Bot API (not a test module).

`running_bot` opens the core (with the dispatcher and the real engine subprocess) and
starts `TelegramFrontEnd`, whose PTB Application long-polls the fake over loopback.
`Conversation` scripts one person's messages and waits for the bot's answers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fakes.telegram_api import TOKEN, Call, FakeTelegram, Person

from bot.config import Config
from bot.core import Booth, open_booth
from bot.telegram import TelegramFrontEnd
from engine.intake import FaceAnalyzer

ADMIN = Person(900, "Ada")
TIMEOUT = 120.0  # seconds for any one wait; a hang fails instead of blocking CI


def telegram_config(config: Config, fake: FakeTelegram, **telegram: Any) -> Config:
    """The test config pointed at the fake, with quick edits and a small training."""
    settings = dataclasses.replace(
        config.telegram,
        api_base_url=fake.api_base_url,
        file_base_url=fake.file_base_url,
        admin_ids=(str(ADMIN.id),),
        edit_interval=0.3,
        **telegram,
    )
    # Few steps of batch 1: the engine is real, but these tests are about the chat.
    training = dataclasses.replace(
        config.training, min_photos=3, steps=3, checkpoint_every=1, batch_size=1
    )
    return dataclasses.replace(config, telegram=settings, training=training)


@asynccontextmanager
async def running_bot(
    config: Config, analyzer: FaceAnalyzer | None = None
) -> AsyncIterator[tuple[Booth, TelegramFrontEnd]]:
    async with open_booth(config, analyzer, dispatch=True) as booth:
        front = TelegramFrontEnd(booth, config, TOKEN)
        await front.start()
        try:
            yield booth, front
        finally:
            await front.stop()


class Conversation:
    """One person in their private chat with the bot."""

    def __init__(self, fake: FakeTelegram, person: Person) -> None:
        self.fake = fake
        self.person = person
        self.chat_id = person.id

    async def send(self, text: str) -> Call:
        """Say `text`; the bot's next message in this chat."""
        since = self.fake.mark()
        await self.fake.say(self.person, text)
        return await self.reply(since)

    async def reply(self, since: int, method: str = "sendMessage", **kw: Any) -> Call:
        return await self.fake.expect(
            method, chat_id=self.chat_id, since=since, within=TIMEOUT, **kw
        )

    async def answer(self, since: int) -> Call:
        """The bot's answer to a button press made after `since`."""
        return await self.fake.expect("answerCallbackQuery", since=since, within=TIMEOUT)

    async def press(self, call: Call, data: str) -> int:
        """Press the button `data` under the message `call` sent; the mark before it."""
        assert data in call.buttons(), (data, call.buttons())
        since = self.fake.mark()
        await self.fake.press(self.person, call.result, data)
        return since

    async def accept(self) -> None:
        start = await self.send("/start")
        accept = next(b for b in start.buttons() if b.startswith("consent:yes:"))
        since = await self.press(start, accept)
        await self.reply(since, where=lambda c: "Thank you" in c.text)

    async def upload_documents(self, files: list[tuple[str, bytes]]) -> Call:
        """The files as uncompressed documents, one after another; the one answer to all."""
        since = self.fake.mark()
        for name, data in files:
            await self.fake.document(self.person, data, name, "image/jpeg")
        answer = await self.reply(since, where=lambda c: "accepted" in c.text)
        assert all(f"{name}: accepted" in answer.text for name, _ in files), answer.text
        return answer

    async def job_done(self, progress: Call, contains: str) -> dict[str, Any]:
        """Wait until the progress message that `progress` sent says `contains`."""
        message_id = progress.result["message_id"]
        await self.fake.expect(
            "editMessageText",
            chat_id=self.chat_id,
            where=lambda c: c.params["message_id"] == str(message_id) and contains in c.text,
            within=TIMEOUT,
        )
        return self.fake.stored(progress)
