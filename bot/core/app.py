"""Start-up and shutdown of the core in one visible place."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Config
from bot.core.booth import Booth
from bot.core.dispatcher import Dispatcher
from bot.core.likeness import LikenessGuard
from bot.core.provenance import signing_pair
from engine.intake import FaceAnalyzer
from engine.models.families import resolve_family
from engine.models.memory import MemoryOptions
from engine.process import Engine, EngineOptions, EngineProcess
from storage import Database, LocalBlobStore, Repository
from storage.jobs import JobQueue
from storage.queue_lock import QueueLock

__all__ = ["engine_options", "engines", "open_booth"]

_log = logging.getLogger(__name__)


def engine_options(config: Config) -> EngineOptions:
    """The engine's options from the config; the development signing pair is made here,
    at the first start, when the config names none."""
    certificate, private_key = signing_pair(config)
    return EngineOptions(
        base=config.model.base,
        family=config.model.family,
        # On a cluster, each worker reads this path on its own machine.
        models_dir=config.models_dir.resolve() if config.cluster.address else config.models_dir,
        certificate=certificate,
        private_key=private_key,
        device=config.engine.device,
        log_level=config.log_level,
        log_format=config.log_format,
        start_timeout=config.engine.start_timeout,
        blocked_classes=config.image_filter.blocked_classes if config.image_filter.enabled else {},
        keep_blocked_images=config.moderation.keep_blocked_images,
        controlnet=config.model.controlnet,
        inpainting=config.model.inpainting,
        memory=MemoryOptions(
            cpu_offload=config.engine.cpu_offload,
            gradient_checkpointing=config.engine.gradient_checkpointing,
            quantize=config.engine.quantize,
        ),
        compile=config.engine.compile,
        lora_prefetch=config.engine.lora_prefetch,
        batch=config.engine.batch,
    )


CLUSTER_LOOK = 30.0  # seconds between looks for machines that joined the cluster


async def follow_cluster(dispatcher: Dispatcher, options: EngineOptions) -> None:
    """Add a lane for each GPU that joins the cluster, while the bot runs."""
    from engine.cluster import lane

    while True:
        await asyncio.sleep(CLUSTER_LOOK)
        dispatcher.add_engines(await asyncio.to_thread(lane.joined, options, len(dispatcher.lanes)))


async def engines(config: Config) -> list[Engine]:
    """The engine process, or the lanes of the configured Ray cluster."""
    options = engine_options(config)
    if not config.cluster.address:
        return [EngineProcess(options)]
    from engine.cluster import lane  # Ray is imported only with a cluster

    await asyncio.to_thread(lane.connect, config.cluster.address)
    lanes = await asyncio.to_thread(lane.lanes, options, config.cluster.lanes)
    _log.info("the queue is worked by %d lane(s) on the Ray cluster", len(lanes))
    return list(lanes)


@asynccontextmanager
async def open_booth(
    config: Config, analyzer: FaceAnalyzer | None = None, *, dispatch: bool = False
) -> AsyncIterator[Booth]:
    """The database (migrated), the blob store and the core, closed in reverse order.

    With `dispatch`, this process also works the job queue: it starts the dispatcher,
    which starts the engine process when the first job needs it. Only one process works
    a data directory's queue (storage.queue_lock): where another does already, the booth
    has no dispatcher and `Booth.queue_worker` names that process.
    """
    config.data_dir.mkdir(parents=True, exist_ok=True)
    async with Database(config.database_path) as db:
        repo = Repository(db)
        blobs = LocalBlobStore(config.blob_dir)
        jobs = JobQueue(db, training_wait=config.engine.max_training_wait)
        likeness = LikenessGuard(
            repo,
            config.intake,
            analyzer,
            keep_blocked=config.moderation.keep_blocked_images,
        )
        lock = QueueLock(config.data_dir / "queue.lock")
        other = None
        if dispatch and not lock.acquire():
            other = lock.holder() or 0
            _log.info("process %s works this queue: jobs are left to it", other)
        try:
            dispatcher = None
            following: asyncio.Task[None] | None = None
            if dispatch and other is None:
                dispatcher = Dispatcher(
                    repo,
                    jobs,
                    blobs,
                    await engines(config),
                    config.work_dir,
                    max_attempts=config.engine.max_attempts,
                    likeness=likeness,
                    family=resolve_family(config.model.base, config.model.family).name,
                )
                await dispatcher.start()
                if config.cluster.address and config.cluster.lanes == 0:
                    following = asyncio.create_task(
                        follow_cluster(dispatcher, engine_options(config)), name="cluster"
                    )
            booth = Booth(
                config,
                repo,
                blobs,
                analyzer,
                jobs=jobs,
                dispatcher=dispatcher,
                likeness=likeness,
            )
            booth.queue_worker = other
            try:
                yield booth
            finally:
                if following is not None:
                    following.cancel()
                if dispatcher is not None:
                    await dispatcher.stop()
        finally:
            lock.release()
