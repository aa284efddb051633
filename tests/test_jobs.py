"""The durable job queue: schedule order, recovery after a crash, attempts, LoRA versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.jobs import ImagineRequest, ImagineResult, TrainRequest
from storage import Database, Repository
from storage.jobs import JobQueue

PICTURE = ImagineRequest("a portrait")
TRAINING = TrainRequest(("c" * 64,), "zovaka", "tiny", seed=1, sample_every=0, checkpoint_every=1)


@pytest.fixture
async def db(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with Database(tmp_path / "db.sqlite3") as db:
        yield db


async def users(db: Database, *names: str) -> list[int]:
    repo = Repository(db)
    return [(await repo.get_or_create_user("cli", name)).id for name in names]


async def test_generation_runs_before_training_and_users_take_turns(db: Database) -> None:
    jobs = JobQueue(db)
    ann, bob = await users(db, "ann", "bob")
    a_train = await jobs.enqueue(ann, TRAINING)
    a1 = await jobs.enqueue(ann, PICTURE)
    a2 = await jobs.enqueue(ann, PICTURE)
    a3 = await jobs.enqueue(ann, PICTURE)
    b1 = await jobs.enqueue(bob, PICTURE)
    b_train = await jobs.enqueue(bob, TRAINING)
    # Bob's one picture does not wait behind all of Ann's.
    assert await jobs.schedule() == [a1.id, b1.id, a2.id, a3.id, a_train.id, b_train.id]
    assert await jobs.position(b1.id) == 2
    assert (await jobs.next_job()).id == a1.id  # type: ignore[union-attr]
    assert (a1.kind, a_train.kind) == ("imagine", "train")
    assert (a1.request(), a_train.request()) == (PICTURE, TRAINING)


async def test_a_training_that_waited_long_ranks_with_the_pictures(db: Database) -> None:
    ann, bob = await users(db, "ann", "bob")
    a_train = await JobQueue(db).enqueue(ann, TRAINING)
    b1 = await JobQueue(db).enqueue(bob, PICTURE)
    b2 = await JobQueue(db).enqueue(bob, PICTURE)
    patient = JobQueue(db)
    assert await patient.schedule() == [b1.id, b2.id, a_train.id]
    assert not patient.waited_long(a_train)
    # Queued "an hour" ago, by the clock of a queue whose bound is shorter than that.
    await db.conn.execute(
        "UPDATE jobs SET created_at = '2000-01-01T00:00:00.000+00:00' WHERE id = ?", (a_train.id,)
    )
    waited = await patient.get(a_train.id)
    assert waited is not None and patient.waited_long(waited)
    # Ann's training is older than Bob's pictures and her turn comes first.
    assert await patient.schedule() == [a_train.id, b1.id, b2.id]
    assert await JobQueue(db, training_wait=1e10).schedule() == [b1.id, b2.id, a_train.id]


async def test_running_jobs_are_queued_again_after_a_crash(db: Database) -> None:
    jobs = JobQueue(db)
    (ann,) = await users(db, "ann")
    job = await jobs.enqueue(ann, TRAINING)
    await jobs.mark_running(job.id)
    assert await jobs.position(job.id) is None
    assert await JobQueue(db).recover() == 1
    again = await jobs.get(job.id)
    assert again is not None and again.status == "queued" and again.attempts == 1
    assert await jobs.active_count(ann) == 1


async def test_a_yield_does_not_use_an_attempt_but_a_crash_does(db: Database) -> None:
    jobs = JobQueue(db)
    (ann,) = await users(db, "ann")
    job = await jobs.enqueue(ann, TRAINING)
    await jobs.mark_running(job.id)
    await jobs.requeue(job.id, attempt_counts=False)
    assert (await jobs.get(job.id)).attempts == 0  # type: ignore[union-attr]
    await jobs.mark_running(job.id)
    await jobs.requeue(job.id, attempt_counts=True)
    assert (await jobs.get(job.id)).attempts == 1  # type: ignore[union-attr]


async def test_a_finished_job_stays_finished(db: Database) -> None:
    jobs = JobQueue(db)
    (ann,) = await users(db, "ann")
    job = await jobs.enqueue(ann, PICTURE)
    await jobs.finish(job.id, "succeeded", result=ImagineResult(()))
    await jobs.finish(job.id, "cancelled")
    done = await jobs.get(job.id)
    assert done is not None and done.status == "succeeded" and done.progress == 1
    assert await jobs.next_job() is None
    with pytest.raises(ValueError, match="not a final status"):
        await jobs.finish(job.id, "running")


async def test_each_training_adds_a_version_and_the_user_picks_the_active_one(
    db: Database,
) -> None:
    repo = Repository(db)
    (ann,) = await users(db, "ann")
    common = {"base_model": "tiny", "family": "tiny", "trigger_word": "zovaka", "recipe": {}}
    v1 = await repo.add_lora(ann, blob="a" * 64, sha256="a" * 64, **common)  # type: ignore[arg-type]
    v2 = await repo.add_lora(ann, blob="b" * 64, sha256="b" * 64, **common)  # type: ignore[arg-type]
    assert (v1.version, v2.version) == (1, 2)
    assert (await repo.active_lora(ann)).version == 2  # type: ignore[union-attr]
    assert await repo.set_active_lora(ann, 1)
    assert (await repo.active_lora(ann)).version == 1  # type: ignore[union-attr]
    assert not await repo.set_active_lora(ann, 7)
    assert (await repo.active_lora(ann)).version == 1  # type: ignore[union-attr]


async def test_results_of_a_job_finished_twice_are_stored_once(db: Database) -> None:
    repo = Repository(db)
    jobs = JobQueue(db)
    (ann,) = await users(db, "ann")
    job = await jobs.enqueue(ann, TRAINING)
    common = {"base_model": "tiny", "family": "tiny", "trigger_word": "zovaka", "recipe": {}}
    first = await repo.add_lora(ann, blob="a" * 64, sha256="a" * 64, job_id=job.id, **common)  # type: ignore[arg-type]
    again = await repo.add_lora(ann, blob="a" * 64, sha256="a" * 64, job_id=job.id, **common)  # type: ignore[arg-type]
    assert again == first and len(await repo.loras(ann)) == 1
    picture = await jobs.enqueue(ann, PICTURE)
    for _ in range(2):
        await repo.add_image(picture.id, ann, blob="c" * 64, seed=1, width=64, height=64)
    assert len(await repo.images_of_job(picture.id)) == 1
