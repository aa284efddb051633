"""Pictures of several users in one denoising batch, through the real queue and a real
engine process on the tiny model (batch 4): pictures asked at once run together and
match the same requests made alone, and a batch killed, cancelled or erased mid-run
loses and doubles no job."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_dispatcher import ANN, BOB, TIMEOUT, _difference, steps, watch, with_photos

from bot.config import Config
from bot.core import Booth, Identity, ImagineRequest, JobUpdate, open_booth
from bot.core.app import engine_options
from bot.core.dispatcher import Dispatcher
from engine.jobs import JobRequest, ModelRef, StyleRef, encode
from engine.process import EngineOptions, EngineProcess
from engine.protocol import Event, GenerateCommand, GenerateFiles
from engine.provenance.certificates import development_pair

OPERATOR = Identity("cli", "operator")
BATCH = 4


@pytest.fixture
def batch_config(config: Config) -> Config:
    training = dataclasses.replace(config.training, min_photos=2, steps=6, checkpoint_every=3)
    engine = dataclasses.replace(config.engine, batch=BATCH)
    return dataclasses.replace(config, training=training, engine=engine)


@pytest.fixture
async def booth(batch_config: Config) -> AsyncIterator[Booth]:  # type: ignore[override]
    async with open_booth(batch_config, dispatch=True) as booth:
        await with_photos(booth, ANN)
        await with_photos(booth, BOB)
        # The engine says how many pictures it batches when it is ready: start it.
        warm = await queue(booth, ANN, ImagineRequest("warm up", seed=1, steps=1))
        assert (await asyncio.wait_for(watch(booth, warm), TIMEOUT))[-1].state == "succeeded"
        yield booth


@contextlib.asynccontextmanager
async def held(booth: Booth) -> AsyncIterator[None]:
    """The queue paused while jobs are queued, so that the engine sees them together."""
    await booth.admin.pause(OPERATOR, "queueing a batch")
    try:
        yield
    finally:
        await booth.admin.resume(OPERATOR)


async def queue(booth: Booth, who: Identity, request: ImagineRequest) -> int:
    """A picture of the base model, queued as another process would (no trained model)."""
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    return (await booth.jobs.enqueue(user.id, request)).id


def batches(caplog: pytest.LogCaptureFixture, job_id: int) -> list[int]:
    """The size of the batch of each run of `job_id`, from its "started" log lines."""
    return [
        int(getattr(record, "batch", 0))
        for record in caplog.records
        if getattr(record, "event", None) == "started" and getattr(record, "job_id", 0) == job_id
    ]


async def test_pictures_asked_at_once_share_a_batch_and_match_the_same_alone(
    booth: Booth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "selfiebooth.jobs")
    for who in (ANN, BOB):  # each row of the batch runs with its user's own LoRA
        ticket = await booth.train(who)
        trained = await asyncio.wait_for(watch(booth, ticket.job_id, who=who), TIMEOUT)
        assert trained[-1].state == "succeeded"
    asks = [
        (ANN, ImagineRequest("a portrait", seed=5, steps=6)),
        (BOB, ImagineRequest("a cat", seed=6, steps=6, count=2)),
        (ANN, ImagineRequest("a hat", seed=7, steps=6)),
        (BOB, ImagineRequest("a dog", seed=8, steps=5)),  # other steps: it runs alone
    ]
    async with held(booth):
        ids = [(await booth.imagine(who, request)).job_id for who, request in asks]
    followed = await asyncio.wait_for(
        asyncio.gather(
            *(watch(booth, job_id, who=who) for job_id, (who, _) in zip(ids, asks, strict=True))
        ),
        TIMEOUT,
    )
    assert [updates[-1].state for updates in followed] == ["succeeded"] * 4
    assert [batches(caplog, job_id) for job_id in ids] == [[3], [3], [3], [1]]
    for updates in followed[:3]:
        assert steps(updates) == list(range(1, 7))
        previews = [u.step for u in updates if u.state == "sample"]
        assert previews[-1:] == [5] and previews == sorted(set(previews))

    together = [
        await booth.job_images(who, job_id) for job_id, (who, _) in zip(ids, asks, strict=True)
    ]
    assert [len(pictures) for pictures in together] == [1, 2, 1, 1]
    for (who, request), pictures in zip(asks[:3], together[:3], strict=True):
        alone = await booth.imagine(who, request)
        assert (await asyncio.wait_for(watch(booth, alone.job_id, who=who), TIMEOUT))[
            -1
        ].state == "succeeded"
        assert batches(caplog, alone.job_id) == [1]
        again = await booth.job_images(who, alone.job_id)
        # The same pictures, but for the invisible mark of their own job ids.
        assert all(_difference(a, b) < 3 for a, b in zip(pictures, again, strict=True))
    assert _difference(together[0][0], together[2][0]) > 10


async def test_a_batch_killed_mid_run_runs_again_whole(
    booth: Booth, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "selfiebooth.jobs")
    asks = [
        (ANN, ImagineRequest("one", seed=1, steps=25)),
        (BOB, ImagineRequest("two", seed=2, steps=25, count=2)),
        (ANN, ImagineRequest("three", seed=3, steps=25)),
    ]
    killed: list[int] = []

    async def kill_once(update: JobUpdate) -> None:
        pid = booth.dispatcher.engine.pid  # type: ignore[union-attr]
        if update.state == "progress" and not killed and pid:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    async with held(booth):
        ids = [await queue(booth, who, request) for who, request in asks]
    followed = await asyncio.wait_for(
        asyncio.gather(
            watch(booth, ids[0], kill_once),
            *(
                watch(booth, job_id, who=who)
                for job_id, (who, _) in zip(ids[1:], asks[1:], strict=True)
            ),
        ),
        TIMEOUT,
    )
    assert killed
    for updates in followed:
        assert [u.state for u in updates if u.state in ("retrying", "succeeded")] == [
            "retrying",
            "succeeded",
        ]
    assert [batches(caplog, job_id) for job_id in ids] == [[3, 3]] * 3
    for job_id, (who, request) in zip(ids, asks, strict=True):
        job = await booth.jobs.get(job_id)
        assert job is not None and job.attempts == 2
        assert len(await booth.repo.images_of_job(job_id)) == request.count
        assert len(await booth.job_images(who, job_id)) == request.count


async def test_one_picture_of_a_batch_cancelled_or_erased_leaves_the_others(
    booth: Booth,
) -> None:
    asks = [
        (ANN, ImagineRequest("one", seed=1, steps=25)),
        (BOB, ImagineRequest("two", seed=2, steps=25)),
        (ANN, ImagineRequest("three", seed=3, steps=25)),
    ]

    async def cancel_at_first_step(update: JobUpdate) -> None:
        if update.state == "progress" and update.step == 1:
            await booth.cancel(ANN, ids[2])

    async with held(booth):
        ids = [await queue(booth, who, request) for who, request in asks]
    followed = await asyncio.wait_for(
        asyncio.gather(
            watch(booth, ids[0]),
            watch(booth, ids[1], who=BOB),
            watch(booth, ids[2], cancel_at_first_step),
        ),
        TIMEOUT,
    )
    assert [updates[-1].state for updates in followed] == ["succeeded", "succeeded", "cancelled"]
    assert len(await booth.repo.images_of_job(ids[2])) == 0

    # Bob is forgotten while his picture shares a batch with Ann's: the engine is stopped
    # for his erasure, and Ann's picture runs again without losing an attempt.
    async def forget_bob(update: JobUpdate) -> None:
        if update.state == "progress" and update.step == 1:
            await booth.forget(BOB)

    async with held(booth):
        ids = [await queue(booth, who, request) for who, request in asks[:2]]
    anns, bobs = await asyncio.wait_for(
        asyncio.gather(watch(booth, ids[0]), watch(booth, ids[1], forget_bob, who=BOB)), TIMEOUT
    )
    assert bobs[-1].state == "erased"
    assert anns[-1].state == "succeeded"
    assert await booth.jobs.get(ids[1]) is None
    job = await booth.jobs.get(ids[0])
    assert job is not None and job.attempts == 1
    assert len(await booth.job_images(ANN, ids[0])) == 1


async def test_a_lane_takes_the_queued_pictures_that_fit_its_batch(batch_config: Config) -> None:
    async with open_booth(batch_config) as booth:  # no dispatcher of its own
        engine = EngineProcess(engine_options(batch_config))
        dispatcher = Dispatcher(
            booth.repo, booth.jobs, booth.blobs, [engine], batch_config.work_dir, max_attempts=3
        )
        (lane,) = dispatcher.lanes
        try:
            ann = (await booth.repo.get_or_create_user(ANN.platform, ANN.user_id)).id
            model = ModelRef(f"{1:064x}", f"{1:064x}", "zovaka", 1)
            style = StyleRef("noir", f"{2:064x}", f"{2:064x}", 0.8)

            async def enqueue(request: JobRequest) -> int:
                return (await booth.jobs.enqueue(ann, request)).id

            async def claim() -> list[int]:
                claimed = [job.id for job in await dispatcher._claim(lane)]
                lane.running.clear()
                for job_id in claimed:
                    await booth.jobs.requeue(job_id, attempt_counts=False)
                return claimed

            first = await enqueue(ImagineRequest("a", model=model))
            other_steps = await enqueue(ImagineRequest("b", steps=10))
            pair = await enqueue(ImagineRequest("c", count=2))
            too_many = await enqueue(ImagineRequest("d", model=model, count=2))
            styled = await enqueue(ImagineRequest("e", styles=(style,)))
            last = await enqueue(ImagineRequest("f", model=model))
            # An engine not started yet has said nothing of batches: one job.
            assert await claim() == [first]
            await engine.start()
            assert engine.batch == BATCH
            # Room for four pictures: the first, the pair, then the one that still fits.
            assert await claim() == [first, pair, last]
            for job_id in (first, pair, last):
                await booth.jobs.finish(job_id, "cancelled")
            assert await claim() == [other_steps]
            await booth.jobs.finish(other_steps, "cancelled")
            assert await claim() == [too_many]
            await booth.jobs.finish(too_many, "cancelled")
            assert await claim() == [styled]  # a request with styles runs alone
        finally:
            await dispatcher.stop()


async def test_a_batch_that_cannot_run_together_runs_each_job_alone(tmp_path: Path) -> None:
    """A batch whose run fails (here a model file that is not a LoRA) is run again job by
    job: the good pictures are made, and only the job at fault fails, saying why."""
    garbage = tmp_path / "not-a-lora"
    garbage.write_bytes(b"\x80\x04 a pickle, say")

    def command(job_id: int, model: ModelRef | None, lora: Path | None) -> GenerateCommand:
        request = ImagineRequest("a portrait", seed=job_id, steps=3, model=model)
        out_dir = str(tmp_path / f"out-{job_id}")
        files: GenerateFiles = {"lora": str(lora) if lora else None, "out_dir": out_dir}
        return {"op": "generate", "job_id": job_id, "request": encode(request), "files": files}

    signing = development_pair(tmp_path / "provenance")
    options = EngineOptions("tiny", "auto", tmp_path / "models", *signing, device="cpu", batch=4)
    engine = EngineProcess(options)
    await engine.start()
    try:
        assert engine.batch == 4
        assert not engine.prefetches  # "auto" reads ahead on CUDA only: it is sent none
        model = ModelRef("blob", "0" * 64, "zovaka", 1)
        await engine.send(
            {"op": "batch", "jobs": [command(1, None, None), command(2, model, garbage)]}
        )
        ended: dict[int, Event] = {}
        while len(ended) < 2:
            event = await asyncio.wait_for(engine.next_event(), TIMEOUT)
            if event["event"] in ("done", "failed", "stopped"):
                ended[event.get("job_id", 0)] = event
    finally:
        await engine.stop()
    assert ended[1]["event"] == "done" and len(ended[1]["generated"]["images"]) == 1
    assert ended[2]["event"] == "failed" and ended[2]["error"]


def test_the_queue_and_the_engine_agree_on_which_pictures_share_a_batch(tmp_path: Path) -> None:
    """The dispatcher picks batch mates by ImagineRequest.batch_key and the engine checks
    them again by engine.generation.together.batch_key: the two rules group alike."""
    from PIL import Image

    from engine.generation.together import batch_key
    from engine.jobs import Variation
    from engine.worker import generation_request

    picture = tmp_path / "attached.png"
    Image.new("RGB", (64, 64), "gray").save(picture)
    lora = tmp_path / "lora.safetensors"
    model = ModelRef("blob", "0" * 64, "zovaka", 1)
    style = StyleRef("noir", "1" * 64, "1" * 64, 0.8)
    requests = [
        ImagineRequest("a"),
        ImagineRequest("b", model=model, seed=3, count=2),  # a LoRA and a count: same batch
        ImagineRequest("c", steps=10),
        ImagineRequest("d", guidance=4.0),
        ImagineRequest("e", aspect_ratio="3:2"),
        ImagineRequest("f", negative="hats"),
        ImagineRequest("g", styles=(style,)),
        ImagineRequest("h", source="blob-1"),
        ImagineRequest("i", edges="blob-2"),
        ImagineRequest("j", variation=Variation(5, 0.3)),
    ]

    def command(request: ImagineRequest) -> GenerateCommand:
        files: GenerateFiles = {
            "lora": str(lora) if request.model else None,
            "out_dir": str(tmp_path / "out"),
            "styles": [str(lora)] * len(request.styles),
        }
        for name in ("source", "edges"):
            if getattr(request, name) is not None:
                files[name] = str(picture)
        return {"op": "generate", "job_id": 1, "request": encode(request), "files": files}

    queue_keys = [request.batch_key() for request in requests]
    engine_keys = [batch_key(generation_request(command(request))) for request in requests]
    assert queue_keys[:2] == [queue_keys[0]] * 2 and queue_keys[6:] == [None] * 4
    for i, (a, b) in enumerate(zip(queue_keys, engine_keys, strict=True)):
        assert (a is None) == (b is None), requests[i]
        for c, d in zip(queue_keys, engine_keys, strict=True):
            if a is not None and c is not None:
                assert (a == c) == (b == d), requests[i]
