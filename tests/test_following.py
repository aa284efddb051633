"""Following a job for a chat (bot.core.following) and the wording of its progress
(bot.core.progress_words), over a scripted source of updates."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.core import BoothError, Identity, JobOutcome, JobUpdate
from bot.core.following import Progress, follow_job
from bot.core.progress_words import eta_text, step_text
from bot.discord.texts import progress_text as discord_progress
from bot.telegram.texts import progress_text as telegram_progress

WHO = Identity("test", "1")


class ScriptedJob:
    """A job source: its place in the queue, then its updates (after the first look)."""

    def __init__(
        self, updates: list[JobUpdate], positions: list[int | None], *, then_gone: bool = False
    ) -> None:
        self.script = updates
        self.positions = positions
        # After the script, refuse as the core does once the job's rows are gone.
        self.then_gone = then_gone
        self.looked = asyncio.Event()
        self.consumed = 0

    async def queue_position(self, job_id: int) -> int | None:
        self.looked.set()
        return self.positions.pop(0) if self.positions else None

    async def updates(self, who: Identity, job_id: int) -> AsyncIterator[JobUpdate]:
        await self.looked.wait()  # the place in the queue is shown before the job starts
        for update in self.script:
            self.consumed += 1
            yield update
        if self.then_gone:
            raise BoothError("You have no job 7.")


async def follow(source: ScriptedJob, kind: str = "train") -> tuple[JobOutcome, list[Progress]]:
    shown: list[Progress] = []
    outcome = await follow_job(source, WHO, 7, kind, shown.append, poll=3600.0)
    return outcome, shown


async def test_progress_from_the_queue_to_the_end() -> None:
    done = JobOutcome(7, "train", "succeeded", version=2)
    source = ScriptedJob(
        [
            JobUpdate(7, "running"),
            JobUpdate(7, "progress", 1, 4, eta=30.0),
            JobUpdate(7, "sample", 1, 4, preview=b"png 1"),
            JobUpdate(7, "progress", 2, 4, eta=20.0),
            JobUpdate(7, "checking", 2),  # the likeness is measured: the total is kept
            JobUpdate(7, "succeeded", outcome=done),
            JobUpdate(7, "progress", 3, 4),  # never read: the job has ended
        ],
        positions=[2],
    )
    outcome, shown = await follow(source)
    assert outcome == done and source.consumed == 6
    assert [(p.state, p.position, p.step, p.total, p.previews) for p in shown] == [
        ("queued", 2, 0, 0, 0),
        ("running", None, 0, 0, 0),
        ("progress", None, 1, 4, 0),
        ("progress", None, 1, 4, 1),  # a new preview is a new Progress, at the same step
        ("progress", None, 2, 4, 1),
        ("checking", None, 2, 4, 1),
    ]
    # Both chats say what a check is, in the core's words.
    assert telegram_progress(shown[5]) == (
        "Training (job 7): at step 2, checking how much the model looks like you."
    )
    assert discord_progress(shown[5]) == (
        "Training your model: at step 2, checking how much the model looks like you…"
    )
    assert shown[3].preview == b"png 1" and shown[4].preview == b"png 1"


async def test_a_final_state_without_an_outcome_still_ends_the_job() -> None:
    source = ScriptedJob([JobUpdate(7, "failed", message="out of memory")], positions=[])
    outcome, shown = await follow(source, "imagine")
    assert outcome == JobOutcome(7, "imagine", "failed", "out of memory")
    assert shown == []  # no place in the queue: it was already running


async def test_a_job_whose_rows_went_with_its_user_ended_erased() -> None:
    source = ScriptedJob([JobUpdate(7, "running")], [1], then_gone=True)
    outcome, _ = await follow(source)
    assert outcome == JobOutcome(7, "train", "erased")
    # Updates that stop without an end: erased too.
    outcome, _ = await follow(ScriptedJob([JobUpdate(7, "running")], [1]))
    assert outcome.state == "erased"


async def test_previews_reach_the_chat_before_the_progress_shows_them() -> None:
    seen: list[str] = []
    source = ScriptedJob(
        [
            JobUpdate(7, "sample", 2, 4, preview=b"png"),
            JobUpdate(7, "succeeded", outcome=JobOutcome(7, "train", "succeeded")),
        ],
        positions=[1],
    )

    async def on_preview(update: JobUpdate) -> None:
        seen.append(f"preview at step {update.step}")

    def show(progress: Progress) -> None:
        seen.append(f"{progress.state} with {progress.previews} preview(s)")

    await follow_job(source, WHO, 7, "train", show, poll=3600.0, on_preview=on_preview)
    assert seen == ["queued with 0 preview(s)", "preview at step 2", "running with 1 preview(s)"]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (float("inf"), ""),
        (-1.0, ""),
        (0.4, "under 1 s left"),
        (40.2, "about 40 s left"),
        (90.0, "about 90 s left"),
        (200.0, "about 3 min left"),
    ],
)
def test_the_eta_wording(seconds: float | None, text: str) -> None:
    assert eta_text(seconds) == text


def test_the_step_wording() -> None:
    assert step_text(3, 8, 12.0) == "step 3 of 8 (38%), about 12 s left"
    assert step_text(8, 8) == "step 8 of 8 (100%)"
    with pytest.raises(ValueError, match="total steps must be 1 or more, got 0"):
        step_text(1, 0)
