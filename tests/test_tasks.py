"""The front ends' tracked task group (bot.core.tasks): kept, logged, cancelled together."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.core.tasks import TaskSet


async def forever() -> None:
    await asyncio.Event().wait()


async def test_a_users_tasks_are_cancelled_together_and_no_others() -> None:
    tasks = TaskSet()
    ann = [tasks.spawn(forever(), "ann-1", owner=1), tasks.spawn(forever(), "ann-2", owner=1)]
    bob = tasks.spawn(forever(), "bob", owner=2)
    anonymous = tasks.spawn(forever(), "nobody's")
    tasks.cancel_owned(1)
    await asyncio.gather(*ann, return_exceptions=True)
    assert all(t.cancelled() for t in ann) and not bob.done() and not anonymous.done()
    assert len(tasks) == 2
    tasks.cancel_owned(1)  # nothing left of theirs: no error
    await tasks.cancel_all()
    assert len(tasks) == 0 and bob.cancelled() and anonymous.cancelled()


async def test_a_failure_is_logged_once_and_the_task_let_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("the edit went wrong")

    tasks = TaskSet()
    task = tasks.spawn(broken(), "broken-task")
    # Its done-callback was added first, so it has run once gather sees the task end.
    await asyncio.gather(task, return_exceptions=True)
    assert len(tasks) == 0
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failures] == ["task broken-task failed"]


async def test_cancel_all_also_ends_tasks_started_while_stopping() -> None:
    tasks = TaskSet()
    late: list[asyncio.Task[None]] = []
    running = asyncio.Event()

    async def starts_another_on_the_way_out() -> None:
        running.set()
        try:
            await forever()
        finally:
            late.append(tasks.spawn(forever(), "late"))

    tasks.spawn(starts_another_on_the_way_out(), "first")
    await running.wait()
    await asyncio.wait_for(tasks.cancel_all(), 5.0)
    assert len(tasks) == 0 and late and late[0].cancelled()
