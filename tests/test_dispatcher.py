"""The engine process behind the durable queue, with a real subprocess on the tiny model:
training, generation, SIGKILL of the engine, a restart of the whole program, yielding to
generation, cancellation and erasure mid-job."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.config import Config
from bot.core import Booth, BoothError, Identity, ImagineRequest, JobUpdate, open_booth
from bot.core.app import engine_options
from bot.core.dispatcher import Dispatcher
from engine.jobs import ImagineRequest as JobImagine
from engine.jobs import JobRequest, ModelRef
from engine.process import EngineProcess
from engine.protocol import Trained
from storage import NewPhoto

ANN = Identity("cli", "ann")
BOB = Identity("cli", "bob")
TIMEOUT = 180  # seconds for any one scenario; a hang fails instead of blocking CI


@pytest.fixture
def engine_config(config: Config) -> Config:
    training = dataclasses.replace(config.training, min_photos=2, steps=12, checkpoint_every=3)
    return dataclasses.replace(config, training=training)


async def with_photos(booth: Booth, who: Identity, count: int = 3) -> None:
    """A consenting user with `count` accepted crops (noise: the engine needs no faces)."""
    await booth.accept_consent(who)
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    rng = np.random.default_rng(len(who.user_id))
    side = booth.family.resolution  # the trainer takes crops at its family's size only
    rows = []
    for n in range(count):
        img = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        key = await booth.blobs.put(buf.getvalue())
        rows.append(NewPhoto(f"{n:064x}", key, key, b"\0" * 512, f"{n:016x}", (0, 0, 64, 64), 99.0))
    await booth.repo.add_photos(user.id, rows)


async def watch(
    booth: Booth,
    job_id: int,
    on: Callable[[JobUpdate], Awaitable[None]] | None = None,
    who: Identity = ANN,
) -> list[JobUpdate]:
    """Every update of `who`'s job until it ends; `on` runs after each one."""
    seen = []
    async for update in booth.updates(who, job_id):
        seen.append(update)
        if on is not None:
            await on(update)
    return seen


def steps(updates: list[JobUpdate]) -> list[int]:
    return [u.step for u in updates if u.state == "progress"]


@pytest.fixture
async def booth(engine_config: Config) -> AsyncIterator[Booth]:  # type: ignore[override]
    async with open_booth(engine_config, dispatch=True) as booth:
        yield booth


async def test_train_then_imagine_reproducibly(booth: Booth) -> None:
    await with_photos(booth, ANN)
    ticket = await booth.train(ANN)
    saved: dict[int, float] = {}

    async def read_progress(update: JobUpdate) -> None:
        if update.state == "progress":
            job = await booth.jobs.get(ticket.job_id)
            assert job is not None
            saved[update.step] = job.progress

    updates = await asyncio.wait_for(watch(booth, ticket.job_id, read_progress), TIMEOUT)
    assert updates[-1].state == "succeeded", updates[-1]
    assert steps(updates) == list(range(1, 13))
    # The queue keeps a job's progress a tenth at a time, not at every step.
    tenths = [s for s in range(1, 13) if s * 10 // 12 > (s - 1) * 10 // 12]
    assert saved == {s: max([t for t in tenths if t <= s], default=0) / 12 for s in saved}
    assert len(saved) == 12 and saved[7] == saved[6] == 6 / 12
    user = await booth.repo.find_user(ANN.platform, ANN.user_id)
    lora = await booth.repo.active_lora(user.id)  # type: ignore[union-attr]
    assert lora is not None and lora.version == 1
    lora_bytes = await booth.blobs.get(lora.blob)
    assert hashlib.sha256(lora_bytes).hexdigest() == lora.sha256
    assert lora_bytes[8:9] == b"{"  # a safetensors header, not a pickle

    async def pictures(seed: int) -> list[bytes]:
        job = await booth.imagine(ANN, ImagineRequest("a portrait", seed=seed, count=2, steps=4))
        previews: list[int] = []

        async def keep_preview(update: JobUpdate) -> None:
            if update.state == "sample" and update.preview is not None:
                assert update.preview.startswith(b"\x89PNG")
                previews.append(update.step)

        final = (await asyncio.wait_for(watch(booth, job.job_id, keep_preview), TIMEOUT))[-1]
        assert final.state == "succeeded", final
        # Previews at steps 1 to 3 of 4; one superseded while the last was being sent is
        # dropped (engine.worker.LatestOnly), but the newest always arrives.
        assert previews[-1:] == [3] and previews == sorted(set(previews))
        return await booth.job_images(ANN, job.job_id)

    first, again, other = await pictures(7), await pictures(7), await pictures(8)
    assert len(first) == 2 and first[0] != first[1]
    # The same picture again, but for the invisible mark of its own job id.
    assert all(_difference(a, b) < 3 for a, b in zip(first, again, strict=True))
    assert _difference(first[0], other[0]) > 10
    with pytest.raises(BoothError, match="no job"):
        await booth.job_images(BOB, 2)


def _difference(png: bytes, other: bytes) -> float:
    """Mean absolute difference of two pictures' pixels, in levels of 255."""
    a, b = (np.asarray(Image.open(io.BytesIO(p)), dtype=np.float64) for p in (png, other))
    return float(np.mean(np.abs(a - b)))


async def test_sigkill_mid_training_resumes_from_the_checkpoint(booth: Booth) -> None:
    await with_photos(booth, ANN)
    ticket = await booth.train(ANN)
    killed: list[int] = []

    async def kill_once(update: JobUpdate) -> None:
        pid = booth.dispatcher.engine.pid  # type: ignore[union-attr]
        if update.state == "progress" and update.step == 7 and not killed and pid:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    updates = await asyncio.wait_for(watch(booth, ticket.job_id, kill_once), TIMEOUT)
    assert updates[-1].state == "succeeded", updates[-1]
    retry = next(i for i, u in enumerate(updates) if u.state == "retrying")
    resumed = steps(updates[retry:])
    # Checkpoints fall every 3 steps: the run resumes after the last one, not at step 1.
    assert resumed[0] > 1 and (resumed[0] - 1) % 3 == 0 and resumed[0] - 1 >= 6
    assert resumed[-1] == 12
    assert booth.dispatcher.engine.pid not in killed  # type: ignore[union-attr]
    job = await booth.jobs.get(ticket.job_id)
    assert job is not None and job.attempts == 2


async def test_a_job_that_keeps_killing_the_engine_fails(
    engine_config: Config,
) -> None:
    config = dataclasses.replace(
        engine_config, engine=dataclasses.replace(engine_config.engine, max_attempts=2)
    )
    async with open_booth(config, dispatch=True) as booth:
        await with_photos(booth, ANN)
        ticket = await booth.train(ANN)

        async def kill(update: JobUpdate) -> None:
            pid = booth.dispatcher.engine.pid  # type: ignore[union-attr]
            if update.state == "progress" and pid:
                os.kill(pid, signal.SIGKILL)

        updates = await asyncio.wait_for(watch(booth, ticket.job_id, kill), TIMEOUT)
        assert updates[-1].state == "failed"
        assert "stopped unexpectedly 2 times" in (updates[-1].message or "")
        status = await booth.status(ANN)
        assert status.loras == () and status.jobs[0].status == "failed"


async def test_training_yields_to_a_waiting_generation_then_continues(booth: Booth) -> None:
    await with_photos(booth, ANN)
    first = await booth.train(ANN)
    await asyncio.wait_for(watch(booth, first.job_id), TIMEOUT)
    await with_photos(booth, BOB)
    training = await booth.train(ANN)  # a second version
    finished: list[int] = []
    picture: list[int] = []

    async def ask_for_a_picture(update: JobUpdate) -> None:
        if update.state == "progress" and update.step == 2 and not picture:
            ticket = await booth.imagine(ANN, ImagineRequest("a portrait", seed=1, steps=2))
            picture.append(ticket.job_id)
            tasks.add(asyncio.create_task(record(ticket.job_id)))

    async def record(job_id: int) -> None:
        final = (await watch(booth, job_id))[-1]
        assert final.state == "succeeded"
        finished.append(job_id)

    tasks: set[asyncio.Task[None]] = set()
    updates = await asyncio.wait_for(watch(booth, training.job_id, ask_for_a_picture), TIMEOUT)
    await asyncio.gather(*tasks)
    assert updates[-1].state == "succeeded"
    assert [u.state for u in updates].count("paused") == 1
    assert finished == picture
    pause = next(i for i, u in enumerate(updates) if u.state == "paused")
    before, after = steps(updates[:pause]), steps(updates[pause:])
    assert after[0] == before[-1] + 1 and after[-1] == 12
    job = await booth.jobs.get(training.job_id)
    assert job is not None and job.attempts == 1


async def test_a_training_that_waited_long_makes_way_no_more(engine_config: Config) -> None:
    engine = dataclasses.replace(engine_config.engine, max_training_wait=0.0)
    async with open_booth(
        dataclasses.replace(engine_config, engine=engine), dispatch=True
    ) as booth:
        await with_photos(booth, ANN)
        first = await booth.train(ANN)
        await asyncio.wait_for(watch(booth, first.job_id), TIMEOUT)
        training = await booth.train(ANN)  # a second version
        picture: list[int] = []

        async def ask_for_a_picture(update: JobUpdate) -> None:
            if update.state == "progress" and update.step == 2 and not picture:
                ticket = await booth.imagine(ANN, ImagineRequest("a portrait", seed=1, steps=2))
                picture.append(ticket.job_id)

        updates = await asyncio.wait_for(watch(booth, training.job_id, ask_for_a_picture), TIMEOUT)
        assert updates[-1].state == "succeeded"
        assert "paused" not in [u.state for u in updates]
        assert steps(updates) == list(range(1, 13))
        final = (await asyncio.wait_for(watch(booth, picture[0]), TIMEOUT))[-1]
        assert final.state == "succeeded"


async def test_cancel_a_running_training_and_a_queued_generation(booth: Booth) -> None:
    await with_photos(booth, ANN)

    async def cancel_at_3(update: JobUpdate) -> None:
        if update.state == "progress" and update.step == 3:
            assert await booth.cancel(ANN) == [ticket.job_id]

    ticket = await booth.train(ANN)
    updates = await asyncio.wait_for(watch(booth, ticket.job_id, cancel_at_3), TIMEOUT)
    assert updates[-1].state == "cancelled"
    assert max(steps(updates)) < 12
    assert (await booth.status(ANN)).loras == ()
    assert not booth.dispatcher.job_dir(ticket.job_id).exists()  # type: ignore[union-attr]
    with pytest.raises(BoothError, match="no queued or running job 99"):
        await booth.cancel(ANN, 99)


async def test_a_restart_of_the_whole_program_loses_nothing(engine_config: Config) -> None:
    async with open_booth(engine_config, dispatch=True) as booth:
        await with_photos(booth, ANN)
        await with_photos(booth, BOB)
        for who in (ANN, BOB):
            ticket = await booth.train(who)
            assert (await asyncio.wait_for(watch(booth, ticket.job_id, who=who), TIMEOUT))[
                -1
            ].state == ("succeeded")
        queued = [
            await booth.imagine(ANN, ImagineRequest("one", seed=1, steps=2, count=2)),
            await booth.imagine(BOB, ImagineRequest("two", seed=2, steps=2)),
            await booth.train(ANN),
        ]
        crashed = asyncio.Event()

        async def crash(update: JobUpdate) -> None:
            if update.state == "progress":
                crashed.set()

        watcher = asyncio.create_task(watch(booth, queued[0].job_id, crash))
        await asyncio.wait_for(crashed.wait(), TIMEOUT)
        # The program dies: the dispatcher stops mid-job and the engine is killed.
        engine = booth.dispatcher.engine  # type: ignore[union-attr]
        await engine.kill()
        watcher.cancel()
        running = await booth.jobs.get(queued[0].job_id)
        assert running is not None and running.status == "running"

    async with open_booth(engine_config, dispatch=True) as booth:
        for who, ticket in zip((ANN, BOB, ANN), queued, strict=True):
            final = (await asyncio.wait_for(watch(booth, ticket.job_id, who=who), TIMEOUT))[-1]
            assert final.state == "succeeded", (ticket, final)
        ann = await booth.repo.find_user(ANN.platform, ANN.user_id)
        assert ann is not None
        assert len(await booth.repo.images_of_job(queued[0].job_id)) == 2
        assert len(await booth.repo.images_of_job(queued[1].job_id)) == 1
        assert [lora.version for lora in await booth.repo.loras(ann.id)] == [1, 2]


async def test_forget_mid_training_stops_the_job_and_erases_everything(
    booth: Booth, engine_config: Config
) -> None:
    await with_photos(booth, ANN)
    started = asyncio.Event()

    async def note(update: JobUpdate) -> None:
        if update.state == "progress":
            started.set()

    ticket = await booth.train(ANN)
    watcher = asyncio.create_task(watch(booth, ticket.job_id, note))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    erasure = await booth.forget(ANN)
    # Whoever followed the job hears that it ended.
    updates = await asyncio.wait_for(watcher, TIMEOUT)
    assert updates[-1].state == "erased"
    assert updates[-1].outcome is not None and updates[-1].outcome.state == "erased"
    assert erasure.jobs == 1 and erasure.photos == 3
    assert await booth.jobs.get(ticket.job_id) is None
    assert not any(p.is_file() for p in engine_config.blob_dir.rglob("*"))
    assert not any(engine_config.work_dir.glob("job-*"))


async def test_forget_drops_the_model_an_idle_engine_keeps_loaded(booth: Booth) -> None:
    await with_photos(booth, ANN)
    trained = await booth.train(ANN)
    assert (await asyncio.wait_for(watch(booth, trained.job_id), TIMEOUT))[-1].state == "succeeded"
    picture = await booth.imagine(ANN, ImagineRequest("a portrait", seed=1, steps=2))
    assert (await asyncio.wait_for(watch(booth, picture.job_id), TIMEOUT))[-1].state == "succeeded"
    assert booth.dispatcher is not None
    lane = booth.dispatcher.lanes[0]
    assert lane.models  # the lane remembers Ann's model for her next picture
    ann = await booth.repo.find_user(ANN.platform, ANN.user_id)
    assert ann is not None
    models = [model.sha256 for model in await booth.repo.loras(ann.id)]
    await booth.forget(ANN)
    assert not lane.models
    # Nothing runs: the engine is idle, and its events are this test's to read.
    event = await asyncio.wait_for(lane.engine.next_event(), TIMEOUT)
    assert event == {"event": "forgotten", "count": 1}  # it held her LoRA in memory
    await lane.engine.send({"op": "forget", "sha256s": models})
    event = await asyncio.wait_for(lane.engine.next_event(), TIMEOUT)
    assert event == {"event": "forgotten", "count": 0}  # and holds it no longer


async def test_a_running_lane_has_the_next_pictures_model_read_ahead(
    engine_config: Config, capfd: pytest.CaptureFixture[str]
) -> None:
    engine = dataclasses.replace(engine_config.engine, lora_prefetch="on")
    training = dataclasses.replace(engine_config.training, steps=4, likeness=False)
    config = dataclasses.replace(engine_config, engine=engine, training=training)
    async with open_booth(config, dispatch=True) as booth:
        await with_photos(booth, ANN)
        trained = await booth.train(ANN)
        assert (await asyncio.wait_for(watch(booth, trained.job_id), TIMEOUT))[-1].state == (
            "succeeded"
        )
        ann = await booth.repo.find_user(ANN.platform, ANN.user_id)
        assert ann is not None
        sha256 = (await booth.repo.loras(ann.id))[0].sha256
        operator = Identity("cli", "operator")
        await booth.admin.pause(operator, "queueing two pictures")
        bare = await booth.jobs.enqueue(ann.id, JobImagine("a bare picture", seed=1, steps=8))
        theirs = await booth.imagine(ANN, ImagineRequest("a portrait", seed=2, steps=2))
        await booth.admin.resume(operator)
        for job_id in (bare.id, theirs.job_id):
            updates = await asyncio.wait_for(watch(booth, job_id), TIMEOUT)
            assert updates[-1].state == "succeeded"
            job = await booth.jobs.get(job_id)
            assert job is not None and job.attempts == 1  # advice: the queue is as it was
        assert booth.dispatcher is not None and booth.dispatcher.lanes[0].engine.prefetches
    # The engine's log: while the bare picture was made, Ann's model was read ahead (the
    # dispatcher named it), and her picture loaded it from there.
    log = capfd.readouterr().err
    assert f"prefetched LoRA {sha256[:12]}" in log
    assert f"loaded LoRA {sha256[:12]} as adapter lora_{sha256[:16]} (read ahead)" in log


async def test_scratch_space_of_finished_jobs_is_swept_at_start(engine_config: Config) -> None:
    async with open_booth(engine_config, dispatch=False) as booth:
        await with_photos(booth, ANN)
        ticket = await booth.train(ANN)
        await booth.cancel(ANN)
    stale = [engine_config.work_dir / f"job-{ticket.job_id}", engine_config.work_dir / "job-999"]
    for path in stale:
        path.mkdir(parents=True)
        (path / "crop-0.png").write_bytes(b"left behind by a crash")
    async with open_booth(engine_config, dispatch=True):
        assert not any(path.exists() for path in stale)


async def test_prior_preservation_makes_class_images_once_per_base_model(
    engine_config: Config,
) -> None:
    training = dataclasses.replace(
        engine_config.training, prior_preservation=True, class_images=3, steps=4
    )
    config = dataclasses.replace(engine_config, training=training)
    async with open_booth(config, dispatch=True) as booth:
        await with_photos(booth, ANN)
        await with_photos(booth, BOB)
        made: list[dict[Path, int]] = []
        for who in (ANN, BOB):
            ticket = await booth.train(who)
            final = (await asyncio.wait_for(watch(booth, ticket.job_id, who=who), TIMEOUT))[-1]
            assert final.state == "succeeded", final
            cached = sorted((config.models_dir / "class-images").rglob("*.png"))
            made.append({path: path.stat().st_mtime_ns for path in cached})
        assert len(made[0]) == 3
        assert made[1] == made[0]  # the second training reused them untouched


async def test_queue_limits_and_bad_requests_are_refused_before_queueing(
    engine_config: Config,
) -> None:
    config = dataclasses.replace(
        engine_config, engine=dataclasses.replace(engine_config.engine, max_jobs_per_user=2)
    )
    async with open_booth(config, dispatch=False) as booth:
        await with_photos(booth, ANN, count=1)
        with pytest.raises(BoothError, match="needs at least 2"):
            await booth.train(ANN)
        with pytest.raises(BoothError, match="no trained model yet"):
            await booth.imagine(ANN, ImagineRequest("a portrait"))
        user = await booth.repo.find_user(ANN.platform, ANN.user_id)
        assert user is not None
        key = await booth.blobs.put(b"not really a LoRA")
        await booth.repo.add_lora(
            user.id, base_model="tiny", family="tiny", trigger_word="zovaka", blob=key,
            sha256=key, recipe={},
        )  # fmt: skip
        for bad, message in [
            (ImagineRequest("a portrait", aspect_ratio="7:5"), "'7:5' is not offered"),
            (ImagineRequest("a portrait", count=5), "count must be 1 to 4, got 5"),
            (ImagineRequest("a portrait", steps=0), "steps must be 1 to 100, got 0"),
        ]:
            with pytest.raises(BoothError, match=message):
                await booth.imagine(ANN, bad)
        with pytest.raises(BoothError, match="refused: it falls under sexual"):
            await booth.imagine(ANN, ImagineRequest("me as a n4k3d statue"))
        with pytest.raises(BoothError, match="negative prompt was refused"):
            await booth.imagine(ANN, ImagineRequest("a portrait", negative="clothes"))
        first = await booth.imagine(ANN, ImagineRequest("a portrait"))
        second = await booth.imagine(ANN, ImagineRequest("a castle"))
        assert (first.position, second.position) == (1, 2)
        with pytest.raises(BoothError, match="already have 2 job"):
            await booth.imagine(ANN, ImagineRequest("a third"))
        assert [j.status for j in await booth.repo.jobs(user.id)] == ["queued", "queued"]


async def test_a_result_for_an_erased_user_leaves_no_file(booth: Booth, tmp_path: Path) -> None:
    """A separate process erased the user while the engine worked: nothing may stay."""
    await with_photos(booth, ANN)
    ticket = await booth.train(ANN)
    job = await booth.jobs.get(ticket.job_id)
    assert job is not None
    await booth.dispatcher.abandon_user(job.user_id)  # type: ignore[union-attr]
    await booth.repo.delete_user(job.user_id)
    for leftover in booth.config.blob_dir.rglob("*"):  # their photos, as an erasure would
        if leftover.is_file():
            leftover.unlink()
    lora = tmp_path / "lora.safetensors"
    lora.write_bytes(b"weights of someone who is gone")
    trained: Trained = {
        "path": str(lora),
        "family": "tiny",
        "sha256": "0" * 64,
        "recipe": {},
        "steps": 1,
        "loss": 0.0,
    }
    with pytest.raises(sqlite3.IntegrityError):
        await booth.dispatcher._complete(job, None, trained)  # type: ignore[union-attr]
    assert not any(p.is_file() for p in booth.config.blob_dir.rglob("*"))


async def test_a_paused_queue_holds_jobs_until_resumed(booth: Booth) -> None:
    operator = Identity("cli", "operator")
    dispatcher = booth.dispatcher
    assert dispatcher is not None
    await booth.admin.pause(operator, "maintenance")
    await with_photos(booth, ANN)
    ticket = await booth.train(ANN)
    looked = dispatcher.next_look()
    dispatcher.wake()
    await asyncio.wait_for(looked, TIMEOUT)
    job = await booth.jobs.get(ticket.job_id)
    assert job is not None and job.status == "queued"

    await booth.admin.resume(operator)
    updates = await asyncio.wait_for(watch(booth, ticket.job_id), TIMEOUT)
    assert updates[-1].state == "succeeded"


async def test_jobs_queued_by_another_process_are_picked_up(booth: Booth) -> None:
    await with_photos(booth, ANN)
    user = await booth.repo.find_user(ANN.platform, ANN.user_id)
    assert user is not None
    # As `selfiebooth train` in another shell does: a row in the queue and no doorbell.
    job = await booth.jobs.enqueue(user.id, ImagineRequest("a cat", seed=1, steps=2))
    updates = await asyncio.wait_for(watch(booth, job.id), TIMEOUT)
    assert updates[-1].state == "succeeded", updates[-1]


async def test_jobs_queued_by_an_older_or_newer_version_run_or_say_why(booth: Booth) -> None:
    await with_photos(booth, ANN)
    user = await booth.repo.find_user(ANN.platform, ANN.user_id)
    assert user is not None
    # Rows as an older version stored them (no format number), and as a newer one might.
    old = {
        "prompt": "a cat",
        "negative_prompt": "",
        "seed": 1,
        "steps": 2,
        "guidance": 7.0,
        "aspect_ratio": "1:1",
        "count": 1,
        "lora": None,
    }
    ids = []
    for params in (json.dumps(old), json.dumps({"v": 99, "kind": "imagine", "prompt": "x"})):
        cur = await booth.repo.db.conn.execute(
            "INSERT INTO jobs (user_id, kind, params, created_at, updated_at)"
            " VALUES (?, 'imagine', ?, '2026-01-01', '2026-01-01')",
            (user.id, params),
        )
        ids.append(cur.lastrowid or 0)
    booth.dispatcher.wake()  # type: ignore[union-attr]
    older = await asyncio.wait_for(watch(booth, ids[0]), TIMEOUT)
    assert older[-1].state == "succeeded", older[-1]
    assert len(await booth.job_images(ANN, ids[0])) == 1
    newer = await asyncio.wait_for(watch(booth, ids[1]), TIMEOUT)
    assert newer[-1].state == "failed"
    assert newer[-1].outcome is not None
    assert "written in format 99, by another version" in (newer[-1].outcome.message or "")


async def test_a_free_lane_takes_the_picture_whose_model_it_holds(engine_config: Config) -> None:
    async with open_booth(engine_config) as booth:  # no dispatcher of its own
        options = engine_options(engine_config)
        dispatcher = Dispatcher(
            booth.repo,
            booth.jobs,
            booth.blobs,
            [EngineProcess(options), EngineProcess(options)],
            engine_config.work_dir,
            max_attempts=3,
        )
        first, second = dispatcher.lanes
        await asyncio.gather(first.engine.start(), second.engine.start())
        try:
            ann = (await booth.repo.get_or_create_user(ANN.platform, ANN.user_id)).id
            bob = (await booth.repo.get_or_create_user(BOB.platform, BOB.user_id)).id
            models = {ann: f"{1:064x}", bob: f"{2:064x}"}

            def picture(user: int) -> JobRequest:
                model = ModelRef(models[user], models[user], "zovaka", 1)
                return JobImagine("a portrait", model=model)

            first.models.append(models[ann])
            second.models.append(models[bob])
            bobs = await booth.jobs.enqueue(bob, picture(bob))
            anns = await booth.jobs.enqueue(ann, picture(ann))
            # Bob's picture is first in the queue, but the first lane holds Ann's model.
            assert await booth.jobs.schedule() == [bobs.id, anns.id]
            assert [job.id for job in await dispatcher._claim(first)] == [anns.id]
            assert [job.id for job in await dispatcher._claim(second)] == [bobs.id]
            first.running.clear()
            second.running.clear()
            # A lane leaves a picture to the free lane that holds its model...
            again = await booth.jobs.enqueue(ann, picture(ann))
            assert await dispatcher._claim(second) == []
            assert [job.id for job in await dispatcher._claim(first)] == [again.id]
            # ... and takes it when that lane is busy.
            later = await booth.jobs.enqueue(ann, picture(ann))
            assert [job.id for job in await dispatcher._claim(second)] == [later.id]
        finally:
            await dispatcher.stop()
