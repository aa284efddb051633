"""The bot's side of a lane: an engine.process.Engine that runs on a Ray cluster.

`connect` joins the cluster named by `[cluster] address`; `lanes` makes the engines the
dispatcher drives, one per GPU (or per `engine` resource) unless the config says how
many. Each lane is a LaneActor (engine.cluster.actor) placed on a machine with a free
GPU. A lane whose actor dies, or whose machine leaves the cluster, raises EngineDied as
the local engine process does when it dies, and the dispatcher puts its job back in the
queue and starts the lane again, wherever the cluster has room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayError

from engine.cluster.actor import LaneActor, project_version
from engine.cluster.transfer import pack_command, unpack_event
from engine.process import EngineDied, EngineOptions
from engine.protocol import Command, Event, GenerateCommand, TrainCommand

__all__ = [
    "ENGINE_RESOURCE", "RayLane", "VersionMismatch", "connect", "joined", "lane_count", "lanes",
]  # fmt: skip

_log = logging.getLogger(__name__)

# The custom resource a machine without GPUs offers to host lanes (`ray start
# --resources '{"engine": 1}'`); the tests' CPU cluster uses it.
ENGINE_RESOURCE = "engine"
NAMESPACE = "selfiebooth"


class VersionMismatch(EngineDied):
    """A worker runs another version of selfiebooth than the bot."""


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("auto", "HOST:PORT" or "ray://HOST:PORT")."""
    if not ray.is_initialized():
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)


def lane_count(configured: int) -> int:
    """`configured`, or one lane per GPU of the cluster, else per engine resource."""
    if configured > 0:
        return configured
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return max(1, int(resources.get("GPU", 0) or resources.get(ENGINE_RESOURCE, 0)))


def lanes(options: EngineOptions, configured: int) -> list[RayLane]:
    return [RayLane(options, n + 1, _placement()) for n in range(lane_count(configured))]


def joined(options: EngineOptions, have: int) -> list[RayLane]:
    """Lanes for the GPUs (or engine resources) the cluster has beyond the `have` lanes
    there are: machines that joined since."""
    return [RayLane(options, n + 1, _placement()) for n in range(have, lane_count(0))]


def _placement() -> dict[str, Any]:
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    if resources.get("GPU", 0) > 0:
        return {"num_gpus": 1}
    return {"num_cpus": 0, "resources": {ENGINE_RESOURCE: 1}}


def _root(command: TrainCommand | GenerateCommand) -> Path:
    """The job's directory on the bot's side: where its output goes."""
    if command["op"] == "train":
        return Path(command["files"]["output"]).parent
    return Path(command["files"]["out_dir"]).parent


class RayLane:
    def __init__(self, options: EngineOptions, number: int, placement: dict[str, Any]) -> None:
        self.options = options
        self.number = number
        self.placement = placement  # what its actor asks of a machine (Ray's options)
        self.node_id = ""  # the Ray node its actor runs on
        self.actor_pid = 0
        self._actor: Any = None  # the LaneActor's handle
        self._stream: Any = None  # the running jobs' event stream
        self._roots: dict[int, Path] = {}  # the running jobs' directories here
        self._batch = 1  # as the actor's engine said when ready
        self._prefetches = False  # likewise
        self._where = ""
        self._ended = False  # the actor died (or was killed) without being stopped
        self._failed = ""  # why the last start failed

    @property
    def name(self) -> str:
        return f"engine lane {self.number}"

    @property
    def alive(self) -> bool:
        return self._actor is not None and not self._ended

    @property
    def exited(self) -> bool:
        return self._ended

    @property
    def batch(self) -> int:
        return self._batch

    @property
    def prefetches(self) -> bool:
        return self._prefetches

    def describe(self) -> str:
        if self._ended:
            return "ended unexpectedly; it starts again with the next job"
        if self._actor is None:
            if self._failed:
                return f"did not start: {self._failed}"
            return "not running; it starts with the next job"
        return f"running on {self._where}" if self._where else "starting"

    async def start(self) -> None:
        self._ended = False
        self._where = ""
        self._batch = 1
        self._prefetches = False
        actor = LaneActor.options(**self.placement, max_restarts=0).remote()  # type: ignore[attr-defined]
        self._actor = actor
        try:
            await asyncio.wait_for(self._start(actor), self.options.start_timeout)
        except BaseException as exc:
            self._forget(actor)
            self._failed = str(exc) or type(exc).__name__
            if isinstance(exc, RayError):
                raise EngineDied(f"{self.name} did not start: {exc}") from exc
            raise
        self._failed = ""
        _log.info("%s ready on %s", self.name, self._where)

    async def _start(self, actor: Any) -> None:
        # The version first: a worker of another version would misread the commands.
        theirs, self.node_id, self.actor_pid = await actor.hello.remote()
        ours = project_version()
        if theirs != ours:
            raise VersionMismatch(
                f"{self.name}: a worker runs selfiebooth {theirs} and this bot {ours};"
                " install the same version on both"
            )
        o = self.options
        secrets = await asyncio.to_thread(
            lambda: (o.certificate.read_bytes(), o.private_key.read_bytes())
        )
        self._where, self._batch, self._prefetches = await actor.start.remote(o, *secrets)

    async def send(self, command: Command) -> None:
        actor = self._require()
        if command["op"] == "train" or command["op"] == "generate" or command["op"] == "batch":
            jobs = command["jobs"] if command["op"] == "batch" else [command]
            self._roots = {job["job_id"]: _root(job) for job in jobs}
            packed = await asyncio.to_thread(
                lambda: [pack_command(job, self._roots[job["job_id"]]) for job in jobs]
            )
            self._stream = actor.run.options(num_returns="streaming").remote(packed)
        elif command["op"] == "prefetch":
            return  # its files are paths on the bot's machine, not the worker's
        elif command["op"] != "shutdown":
            try:
                await actor.control.remote(command)
            except RayError as exc:
                raise self._died(exc) from exc

    async def next_event(self) -> Event:
        if self._stream is None or not self._roots:
            raise EngineDied(f"{self.name} runs no job")
        try:
            event, files = await (await self._stream.__anext__())
        except StopAsyncIteration:
            raise EngineDied(f"{self.name} ended a job without its last event") from None
        except RayError as exc:
            raise self._died(exc) from exc
        root = self._roots.get(event.get("job_id", -1)) or next(iter(self._roots.values()))
        result: Event = await asyncio.to_thread(unpack_event, event, files, root)
        return result

    async def stop(self, grace: float = 10.0) -> None:
        actor, self._actor = self._actor, None
        if actor is None:
            return
        with contextlib.suppress(RayError, TimeoutError):
            await asyncio.wait_for(actor.stop.remote(), grace)
        ray.kill(actor)
        self._stream = None

    async def kill(self) -> None:
        if self._actor is not None:
            self._forget(self._actor)
            self._ended = True

    def _require(self) -> Any:
        if self._actor is None or self._ended:
            raise EngineDied(f"{self.name} is not running")
        return self._actor

    def _died(self, exc: RayError) -> EngineDied:
        self._ended = True
        return EngineDied(f"{self.name} was lost: {type(exc).__name__}")

    def _forget(self, actor: Any) -> None:
        ray.kill(actor)
        self._actor = None
        self._stream = None
