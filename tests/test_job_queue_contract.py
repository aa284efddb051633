"""The job queue contract: what every `storage.ports.JobQueue` backend must do.

Behaviour through the interface only: the order jobs run in, the crash-safety
guarantees (a job whose worker died is handed out again once, attempts are counted, a
finished job never changes), progress and cancellation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from storage_backends import BACKENDS, Backend, open_backend

from engine.jobs import ImagineRequest, ImagineResult, TrainRequest, TrainResult
from storage import ports

PICTURE = ImagineRequest("a portrait", seed=7, count=2)
TRAINING = TrainRequest(("c" * 64,), "zovaka", "tiny", seed=1, sample_every=0, checkpoint_every=1)


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with open_backend(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
def queue(backend: Backend) -> ports.JobQueue:
    return backend.queue


async def _users(backend: Backend, *names: str) -> list[int]:
    return [(await backend.repo.get_or_create_user("cli", n)).id for n in names]


async def _status(queue: ports.JobQueue, job_id: int) -> str:
    job = await queue.get(job_id)
    assert job is not None
    return job.status


async def test_a_queued_job_reads_back_typed(backend: Backend, queue: ports.JobQueue) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, PICTURE)
    assert (job.user_id, job.kind, job.status, job.attempts, job.progress) == (
        ann,
        "imagine",
        "queued",
        0,
        0,
    )
    assert job.request() == PICTURE and job.outcome() is None
    assert await queue.get(job.id) == job
    assert await queue.get(job.id + 1000) is None


async def test_generation_first_then_users_in_turn_then_age(
    backend: Backend, queue: ports.JobQueue
) -> None:
    ann, bob = await _users(backend, "ann", "bob")
    a_train = await queue.enqueue(ann, TRAINING)
    a1 = await queue.enqueue(ann, PICTURE)
    a2 = await queue.enqueue(ann, PICTURE)
    b_train = await queue.enqueue(bob, TRAINING)
    b1 = await queue.enqueue(bob, PICTURE)
    assert await queue.schedule() == [a1.id, b1.id, a2.id, a_train.id, b_train.id]
    assert await queue.queued() == [await queue.get(j.id) for j in (a1, b1, a2, a_train, b_train)]
    assert [await queue.position(j.id) for j in (a1, b1, a2, a_train, b_train)] == [1, 2, 3, 4, 5]
    assert (await queue.next_job()) == await queue.get(a1.id)
    assert await queue.has_queued("imagine") and await queue.has_queued("train")


async def test_only_queued_jobs_have_a_place(backend: Backend, queue: ports.JobQueue) -> None:
    ann, bob = await _users(backend, "ann", "bob")
    first = await queue.enqueue(ann, PICTURE)
    second = await queue.enqueue(bob, PICTURE)
    await queue.enqueue(bob, TRAINING)
    assert await queue.depth() == {"imagine": 2, "train": 1}
    await queue.mark_running(first.id)
    assert await queue.depth() == {"imagine": 1, "train": 1}
    assert await queue.position(first.id) is None
    assert await queue.position(second.id) == 1
    assert await queue.next_job() == await queue.get(second.id)
    await queue.finish(second.id, "succeeded", result=ImagineResult(()))
    assert await queue.position(second.id) is None
    assert await queue.depth() == {"train": 1}
    assert not await queue.has_queued("imagine")


async def test_active_jobs_are_the_queued_and_running_ones(
    backend: Backend, queue: ports.JobQueue
) -> None:
    ann, bob = await _users(backend, "ann", "bob")
    running = await queue.enqueue(ann, TRAINING)
    await queue.enqueue(ann, PICTURE)
    done = await queue.enqueue(ann, PICTURE)
    await queue.enqueue(bob, PICTURE)
    await queue.mark_running(running.id)
    await queue.finish(done.id, "failed", error="boom")
    assert (await queue.active_count(ann), await queue.active_count(bob)) == (2, 1)


async def test_each_run_is_an_attempt_and_keeps_its_first_start(
    backend: Backend, queue: ports.JobQueue
) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, TRAINING)
    await queue.mark_running(job.id)
    first = await queue.get(job.id)
    assert first is not None and first.status == "running" and first.attempts == 1
    assert first.started_at is not None
    await queue.requeue(job.id, attempt_counts=True)
    await queue.mark_running(job.id)
    again = await queue.get(job.id)
    assert again is not None and again.attempts == 2 and again.started_at == first.started_at


async def test_a_job_whose_worker_died_is_handed_out_again_once(
    backend: Backend, queue: ports.JobQueue
) -> None:
    ann, bob = await _users(backend, "ann", "bob")
    lost = await queue.enqueue(ann, TRAINING)
    waiting = await queue.enqueue(bob, TRAINING)
    await queue.mark_running(lost.id)
    # The whole process died: a fresh queue over the same jobs puts the job back.
    restarted = await backend.reopen_queue()
    assert await restarted.recover() == 1
    assert await restarted.recover() == 0
    assert await restarted.schedule() == [lost.id, waiting.id]
    back = await restarted.get(lost.id)
    # The run that died counts: a job that keeps killing its worker runs out of attempts.
    assert back is not None and back.status == "queued" and back.attempts == 1


async def test_a_worker_lost_mid_run_requeues_the_job_once(
    backend: Backend, queue: ports.JobQueue
) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, TRAINING)
    await queue.mark_running(job.id)
    await queue.requeue(job.id, attempt_counts=True)
    await queue.requeue(job.id, attempt_counts=True)  # a second report of the same loss
    back = await queue.get(job.id)
    assert back is not None and back.status == "queued" and back.attempts == 1
    assert await queue.schedule() == [job.id]


async def test_a_yield_gives_the_attempt_back(backend: Backend, queue: ports.JobQueue) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, TRAINING)
    await queue.mark_running(job.id)
    await queue.requeue(job.id, attempt_counts=False)
    back = await queue.get(job.id)
    assert back is not None and back.status == "queued" and back.attempts == 0


async def test_a_finished_job_is_never_finished_again(
    backend: Backend, queue: ports.JobQueue
) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, TRAINING)
    await queue.mark_running(job.id)
    await queue.set_progress(job.id, 0.5)
    result = TrainResult(lora_id=3, version=1, steps=10, loss=0.25)
    await queue.finish(job.id, "succeeded", result=result)
    await queue.finish(job.id, "failed", error="a late report")
    await queue.finish(job.id, "succeeded", result=TrainResult(9, 9, 9, 9.0))
    done = await queue.get(job.id)
    assert done is not None and done.status == "succeeded" and done.error is None
    assert done.outcome() == result and done.progress == 1 and done.finished_at is not None
    # Nothing hands it out again: not a restart, not a late requeue.
    await queue.requeue(job.id, attempt_counts=True)
    assert await (await backend.reopen_queue()).recover() == 0
    assert await _status(queue, job.id) == "succeeded"
    assert await queue.schedule() == []


async def test_a_failure_keeps_its_message_and_its_progress(
    backend: Backend, queue: ports.JobQueue
) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, TRAINING)
    await queue.mark_running(job.id)
    await queue.set_progress(job.id, 0.25)
    assert (await queue.get(job.id)).progress == 0.25  # type: ignore[union-attr]
    await queue.finish(job.id, "failed", error="out of memory")
    failed = await queue.get(job.id)
    assert failed is not None and (failed.status, failed.error, failed.progress) == (
        "failed",
        "out of memory",
        0.25,
    )
    assert failed.outcome() is None


@pytest.mark.parametrize("status", ["running", "queued", "done", ""])
async def test_finishing_takes_only_a_final_status(
    backend: Backend, queue: ports.JobQueue, status: str
) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, PICTURE)
    with pytest.raises(ValueError, match=f"not a final status: {status!r}"):
        await queue.finish(job.id, status)
    assert await _status(queue, job.id) == "queued"
    assert set(ports.FINAL_STATUSES) == {"succeeded", "failed", "cancelled"}


async def test_a_cancelled_queued_job_leaves_the_schedule(
    backend: Backend, queue: ports.JobQueue
) -> None:
    (ann,) = await _users(backend, "ann")
    job = await queue.enqueue(ann, PICTURE)
    other = await queue.enqueue(ann, PICTURE)
    await queue.finish(job.id, "cancelled", error="cancelled by the user")
    assert await queue.schedule() == [other.id]
    assert await _status(queue, job.id) == "cancelled"


async def test_a_cancel_asked_of_a_running_job_outlives_its_worker(
    backend: Backend, queue: ports.JobQueue
) -> None:
    ann, bob = await _users(backend, "ann", "bob")
    job = await queue.enqueue(ann, TRAINING)
    untouched = await queue.enqueue(bob, TRAINING)
    await queue.mark_running(job.id)
    await queue.request_cancel(job.id)
    assert await queue.cancel_requested(job.id)
    assert not await queue.cancel_requested(untouched.id)
    # The worker died before it stopped: whoever picks the job up next sees the request.
    restarted = await backend.reopen_queue()
    await restarted.recover()
    assert await restarted.cancel_requested(job.id)
    assert await _status(restarted, job.id) == "queued"
