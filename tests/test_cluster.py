"""The engine on a real local Ray cluster (a head and two worker nodes of one CPU each,
the tiny model): two lanes at once, an actor SIGKILLed mid-training, a node removed
mid-generation, cancel and /forget on a remote lane, a worker of another version."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_batching import batches, held, queue
from test_dispatcher import ANN, BOB, TIMEOUT, steps, watch, with_photos

from bot.config import ClusterConfig, Config
from bot.core import Booth, Identity, ImagineRequest, JobUpdate, open_booth
from bot.core.app import engine_options
from bot.core.telemetry import REGISTRY
from bot.doctor import diagnose

ray = pytest.importorskip("ray", reason="Ray is the cluster extra: pip install .[cluster]")
from ray.cluster_utils import Cluster  # noqa: E402

from engine.cluster import lane as lane_module  # noqa: E402
from engine.cluster.actor import project_version  # noqa: E402
from engine.cluster.lane import ENGINE_RESOURCE, RayLane, VersionMismatch  # noqa: E402

pytestmark = pytest.mark.cluster

WORKER = {"num_cpus": 1, "resources": {ENGINE_RESOURCE: 1}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(**WORKER)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture
def cluster_config(config: Config, cluster: Cluster) -> Config:
    training = dataclasses.replace(config.training, min_photos=2, steps=12, checkpoint_every=3)
    return dataclasses.replace(
        config, training=training, cluster=ClusterConfig(address=cluster.address)
    )


@pytest.fixture
async def booth(cluster_config: Config) -> AsyncIterator[Booth]:  # type: ignore[override]
    async with open_booth(cluster_config, dispatch=True) as booth:
        assert len(booth.dispatcher.lanes) == 2  # type: ignore[union-attr]
        yield booth


def lane_of(booth: Booth, job_id: int) -> RayLane | None:
    assert booth.dispatcher is not None
    for lane in booth.dispatcher.lanes:
        if lane.current is not None and lane.current.id == job_id:
            assert isinstance(lane.engine, RayLane)
            return lane.engine
    return None


async def test_two_journeys_at_once_on_two_lanes(booth: Booth) -> None:
    await with_photos(booth, ANN)
    await with_photos(booth, BOB)
    tickets = {who: await booth.train(who) for who in (ANN, BOB)}
    lanes: dict[int, set[str]] = {t.job_id: set() for t in tickets.values()}
    together: list[bool] = []

    def note(update: JobUpdate) -> None:
        lane = lane_of(booth, update.job_id)
        if update.state == "progress" and lane is not None:
            lanes[update.job_id].add(lane.node_id)
            together.append(all(lane_of(booth, t.job_id) for t in tickets.values()))

    async def journey(who: Any) -> list[JobUpdate]:
        async def on(update: JobUpdate) -> None:
            note(update)

        updates = await watch(booth, tickets[who].job_id, on, who=who)
        assert updates[-1].state == "succeeded", updates[-1]
        picture = await booth.imagine(who, ImagineRequest("a portrait", seed=3, steps=3))
        final = (await watch(booth, picture.job_id, who=who))[-1]
        assert final.state == "succeeded", final
        assert len(await booth.job_images(who, picture.job_id)) == 1
        return updates

    def trainings(lane: str) -> float:
        labels = {"lane": lane, "kind": "train"}
        return REGISTRY.get_sample_value("selfiebooth_lane_jobs_total", labels) or 0.0

    before = [trainings(f"engine lane {n}") for n in (1, 2)]
    ann, bob = await asyncio.wait_for(asyncio.gather(journey(ANN), journey(BOB)), TIMEOUT)
    # The metrics endpoint counts one training on each lane.
    assert [trainings(f"engine lane {n}") - b for n, b in zip((1, 2), before, strict=True)] == [
        1,
        1,
    ]
    assert steps(ann) == steps(bob) == list(range(1, 13))
    # Both trainings ran at once, each on a node of its own.
    assert any(together)
    nodes = [lanes[t.job_id] for t in tickets.values()]
    assert all(len(n) == 1 for n in nodes) and nodes[0] != nodes[1]


async def test_an_actor_killed_mid_training_resumes_from_its_checkpoint(booth: Booth) -> None:
    await with_photos(booth, ANN)
    ticket = await booth.train(ANN)
    killed: list[RayLane] = []
    resumed_on: list[RayLane] = []

    async def kill_at_7(update: JobUpdate) -> None:
        lane = lane_of(booth, ticket.job_id)
        if update.state == "progress" and update.step == 7 and not killed and lane:
            os.kill(lane.actor_pid, signal.SIGKILL)
            killed.append(lane)
        elif update.state == "progress" and killed and lane and not resumed_on:
            resumed_on.append(lane)

    updates = await asyncio.wait_for(watch(booth, ticket.job_id, kill_at_7), TIMEOUT)
    assert updates[-1].state == "succeeded", updates[-1]
    retry = next(i for i, u in enumerate(updates) if u.state == "retrying")
    resumed = steps(updates[retry:])
    # Checkpoints fall every 3 steps and travel to the bot as they are written: the run
    # resumes after the last one (step 6) on the other lane, whose machine never had it.
    assert resumed[0] == 7 and resumed[-1] == 12
    assert resumed_on[0] is not killed[0]
    user = await booth.repo.find_user(ANN.platform, ANN.user_id)
    assert user is not None
    assert [lora.version for lora in await booth.repo.loras(user.id)] == [1]


async def test_a_node_removed_mid_generation_requeues_the_job(
    booth: Booth, cluster: Cluster
) -> None:
    await with_photos(booth, ANN)
    trained = await booth.train(ANN)
    assert (await asyncio.wait_for(watch(booth, trained.job_id), TIMEOUT))[-1].state == (
        "succeeded"
    )
    ticket = await booth.imagine(ANN, ImagineRequest("a portrait", seed=5, count=2, steps=12))
    removed: list[str] = []

    async def remove_its_node(update: JobUpdate) -> None:
        lane = lane_of(booth, ticket.job_id)
        if update.state == "progress" and not removed and lane is not None:
            node = next(n for n in cluster.list_all_nodes() if n.node_id == lane.node_id)
            removed.append(lane.node_id)
            cluster.remove_node(node)

    try:
        updates = await asyncio.wait_for(watch(booth, ticket.job_id, remove_its_node), TIMEOUT)
    finally:
        cluster.add_node(**WORKER)  # for the next tests
    assert removed and updates[-1].state == "succeeded", updates[-1]
    assert [u.state for u in updates].count("retrying") == 1
    assert len(await booth.repo.images_of_job(ticket.job_id)) == 2
    job = await booth.jobs.get(ticket.job_id)
    assert job is not None and job.attempts == 2


async def test_cancel_and_forget_reach_a_remote_lane(booth: Booth, cluster_config: Config) -> None:
    await with_photos(booth, ANN)
    await with_photos(booth, BOB)

    async def cancel_at_3(update: JobUpdate) -> None:
        if update.state == "progress" and update.step == 3:
            assert await booth.cancel(ANN) == [cancelled.job_id]

    cancelled = await booth.train(ANN)
    updates = await asyncio.wait_for(watch(booth, cancelled.job_id, cancel_at_3), TIMEOUT)
    assert updates[-1].state == "cancelled" and max(steps(updates)) < 12
    assert (await booth.status(ANN)).loras == ()

    started = asyncio.Event()

    async def note(update: JobUpdate) -> None:
        if update.state == "progress":
            started.set()

    ticket = await booth.train(BOB)
    watcher = asyncio.create_task(watch(booth, ticket.job_id, note, who=BOB))
    await asyncio.wait_for(started.wait(), TIMEOUT)
    erasure = await booth.forget(BOB)
    assert (await asyncio.wait_for(watcher, TIMEOUT))[-1].state == "erased"
    assert erasure.jobs == 1 and await booth.jobs.get(ticket.job_id) is None
    assert not any(cluster_config.work_dir.glob(f"job-{ticket.job_id}"))


async def test_pictures_of_several_users_share_a_batch_on_a_remote_lane(
    cluster_config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "selfiebooth.jobs")
    config = dataclasses.replace(
        cluster_config,
        engine=dataclasses.replace(cluster_config.engine, batch=4, lora_prefetch="on"),
        cluster=dataclasses.replace(cluster_config.cluster, lanes=1),
    )
    async with open_booth(config, dispatch=True) as booth:
        for who in (ANN, BOB):
            await with_photos(booth, who)
        # The lane says how many pictures it batches, and that it reads models ahead, once
        # its engine is ready.
        warm = await queue(booth, ANN, ImagineRequest("warm up", seed=1, steps=1))
        assert (await asyncio.wait_for(watch(booth, warm), TIMEOUT))[-1].state == "succeeded"
        assert booth.dispatcher is not None
        remote = booth.dispatcher.lanes[0].engine
        assert remote.batch == 4 and remote.prefetches
        asks = [
            (ANN, ImagineRequest("a portrait", seed=5, steps=3)),
            (BOB, ImagineRequest("a cat", seed=6, steps=3, count=2)),
            (ANN, ImagineRequest("a hat", seed=7, steps=3)),
        ]
        async with held(booth):
            ids = [await queue(booth, who, request) for who, request in asks]
        finals = await asyncio.wait_for(
            asyncio.gather(
                *(watch(booth, job_id, who=who) for job_id, (who, _) in zip(ids, asks, strict=True))
            ),
            TIMEOUT,
        )
        assert [updates[-1].state for updates in finals] == ["succeeded"] * 3
        assert [batches(caplog, job_id) for job_id in ids] == [[3]] * 3
        # Each job's pictures came back to its own directory, and only its own.
        made = [await booth.repo.images_of_job(job_id) for job_id in ids]
        assert [len(images) for images in made] == [1, 2, 1]
        blobs = [image.blob for images in made for image in images]
        assert len(set(blobs)) == 4


async def test_a_machine_that_joins_adds_a_lane(booth: Booth, cluster: Cluster) -> None:
    dispatcher = booth.dispatcher
    assert dispatcher is not None
    first = dispatcher.engines[0]
    assert isinstance(first, RayLane)
    assert lane_module.joined(first.options, len(dispatcher.lanes)) == []
    node = cluster.add_node(**WORKER)
    try:
        dispatcher.add_engines(lane_module.joined(first.options, len(dispatcher.lanes)))
        assert [engine.name for engine in dispatcher.engines] == [
            "engine lane 1", "engine lane 2", "engine lane 3",
        ]  # fmt: skip
        # Three trainings at once, one on each machine.
        people = [ANN, BOB, Identity("cli", "cy")]
        for who in people:
            await with_photos(booth, who)
        tickets = [await booth.train(who) for who in people]
        nodes: set[str] = set()

        async def note(update: JobUpdate) -> None:
            if update.state == "progress" and (lane := lane_of(booth, update.job_id)):
                nodes.add(lane.node_id)

        finals = await asyncio.wait_for(
            asyncio.gather(
                *(
                    watch(booth, t.job_id, note, who=who)
                    for who, t in zip(people, tickets, strict=True)
                )
            ),
            TIMEOUT,
        )
        assert [updates[-1].state for updates in finals] == ["succeeded"] * 3
        assert len(nodes) == 3
    finally:
        await dispatcher.stop()  # its lane's actor goes before its machine
        cluster.remove_node(node)


async def test_a_worker_of_another_version_is_refused(
    cluster: Cluster, cluster_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One machine cannot hold two installed versions: here the bot says it is 9.9.9,
    # and the worker (a real actor on the cluster) reports what it has installed.
    monkeypatch.setattr(lane_module, "project_version", lambda: "9.9.9")
    lane = RayLane(engine_options(cluster_config), 9, {"num_cpus": 0})
    ray.init(address=cluster.address, ignore_reinit_error=True)
    installed = re.escape(project_version())
    with pytest.raises(VersionMismatch, match=rf"selfiebooth {installed} and this bot 9\.9\.9"):
        await asyncio.wait_for(lane.start(), TIMEOUT)
    assert not lane.alive
    assert "did not start" in lane.describe() and "this bot 9.9.9" in lane.describe()


def test_selfiebooth_worker_joins_a_machine_to_the_cluster(cluster: Cluster) -> None:
    ray.init(address=cluster.address, ignore_reinit_error=True)
    before = ray.cluster_resources().get(ENGINE_RESOURCE, 0)
    command = [sys.executable, "-m", "bot.cli", "worker", "--address", cluster.address]
    worker = subprocess.Popen([*command, "--engines", "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        assert "ray.scripts.scripts start" in worker.stdout.readline()
        deadline = time.monotonic() + TIMEOUT
        # Ray says when the node has registered only by its resources: ask until then.
        while ray.cluster_resources().get(ENGINE_RESOURCE, 0) < before + 2:
            assert worker.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(TIMEOUT)  # ray start stops its node on SIGTERM


async def test_doctor_asks_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    config = tmp_path / "cluster.toml"
    config.write_text(f'[cluster]\naddress = "{cluster.address}"\n')
    found = {f.topic: f for f in await diagnose(config, tmp_path / "data", environ={})}
    assert found["cluster"].level == "ok", found["cluster"]
    assert "engine resource(s), no GPU" in found["cluster"].text
    assert "cuda" not in found  # the bot's machine needs no GPU


def test_without_a_cluster_nothing_imports_ray(tmp_path: Path) -> None:
    code = (
        "import asyncio, sys\n"
        "from bot.config import load_config\n"
        "from bot.core.app import engines\n"
        f"config = load_config(None, environ={{}}, data_dir={str(tmp_path)!r})\n"
        "print(type(asyncio.run(engines(config))[0]).__name__)\n"
        "import bot.cli, bot.core.dispatcher\n"
        "print('ray' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["EngineProcess", "False"]
