"""Pacing of edits and sends (bot.telegram.progress) with a real PTB Bot and the fake API."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from fakes.telegram_api import TOKEN, FakeTelegram, Person
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.request import HTTPXRequest

from bot.telegram.progress import LiveMessage, Pacer, patiently

# PTB 22 warns about its own RetryAfter (an int until PTB_TIMEDELTA is set) on every 429.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ANN = Person(31, "Ann")
INTERVAL = 0.25


@pytest.fixture
async def bot(fake: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        TOKEN,
        base_url=fake.api_base_url,
        base_file_url=fake.file_base_url,
        request=HTTPXRequest(http_version="1.1"),
    ) as bot:
        yield bot


async def live_message(bot: Bot, pacer: Pacer) -> LiveMessage:
    sent = await bot.send_message(ANN.id, "queued")
    return LiveMessage(bot, pacer, ANN.id, sent.message_id, shown=("queued", None))


async def test_only_the_latest_text_is_shown_and_edits_are_spaced(
    bot: Bot, fake: FakeTelegram
) -> None:
    live = await live_message(bot, Pacer(INTERVAL))
    since = fake.mark()
    for step in range(1, 41):
        live.show(f"step {step} of 40")
        await asyncio.sleep(0)  # let the editor run between updates, as real updates do
    assert await live.settle("done")
    await live.close()
    edits = fake.of("editMessageText", since=since)
    assert edits[-1].text == "done" and len(edits) <= 3  # not 41
    for before, after in itertools.pairwise(edits):
        assert after.at - before.at >= INTERVAL * 0.95
    assert fake.messages[(ANN.id, edits[-1].result["message_id"])]["text"] == "done"


async def test_a_429_holds_the_chat_for_retry_after(bot: Bot, fake: FakeTelegram) -> None:
    pacer = Pacer(INTERVAL)
    live = await live_message(bot, pacer)
    fake.fail("editMessageText", 2, retry_after=1)
    since = fake.mark()
    button = InlineKeyboardMarkup([[InlineKeyboardButton("Cancel", callback_data="cancel:1")]])
    assert await live.settle("step 1", button)
    # Sends in that chat wait for the 429 too.
    await patiently(pacer, ANN.id, lambda: bot.send_message(ANN.id, "hello"), "test")
    await live.close()
    calls = [c for c in fake.calls[since:] if c.method in ("editMessageText", "sendMessage")]
    assert [(c.method, c.status) for c in calls] == [
        ("editMessageText", 429), ("editMessageText", 429), ("editMessageText", 200),
        ("sendMessage", 200),
    ]  # fmt: skip
    assert calls[1].at - calls[0].at >= 0.95 and calls[2].at - calls[1].at >= 0.95
    assert calls[2].buttons() == ["cancel:1"]


async def test_right_after_a_429_the_next_edit_still_waits_its_interval(
    bot: Bot, fake: FakeTelegram
) -> None:
    live = await live_message(bot, Pacer(INTERVAL))
    fake.fail("editMessageText", 1, retry_after=1)
    since = fake.mark()
    assert await live.settle("step 1")
    assert await live.settle("step 2")
    await live.close()
    edits = fake.of("editMessageText", since=since)
    assert [(c.text, c.status) for c in edits] == [
        ("step 1", 429), ("step 1", 200), ("step 2", 200),
    ]  # fmt: skip
    assert edits[2].at - edits[1].at >= INTERVAL * 0.95


async def test_a_message_that_cannot_be_edited_is_given_up(bot: Bot, fake: FakeTelegram) -> None:
    live = await live_message(bot, Pacer(INTERVAL))
    await bot.delete_message(ANN.id, live.message_id)
    assert not await live.settle("done")
    assert live.broken
    live.show("more")  # ignored: nothing left to edit
    await live.close()
    assert [c.status for c in fake.of("editMessageText")] == [400]


async def test_network_errors_are_retried(bot: Bot, fake: FakeTelegram) -> None:
    pacer = Pacer(INTERVAL)
    fake.disconnect("sendMessage", 1)
    sent = await patiently(pacer, ANN.id, lambda: bot.send_message(ANN.id, "hi"), "test")
    assert sent.text == "hi"
    assert [c.status for c in fake.of("sendMessage")] == [0, 200]
    live = LiveMessage(bot, pacer, ANN.id, sent.message_id)
    fake.disconnect("editMessageText", 1)
    assert await live.settle("edited")
    await live.close()
    assert [c.status for c in fake.of("editMessageText")] == [0, 200]
