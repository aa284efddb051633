"""Pacing of what the bot sends: edits spaced per chat, HTTP 429 waited out, retries.

Telegram allows about one message edit per second per chat before it answers 429 with a
`retry_after`; PTB only raises `RetryAfter` and never retries by itself. A `Pacer` keeps
each chat's edits `edit_interval` apart and holds the whole chat back for `retry_after`
after a 429. A `LiveMessage` shows the latest of a changing text (job progress) in one
message: texts that were superseded while waiting for a turn are never sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dtm
import logging
import warnings
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

__all__ = ["LiveMessage", "Pacer", "patiently", "retry_seconds"]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Attempts at one request that fails with 429 or a network error before giving up.
ATTEMPTS = 6
# Consecutive network failures after which a live message is given up (the caller posts anew).
EDIT_FAILURES = 6


def retry_seconds(exc: RetryAfter) -> float:
    """`retry_after` in seconds, whether PTB gives an int or (PTB_TIMEDELTA) a timedelta."""
    with warnings.catch_warnings():
        # PTB 22 warns on every read of the int form; the value is what we need.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)


class Pacer:
    """Per chat: when the next edit may go, and until when Telegram asked us to wait."""

    def __init__(self, edit_interval: float) -> None:
        self.edit_interval = edit_interval
        self._next_edit: dict[int, float] = {}
        self._blocked_until: dict[int, float] = {}
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def edit_turn(self, chat_id: int) -> None:
        """Wait until this chat may see an edit; the caller edits right after."""
        loop = asyncio.get_running_loop()
        async with self._locks[chat_id]:
            while True:
                ready = max(
                    self._next_edit.get(chat_id, 0.0), self._blocked_until.get(chat_id, 0.0)
                )
                delay = ready - loop.time()
                if delay <= 0:
                    break
                await asyncio.sleep(delay)
            self._next_edit[chat_id] = loop.time() + self.edit_interval

    def edited(self, chat_id: int) -> None:
        """An edit has come back: the interval counts from now, so a slow or retried edit
        is not followed at once by the next one."""
        ready = asyncio.get_running_loop().time() + self.edit_interval
        self._next_edit[chat_id] = max(self._next_edit.get(chat_id, 0.0), ready)

    async def clear(self, chat_id: int) -> None:
        """Wait until a 429 on this chat has run out (sending, not editing)."""
        loop = asyncio.get_running_loop()
        # A loop, not one sleep: another 429 meanwhile moves the end further away.
        while (delay := self._blocked_until.get(chat_id, 0.0) - loop.time()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    def hold(self, chat_id: int, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        self._blocked_until[chat_id] = max(self._blocked_until.get(chat_id, 0.0), until)


async def patiently(
    pacer: Pacer, chat_id: int, request: Callable[[], Awaitable[T]], what: str
) -> T:
    """Send `request`, waiting out 429s and retrying network errors a few times.

    Only for requests where a rare duplicate is better than nothing arriving (results,
    answers): a request that timed out may have reached Telegram all the same.
    """
    for attempt in range(1, ATTEMPTS + 1):
        await pacer.clear(chat_id)
        try:
            return await request()
        except RetryAfter as exc:
            seconds = retry_seconds(exc)
            _log.info("%s: 429 in chat, waiting %.1f s", what, seconds)
            pacer.hold(chat_id, seconds)
            if attempt == ATTEMPTS:
                raise
        except (BadRequest, Forbidden):
            raise  # PTB's BadRequest is a NetworkError: a refusal, not a network fault
        except NetworkError as exc:
            if attempt == ATTEMPTS:
                raise
            _log.info("%s: network error (%s), attempt %d", what, exc, attempt)
            await asyncio.sleep(min(0.5 * 2**attempt, 8.0))
    raise AssertionError("unreachable")  # the loop returns or raises


class LiveMessage:
    """One message whose text follows a job; `show` never blocks, `settle` waits."""

    def __init__(
        self,
        bot: Bot,
        pacer: Pacer,
        chat_id: int,
        message_id: int,
        shown: tuple[str, InlineKeyboardMarkup | None] | None = None,
    ) -> None:
        self.bot = bot
        self.pacer = pacer
        self.chat_id = chat_id
        self.message_id = message_id
        # What the message says now, if known: showing it again would be refused.
        self._shown = shown
        self._wanted = shown
        self._changed = asyncio.Event()
        self._quiet = asyncio.Event()
        self._quiet.set()
        # Set when edits are given up: the caller then sends its final text as a new message.
        self.broken = False
        self._task: asyncio.Task[None] | None = None

    def show(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        if self.broken or (text, markup) == self._wanted:
            return
        self._wanted = (text, markup)
        self._quiet.clear()
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._edit_loop(), name=f"live-{self.message_id}")

    async def settle(self, text: str, markup: InlineKeyboardMarkup | None = None) -> bool:
        """Show `text` and wait until it is on screen; False if the message could not be edited."""
        self.show(text, markup)
        if self._task is not None:
            wait_quiet = asyncio.ensure_future(self._quiet.wait())
            # The edit loop ends only by giving up; then the text will never be shown.
            await asyncio.wait({wait_quiet, self._task}, return_when=asyncio.FIRST_COMPLETED)
            wait_quiet.cancel()
        return not self.broken and self._shown == (text, markup)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _edit_loop(self) -> None:
        try:
            await self._edits()
        except Exception:
            _log.exception("progress message %d: unexpected error", self.message_id)
        finally:
            self.broken = self._wanted != self._shown
            self._quiet.set()

    async def _edits(self) -> None:
        failures = 0
        while failures < EDIT_FAILURES:
            await self._changed.wait()
            self._changed.clear()
            await self.pacer.edit_turn(self.chat_id)
            wanted = self._wanted
            if wanted is None or wanted == self._shown:
                self._quiet.set()
                continue
            try:
                try:
                    await self.bot.edit_message_text(
                        wanted[0], chat_id=self.chat_id, message_id=self.message_id,
                        reply_markup=wanted[1],
                    )  # fmt: skip
                finally:
                    self.pacer.edited(self.chat_id)
            except RetryAfter as exc:
                # Not a failure: Telegram said when; the latest text goes once that is over.
                self.pacer.hold(self.chat_id, retry_seconds(exc))
                self._changed.set()
                continue
            except BadRequest as exc:
                if "not modified" not in exc.message.lower():
                    # The message was deleted, or is too old to edit: the caller posts anew.
                    _log.info("progress message %d cannot be edited: %s", self.message_id, exc)
                    return
            except NetworkError as exc:
                failures += 1
                _log.info("progress edit failed (%s), attempt %d", exc, failures)
                self.pacer.hold(self.chat_id, min(0.5 * 2**failures, 8.0))
                self._changed.set()
                continue
            except TelegramError as exc:
                _log.info("progress message %d: %s", self.message_id, exc)
                return  # blocked by the user, chat gone: nothing more to show there
            failures = 0
            self._shown = wanted
            if self._wanted == wanted:
                self._quiet.set()
