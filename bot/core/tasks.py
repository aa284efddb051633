"""The tracked task group of a front end: every background task it starts, kept until
it ends, so that none is orphaned and shutdown cancels and awaits them all.

Like PTB's own `Application.create_task`: every task is referenced until it ends, its
exception is logged by one done-callback, and `cancel_all` stops the rest. A task may
name an owner (a user), so that the tasks following one user's jobs can be stopped
together when that user's data is erased.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Hashable
from typing import Any

__all__ = ["TaskSet"]

_log = logging.getLogger(__name__)


class TaskSet:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._owned: dict[Hashable, set[asyncio.Task[Any]]] = {}

    def spawn(
        self, coro: Coroutine[Any, Any, Any], name: str, *, owner: Hashable | None = None
    ) -> asyncio.Task[Any]:
        """Run `coro` in the background; kept until done, its failure logged."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        if owner is not None:
            self._owned.setdefault(owner, set()).add(task)
        task.add_done_callback(self._done)
        return task

    def cancel_owned(self, owner: Hashable) -> None:
        """Cancel the tasks started for `owner` (they end at their next await)."""
        for task in self._owned.pop(owner, set()):
            task.cancel()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        for owner, tasks in list(self._owned.items()):
            tasks.discard(task)
            if not tasks:
                del self._owned[owner]
        if not task.cancelled() and task.exception() is not None:
            _log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def cancel_all(self) -> None:
        """Cancel every task and wait until each has ended (tasks spawned meanwhile too)."""
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
