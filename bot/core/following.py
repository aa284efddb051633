"""Following one job for a chat, from the queue to its end, in one way for every front
end: what its live message should show while it waits and runs, and how it ended.

`follow_job` turns the core's updates into `Progress` values (with the job's place in
the queue while it waits, looked up every `poll` seconds), hands each to `show`, and
returns the `JobOutcome` at the first of the FINAL_STATES. A front end renders the
`Progress` in its own words and shows it with a `LiveText` (bot.core.pacing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from bot.core.types import FINAL_STATES, BoothError, Identity, JobOutcome, JobUpdate

__all__ = ["POSITION_POLL", "JobSource", "Progress", "follow_job"]

# Seconds between two looks at a waiting job's place in the queue.
POSITION_POLL = 5.0


class JobSource(Protocol):
    """What following a job needs of the core (the Booth has it)."""

    def updates(self, who: Identity, job_id: int) -> AsyncIterator[JobUpdate]: ...

    async def queue_position(self, job_id: int) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Progress:
    """What a job that has not ended shows: its state, its place in the queue while it
    waits, its step, and its latest preview.

    States: queued, running, progress, checking (a training measuring its likeness),
    paused (a training making way for pictures) and retrying (the engine restarted).
    `previews` counts the previews so far: a new one makes a new `Progress` even when
    the rest is the same.
    """

    job_id: int
    kind: str
    state: str = "queued"
    position: int | None = None  # 1 runs next; None while unknown, or once it runs
    step: int = 0
    total: int = 0
    eta: float | None = None  # seconds left
    preview: bytes | None = dataclasses.field(default=None, compare=False, repr=False)
    previews: int = 0


async def follow_job(
    source: JobSource,
    who: Identity,
    job_id: int,
    kind: str,
    show: Callable[[Progress], None],
    *,
    poll: float = POSITION_POLL,
    on_preview: Callable[[JobUpdate], Awaitable[None]] | None = None,
) -> JobOutcome:
    """Follow the user's job `job_id` until it ends; how it ended.

    A job whose updates stop without an end, or refuse (its rows went with its user's
    data), ended as "erased".
    """
    current = Progress(job_id, kind)
    started = asyncio.Event()

    async def positions() -> None:
        nonlocal current
        while not started.is_set():
            position = await source.queue_position(job_id)
            if position is None or started.is_set():
                return  # running, or over: the updates say so
            current = dataclasses.replace(current, position=position)
            show(current)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), poll)

    poller = asyncio.create_task(positions(), name=f"job-{job_id}-position")
    try:
        async for update in source.updates(who, job_id):
            if update.state in FINAL_STATES:
                return update.outcome or JobOutcome(job_id, kind, update.state, update.message)
            started.set()
            current = _next(current, update)
            if update.state == "sample" and on_preview is not None:
                await on_preview(update)
            show(current)
    except BoothError:
        pass  # erased meanwhile: its rows went with it
    finally:
        poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poller
    return JobOutcome(job_id, kind, "erased")


def _next(current: Progress, update: JobUpdate) -> Progress:
    total = update.total or current.total
    if update.state == "sample":
        # A preview changes the picture, not the step; it shows the job has started.
        return dataclasses.replace(
            current,
            state="running" if current.state == "queued" else current.state,
            position=None,
            total=total,
            preview=update.preview if update.preview is not None else current.preview,
            previews=current.previews + (update.preview is not None),
        )
    return dataclasses.replace(
        current,
        state=update.state,
        position=None,
        step=update.step,
        total=total,
        eta=update.eta,
    )
