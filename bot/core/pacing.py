"""Pacing of live messages, for every chat: one message edited in place as a job moves
on, never faster than the platform allows.

A `Pacer` keeps the edits of one key (a Telegram chat, a Discord message) at least
`interval` apart, counted from the END of the previous edit, so that an edit that was
slow or retried is not followed at once by the next. When the platform answers 429, the
adapter raises `RetryLater` with its seconds and the whole key waits them out.

A `LiveText` shows the latest of a changing value (a job's progress) in one message:
values superseded while waiting for their turn are never sent. Its edit loop runs in the
pacer's tracked `TaskSet`, so that shutdown cancels and awaits it.

The adapters only translate: their `edit` callable sends the platform's edit, and maps
the platform's errors to `RetryLater`, `EditFailed` (a network fault, worth a retry) and
`Unreachable` (the message cannot be edited any more).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Generic, Protocol, TypeVar

from bot.core.tasks import TaskSet

__all__ = [
    "EDIT_FAILURES",
    "Clock",
    "EditFailed",
    "LiveText",
    "LoopClock",
    "Pacer",
    "RetryLater",
    "Unreachable",
    "backoff",
]

_log = logging.getLogger(__name__)

T = TypeVar("T")

# Consecutive failed edits (network faults) after which a live message is given up.
EDIT_FAILURES = 6


class RetryLater(Exception):
    """The platform asked to wait `seconds` before the next request (HTTP 429)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds:.1f} s")
        self.seconds = seconds


class EditFailed(Exception):
    """An edit that did not arrive for a passing reason (the network): try again soon."""


class Unreachable(Exception):
    """The message can no longer be edited: deleted, too old, its chat or token gone."""


def backoff(failures: int) -> float:
    """Seconds to wait after `failures` consecutive network faults."""
    return min(0.5 * 2.0**failures, 8.0)


class Clock(Protocol):
    """Where a pacer reads the time and waits: the event loop's, or a test's."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Pacer:
    """Per key: when the next edit may go, and until when the platform asked us to wait.

    Several live messages under one key (Telegram: one chat) share its clock.
    """

    def __init__(
        self, interval: float, *, clock: Clock | None = None, tasks: TaskSet | None = None
    ) -> None:
        self.interval = interval
        self.clock: Clock = clock or LoopClock()
        # The live messages' edit loops; the front end's own set, so its stop ends them.
        self.tasks = tasks if tasks is not None else TaskSet()
        self._next_edit: dict[Hashable, float] = {}
        self._blocked_until: dict[Hashable, float] = {}
        self._locks: defaultdict[Hashable, asyncio.Lock] = defaultdict(asyncio.Lock)
        # Live messages per key: a key nobody uses is forgotten once its clock has run out
        # (Discord's keys are messages: kept, they would pile up for ever).
        self._users: dict[Hashable, int] = {}

    @contextlib.asynccontextmanager
    async def turn(self, key: Hashable) -> AsyncIterator[None]:
        """Wait until `key` may see an edit; the edit goes inside the block.

        One edit per key at a time: the next waits for this one to come back, and then
        for `interval` more.
        """
        async with self._locks[key]:
            # A loop, not one sleep: a 429 meanwhile moves the end further away.
            while (delay := self._ready(key) - self.clock.now()) > 0:
                await self.clock.sleep(delay)
            try:
                yield
            finally:
                self._next_edit[key] = self.clock.now() + self.interval

    async def clear(self, key: Hashable) -> None:
        """Wait until a 429 on `key` has run out (sending, not editing)."""
        while (delay := self._blocked_until.get(key, 0.0) - self.clock.now()) > 0:
            await self.clock.sleep(delay)

    def hold(self, key: Hashable, seconds: float) -> None:
        """Nothing more for `key` during `seconds` (a 429's retry_after, a backoff)."""
        until = self.clock.now() + seconds
        self._blocked_until[key] = max(self._blocked_until.get(key, 0.0), until)

    def _ready(self, key: Hashable) -> float:
        return max(self._next_edit.get(key, 0.0), self._blocked_until.get(key, 0.0))

    def live(
        self,
        key: Hashable,
        edit: Callable[[T], Awaitable[None]],
        *,
        shown: T | None = None,
        name: str = "live",
    ) -> LiveText[T]:
        self._users[key] = self._users.get(key, 0) + 1
        return LiveText(self, key, edit, shown=shown, name=name)

    def release(self, key: Hashable) -> None:
        """A live message of `key` is closed; forget the keys that nobody uses any more."""
        self._users[key] -= 1
        if not self._users[key]:
            del self._users[key]
        now = self.clock.now()
        for idle in self._keys() - self._users.keys():
            lock = self._locks.get(idle)
            if self._ready(idle) <= now and (lock is None or not lock.locked()):
                self._locks.pop(idle, None)
                self._next_edit.pop(idle, None)
                self._blocked_until.pop(idle, None)

    def _keys(self) -> set[Hashable]:
        return {*self._locks, *self._next_edit, *self._blocked_until}

    def kept(self) -> int:
        """How many keys the pacer keeps a clock for."""
        return len(self._keys())

    async def close(self) -> None:
        """Cancel and await every task of its task set (a front end's: all of them)."""
        await self.tasks.cancel_all()


class LiveText(Generic[T]):
    """One message whose content follows a changing value; `show` never blocks,
    `settle` waits until the value is on screen."""

    def __init__(
        self,
        pacer: Pacer,
        key: Hashable,
        edit: Callable[[T], Awaitable[None]],
        *,
        shown: T | None = None,
        name: str = "live",
    ) -> None:
        self.pacer = pacer
        self.key = key
        self.name = name
        self._edit = edit
        # What the message says now, if known: showing it again would be wasted (or refused).
        self._shown = shown
        self._wanted = shown
        self._changed = asyncio.Event()
        self._quiet = asyncio.Event()
        self._quiet.set()
        # Set when edits are given up: the caller then sends its last words anew.
        self.broken = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def shown(self) -> T | None:
        return self._shown

    def show(self, value: T) -> None:
        """Have `value` shown at the next turn; a value not yet sent is dropped for it."""
        if self.broken or value == self._wanted:
            return
        self._wanted = value
        self._quiet.clear()
        self._changed.set()
        if self._task is None:
            self._task = self.pacer.tasks.spawn(self._edit_loop(), name=self.name)

    async def settle(self, value: T) -> bool:
        """Show `value` and wait until it is on screen; False if it never will be."""
        self.show(value)
        if self._task is not None:
            wait_quiet = asyncio.ensure_future(self._quiet.wait())
            # The edit loop ends only by giving up; then the value will never be shown.
            await asyncio.wait({wait_quiet, self._task}, return_when=asyncio.FIRST_COMPLETED)
            wait_quiet.cancel()
        return not self.broken and self._shown == value

    async def close(self) -> None:
        """Stop editing (a value not shown yet is dropped) and give the key back."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self._closed:
            self._closed = True
            self.pacer.release(self.key)

    async def _edit_loop(self) -> None:
        try:
            await self._edits()
        except Exception:
            _log.exception("%s: unexpected error", self.name)
        finally:
            self.broken = self._wanted != self._shown
            self._quiet.set()

    async def _edits(self) -> None:
        failures = 0
        while failures < EDIT_FAILURES:
            await self._changed.wait()
            self._changed.clear()
            async with self.pacer.turn(self.key):
                wanted = self._wanted
                if wanted is None or wanted == self._shown:
                    self._quiet.set()
                    continue
                try:
                    await self._edit(wanted)
                except RetryLater as exc:
                    # Not a failure: the platform said when; the latest value goes then.
                    _log.info("%s: 429, waiting %.1f s", self.name, exc.seconds)
                    self.pacer.hold(self.key, exc.seconds)
                    self._changed.set()
                    continue
                except EditFailed as exc:
                    failures += 1
                    _log.info("%s: edit failed (%s), attempt %d", self.name, exc, failures)
                    self.pacer.hold(self.key, backoff(failures))
                    self._changed.set()
                    continue
                except Unreachable as exc:
                    _log.info("%s cannot be edited any more: %s", self.name, exc)
                    return
            failures = 0
            self._shown = wanted
            if self._wanted == wanted:
                self._quiet.set()
