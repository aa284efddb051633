"""The queue on engine lanes of a Ray cluster against the local engine process, tiny model.

A local cluster is started (ray.cluster_utils.Cluster: a head without CPUs and two
worker nodes of one CPU each), and the same work runs through the whole bot core
(open_booth, the dispatcher, the queue in SQLite) three ways:

* local:   `[cluster] address = ""`, the engine process the bot starts itself;
* 1 lane:  the cluster with `lanes = 1`;
* 2 lanes: the cluster with `lanes = 2`.

Printed: the latency of one picture (queued to stored, the engine already warm), the
median of --pictures; and jobs per minute of a batch of --jobs pictures of two users.
Each engine gets one thread (OMP_NUM_THREADS=1), as each lane has a GPU of its own on a
real cluster; on this 2-core machine the two lanes share the two cores with the bot.

Usage: python bench/cluster.py [--pictures 5] [--jobs 12] [--steps 8]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import asyncio  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.config import ClusterConfig, Config, load_config  # noqa: E402
from bot.core import Booth, Identity, ImagineRequest, open_booth  # noqa: E402
from storage import NewPhoto  # noqa: E402

USERS = (Identity("cli", "ann"), Identity("cli", "bob"))


async def finished(booth: Booth, who: Identity, job_id: int) -> str:
    state = "unknown"
    async for update in booth.updates(who, job_id):
        state = update.state
    return state


async def user_with_photos(booth: Booth, who: Identity) -> None:
    await booth.accept_consent(who)
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    rng = np.random.default_rng(len(who.user_id))
    side = booth.family.resolution
    rows = []
    for n in range(2):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, "PNG")
        key = await booth.blobs.put(buf.getvalue())
        rows.append(NewPhoto(f"{n:064x}", key, key, b"\0" * 512, f"{n:016x}", (0, 0, 9, 9), 99.0))
    await booth.repo.add_photos(user.id, rows)


async def measure(config: Config, pictures: int, jobs: int, steps: int) -> tuple[float, float]:
    """(median seconds of one picture, jobs per minute of a batch)."""
    async with open_booth(config, dispatch=True) as booth:
        for who in USERS:
            await user_with_photos(booth, who)
        trainings = [(who, await booth.train(who)) for who in USERS]
        for who, ticket in trainings:
            assert await finished(booth, who, ticket.job_id) == "succeeded"
        request = ImagineRequest("a portrait", seed=1, steps=steps)
        await finished(booth, USERS[0], (await booth.imagine(USERS[0], request)).job_id)
        latencies = []
        for _ in range(pictures):
            began = time.perf_counter()
            ticket = await booth.imagine(USERS[0], request)
            assert await finished(booth, USERS[0], ticket.job_id) == "succeeded"
            latencies.append(time.perf_counter() - began)
        began = time.perf_counter()
        tickets = [(who, await booth.imagine(who, request)) for who in USERS * (jobs // 2)]
        states = await asyncio.gather(*(finished(booth, who, t.job_id) for who, t in tickets))
        assert all(state == "succeeded" for state in states), states
        return statistics.median(latencies), len(tickets) / (time.perf_counter() - began) * 60


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pictures", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    import ray
    from ray.cluster_utils import Cluster

    from engine.cluster.lane import ENGINE_RESOURCE

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=1, resources={ENGINE_RESOURCE: 1})
    results: dict[str, tuple[float, float]] = {}
    try:
        for name, cluster_config in (
            ("local", ClusterConfig()),
            ("1 lane", ClusterConfig(address=cluster.address, lanes=1)),
            ("2 lanes", ClusterConfig(address=cluster.address, lanes=2)),
        ):
            with tempfile.TemporaryDirectory() as data:
                config = load_config(None, environ={}, data_dir=Path(data))
                config = dataclasses.replace(
                    config,
                    training=dataclasses.replace(config.training, min_photos=2, steps=4),
                    moderation=dataclasses.replace(
                        config.moderation, commands_per_minute=6000, command_burst=1000
                    ),
                    engine=dataclasses.replace(config.engine, max_jobs_per_user=args.jobs),
                    cluster=cluster_config,
                )
                results[name] = await measure(config, args.pictures, args.jobs, args.steps)
    finally:
        ray.shutdown()
        cluster.shutdown()

    print(f"tiny model, {args.steps} steps a picture, one thread per engine")
    print(f"{'':10}{'picture latency':>18}{'jobs per minute':>18}")
    for name, (latency, rate) in results.items():
        print(f"{name:10}{latency:>16.3f} s{rate:>18.1f}")
    local, one, two = results["local"], results["1 lane"], results["2 lanes"]
    print(f"added latency through Ray: {one[0] - local[0]:+.3f} s ({one[0] / local[0]:.2f}x)")
    print(f"two lanes against one: {two[1] / one[1]:.2f}x the jobs per minute (goal 1.7x)")


if __name__ == "__main__":
    asyncio.run(main())
