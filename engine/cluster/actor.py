"""The worker's side of a lane: a Ray actor that runs the engine process on its machine.

The actor holds an engine.process.EngineProcess, the same child process the bot runs
without a cluster, so a lane loads its model once and keeps it between jobs. A job,
or a batch of picture jobs, arrives as commands with their files as bytes
(engine.cluster.transfer); the events stream back from `run`, each with the files it
names and the checkpoints written since the last one. Cancel and yield arrive through
`control`, in a concurrency group of its own, while `run` is waiting for the engine.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path

import ray

from engine.cluster.transfer import Files, checkpoints_since, pack_event, unpack_command
from engine.process import EngineDied, EngineOptions, EngineProcess
from engine.protocol import Command, Event, GenerateCommand, TrainCommand

__all__ = ["LaneActor", "project_version"]

_FINAL = ("done", "stopped", "failed")


def project_version() -> str:
    """The version of selfiebooth installed where this runs."""
    try:
        return metadata.version("selfiebooth")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@ray.remote(concurrency_groups={"control": 1})  # type: ignore[call-overload]
class LaneActor:
    def __init__(self) -> None:
        self._scratch = Path(tempfile.mkdtemp(prefix="selfiebooth-lane-"))
        self._engine: EngineProcess | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def hello(self) -> tuple[str, str, int]:
        """The version of selfiebooth here, the Ray node and this process's id."""
        return project_version(), ray.get_runtime_context().get_node_id(), os.getpid()

    async def start(
        self, options: EngineOptions, certificate: bytes, private_key: bytes
    ) -> tuple[str, int, bool]:
        """Start the engine process here; says where it runs, how many pictures it
        makes in one batch, and whether it reads models ahead."""
        self._loop = asyncio.get_running_loop()
        keys = self._scratch / "credentials"
        keys.mkdir(mode=0o700, exist_ok=True)
        (keys / "chain.pem").write_bytes(certificate)
        (keys / "key.pem").write_bytes(private_key)
        options = dataclasses.replace(
            options, certificate=keys / "chain.pem", private_key=keys / "key.pem"
        )
        self._engine = EngineProcess(options)
        await self._engine.start()
        where = f"{socket.gethostname()}, process {self._engine.pid}"
        return where, self._engine.batch, self._engine.prefetches

    async def run(
        self, jobs: list[tuple[TrainCommand | GenerateCommand, Files]]
    ) -> AsyncIterator[tuple[Event, Files]]:
        """The events of one job, or of picture jobs run as one batch, each with its
        files, until each job's last one."""
        engine = self._require()
        roots: dict[int, Path] = {}
        local: list[TrainCommand | GenerateCommand] = []
        for command, files in jobs:
            root = roots[command["job_id"]] = self._scratch / f"job-{command['job_id']}"
            shutil.rmtree(root, ignore_errors=True)
            local.append(unpack_command(command, files, root))
        # What the bot sent back to resume from, it has already.
        sent = {
            path.name for root in roots.values() for path in (root / "checkpoints").glob("step-*")
        }
        running = set(roots)
        try:
            if len(local) == 1:
                await engine.send(local[0])
            else:
                pictures = [command for command in local if command["op"] == "generate"]
                if len(pictures) != len(local):
                    # A training job in a batch would never get its events: fail loudly.
                    raise ValueError("only picture jobs run as one batch")
                await engine.send({"op": "batch", "jobs": pictures})
            while running:
                event = await engine.next_event()
                job_id = event.get("job_id", -1)
                root = roots.get(job_id, self._scratch)
                packed, out = pack_event(event, root)
                if event["event"] in ("progress", *_FINAL) and job_id in roots:
                    out |= checkpoints_since(root, sent)
                yield packed, out
                if event["event"] in _FINAL:
                    running.discard(job_id)
        finally:
            for root in roots.values():
                shutil.rmtree(root, ignore_errors=True)

    @ray.method(concurrency_group="control")
    async def control(self, command: Command) -> None:
        """Cancel or yield the running job (this runs on its own thread and loop)."""
        engine, loop = self._require(), self._loop
        assert loop is not None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(engine.send(command), loop))

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.stop(grace=5.0)
        shutil.rmtree(self._scratch, ignore_errors=True)

    def _require(self) -> EngineProcess:
        if self._engine is None or not self._engine.alive:
            raise EngineDied("the lane's engine process is not running")
        return self._engine
