"""Telegram's side of pacing: its errors translated for the core's pacer, and sends
that wait out 429s.

Telegram allows about one message edit per second per chat before it answers 429 with a
`retry_after`; PTB only raises `RetryAfter` and never retries by itself. The core's
`Pacer` (bot.core.pacing), keyed by chat, keeps each chat's edits `edit_interval` apart
and holds the whole chat back after a 429. A `LiveMessage` is the core's `LiveText` for
one Telegram message: `_edit` is its only Telegram part. `patiently` sends a request,
waiting out 429s in that chat and retrying network errors.
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError

from bot.core.pacing import EditFailed, Pacer, RetryLater, Unreachable, backoff

__all__ = ["LiveMessage", "Pacer", "patiently", "retry_seconds"]

_log = logging.getLogger(__name__)

T = TypeVar("T")
# What a live message shows: its text and its buttons.
Shown = tuple[str, InlineKeyboardMarkup | None]

# Attempts at one request that fails with 429 or a network error before giving up.
ATTEMPTS = 6


def retry_seconds(exc: RetryAfter) -> float:
    """`retry_after` in seconds, whether PTB gives an int or (PTB_TIMEDELTA) a timedelta."""
    with warnings.catch_warnings():
        # PTB 22 warns on every read of the int form; the value is what we need.
        warnings.simplefilter("ignore")
        value = exc.retry_after
    if isinstance(value, dtm.timedelta):
        return value.total_seconds()
    return float(value)


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
            await asyncio.sleep(backoff(attempt))
    raise AssertionError("unreachable")  # the loop returns or raises


class LiveMessage:
    """One Telegram message whose text follows a job: the core's `LiveText`, edited
    through the Bot API; `show` never blocks, `settle` waits."""

    def __init__(
        self,
        bot: Bot,
        pacer: Pacer,
        chat_id: int,
        message_id: int,
        shown: Shown | None = None,
    ) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.message_id = message_id
        # Keyed by chat: several live messages in one chat share its clock.
        self._live = pacer.live(chat_id, self._edit, shown=shown, name=f"live-{message_id}")

    @property
    def broken(self) -> bool:
        """Edits were given up: the caller sends its final text as a new message."""
        return self._live.broken

    def show(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        self._live.show((text, markup))

    async def settle(self, text: str, markup: InlineKeyboardMarkup | None = None) -> bool:
        """Show `text` and wait until it is on screen; False if the message could not be edited."""
        return await self._live.settle((text, markup))

    async def close(self) -> None:
        await self._live.close()

    async def _edit(self, wanted: Shown) -> None:
        """One edit, Telegram's errors translated for the core's pacer."""
        text, markup = wanted
        try:
            await self.bot.edit_message_text(
                text, chat_id=self.chat_id, message_id=self.message_id, reply_markup=markup
            )
        except RetryAfter as exc:
            raise RetryLater(retry_seconds(exc)) from exc
        except BadRequest as exc:
            # The message was deleted, or is too old to edit: the caller posts anew.
            if "not modified" not in exc.message.lower():
                raise Unreachable(exc.message) from exc
        except NetworkError as exc:
            raise EditFailed(str(exc)) from exc
        except TelegramError as exc:
            raise Unreachable(str(exc)) from exc  # blocked by the user, chat gone
