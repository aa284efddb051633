"""The dispatcher: feeds queued jobs to the engines and brings results back.

Jobs are rows first (storage.jobs); a doorbell only wakes the dispatcher when one is
added. Each engine is a lane that runs one job at a time: the local engine process, or
the lanes of a Ray cluster (engine.cluster). A free lane takes the next job of the
schedule, preferring a picture whose model it has loaded already among the jobs that
would start now anyway; a user's second training waits for their first. An engine that
makes several pictures in one batch (on CUDA) takes, with a plain text-to-image picture,
the queued pictures that can share its denoising batch, each with its own LoRA. A training asked
to make way for a waiting generation (when no lane is free) stops after its next step
with a checkpoint, goes back to the queue, and resumes from that checkpoint once the
generations are done; one queued longer than the queue's `training_wait` makes way no
more. If an engine dies, its job goes back to the queue and a fresh
engine is started, until the job has used its attempts.

Once a lane's run has started, it names to its engine the models of the next few queued
pictures it does not hold (a `prefetch` command), which the engine reads ahead while it
works (engine.generation.prefetch), if it said when ready that it does. That is advice
only: the queue is not touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import shutil
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.core.likeness import LikenessGuard
from bot.core.sources import release_source
from bot.core.telemetry import (
    BATCH_JOBS,
    ENGINE_RESTARTS,
    GPU_MEMORY,
    JOB_SECONDS,
    LANE_BUSY,
    LANE_JOBS,
    PICTURES,
    TRAINING_RATE,
    job_event,
)
from bot.core.types import FINAL_STATES, JobUpdate
from engine.jobs import (
    ImagineRequest,
    ImagineResult,
    JobFormatError,
    JobResult,
    ModelRef,
    TrainRequest,
    TrainResult,
)
from engine.process import Engine, EngineDied
from engine.protocol import Command, Event, Generated, GenerateFiles, PrefetchFile, Trained
from storage import BlobStore, ports
from storage.records import JobRecord
from storage.repository import utcnow

__all__ = ["QUEUE_PAUSED", "Dispatcher"]

_log = logging.getLogger(__name__)

# The setting that holds the queue while an admin has paused it (its value: the reason).
QUEUE_PAUSED = "queue_paused"
POLL_SECONDS = 2.0
RESTART_BACKOFF = 60.0
_AFFINITY = 4  # models a lane remembers having loaded (its LoRA cache holds a few)
PREFETCH_AHEAD = 3  # queued pictures whose models a lane's engine reads ahead
_PREFETCH_LOOK = 16  # queued jobs looked at for them, at most


@dataclass(eq=False)
class Lane:
    """One engine and the jobs it runs: one, or a batch of pictures."""

    engine: Engine
    running: list[JobRecord] = field(default_factory=list)  # those not over yet
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    bell: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    retry_start: float = 0.0  # when an engine that failed to start is tried again
    models: deque[str] = field(default_factory=lambda: deque(maxlen=_AFFINITY))

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def current(self) -> JobRecord | None:
        """The job it runs (the first of a batch); None when it is free."""
        return self.running[0] if self.running else None


class Dispatcher:
    def __init__(
        self,
        repo: ports.Repository,
        jobs: ports.JobQueue,
        blobs: BlobStore,
        engines: Engine | Sequence[Engine],
        work_dir: Path,
        *,
        max_attempts: int,
        likeness: LikenessGuard | None = None,
        family: str = "unknown",
    ) -> None:
        self.repo = repo
        self.jobs = jobs
        self.blobs = blobs
        engines = engines if isinstance(engines, Sequence) else [engines]
        self.lanes = [Lane(engine) for engine in engines]
        self.work_dir = work_dir
        self.max_attempts = max_attempts
        # Withholds pictures showing another user's face; None screens nothing.
        self.likeness = likeness
        self.family = family  # the metrics' label of the configured model family
        # Erasures begun, and those under way: no prefetch computed before or during one
        # is sent, so an erased user's model is never read ahead after their "forget".
        self._erasures = 0
        self._erasing = 0
        self._claiming = asyncio.Lock()  # two lanes never take the same job
        self._abandoned: set[int] = set()
        self._listeners: defaultdict[int, set[asyncio.Queue[JobUpdate]]] = defaultdict(set)
        self._next_look: asyncio.Future[None] | None = None
        # Seconds each job has run so far (a training that yields runs in parts).
        self._seconds: defaultdict[int, float] = defaultdict(float)

    @property
    def engine(self) -> Engine:
        """The first lane's engine (the only one without a cluster)."""
        return self.lanes[0].engine

    @property
    def engines(self) -> list[Engine]:
        return [lane.engine for lane in self.lanes]

    # lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        recovered = await self.jobs.recover()
        if recovered:
            _log.info("%d job(s) interrupted earlier are queued again", recovered)
        await self._sweep()
        for lane in self.lanes:
            self._launch(lane)

    def add_engines(self, engines: Sequence[Engine]) -> None:
        """More lanes (machines joined the cluster), working at once."""
        for engine in engines:
            self.lanes.append(lane := Lane(engine))
            self._launch(lane)
            _log.info("%s joins the queue's lanes", engine.name)

    def _launch(self, lane: Lane) -> None:
        lane.task = asyncio.create_task(self._loop(lane), name=f"dispatcher {lane.engine.name}")
        lane.task.add_done_callback(_log_crash)

    async def stop(self) -> None:
        """Stop dispatching; running jobs are interrupted and resume at the next start."""
        for lane in self.lanes:
            if lane.task is not None:
                lane.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
                lane.task = None
        await asyncio.gather(*(lane.engine.stop(grace=5.0) for lane in self.lanes))

    # what the core calls ---------------------------------------------------------------

    async def submitted(self, job: JobRecord) -> None:
        """A job was queued: wake up, and make a running training yield to a generation
        when no lane is free for it."""
        self.wake()
        if job.kind != "imagine" or any(lane.current is None for lane in self.lanes):
            return
        for lane in self.lanes:
            current = lane.current
            if (
                current is not None
                and current.kind == "train"
                and not self.jobs.waited_long(current)
            ):
                with contextlib.suppress(EngineDied):
                    await lane.engine.send({"op": "yield", "job_id": current.id})
                return

    async def cancel(self, job_id: int) -> None:
        await self.jobs.request_cancel(job_id)
        lane = self._lane_of(job_id)
        if lane is not None:
            with contextlib.suppress(EngineDied):
                await lane.engine.send({"op": "cancel", "job_id": job_id})
        elif (job := await self.jobs.get(job_id)) is not None and job.status not in FINAL_STATES:
            await self._end(job, "cancelled", error="cancelled by the user")

    def wake(self) -> None:
        """Look at the queue now (a job was queued, or the queue resumed)."""
        for lane in self.lanes:
            lane.bell.set()

    async def next_look(self) -> None:
        """Wait until the dispatcher has looked at the queue once more."""
        if self._next_look is None or self._next_look.done():
            self._next_look = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._next_look)

    async def abandon_user(self, user_id: int) -> None:
        """Stop everything of `user_id` at once, before their data is erased."""
        self._erasures += 1
        self._erasing += 1
        try:
            await self._abandon(user_id)
        finally:
            self._erasing -= 1

    async def _abandon(self, user_id: int) -> None:
        for job in await self.repo.jobs(user_id):
            if job.status == "queued":
                await self.jobs.finish(job.id, "cancelled", error="erased")
                job_event("cancelled", job, "erased with its user")
                self._publish(JobUpdate(job.id, "erased"))
        for lane in self.lanes:
            theirs = [job.id for job in lane.running if job.user_id == user_id]
            if theirs:
                self._abandoned.update(theirs)
                await lane.engine.kill()
                await lane.idle.wait()
        # Engines that made their pictures keep their models loaded: they drop them now
        # (between jobs, if one runs another user's picture).
        models = await self.repo.loras(user_id)
        if not models:
            return
        blobs = {model.blob for model in models}
        forget: Command = {"op": "forget", "sha256s": [model.sha256 for model in models]}
        for lane in self.lanes:
            for blob in blobs & set(lane.models):
                lane.models.remove(blob)
            if lane.engine.alive:
                with contextlib.suppress(EngineDied):
                    await lane.engine.send(forget)

    async def updates(self, job_id: int) -> AsyncIterator[JobUpdate]:
        """Updates of `job_id` until it ends; ends at once for a job already finished."""
        queue: asyncio.Queue[JobUpdate] = asyncio.Queue()
        self._listeners[job_id].add(queue)
        try:
            job = await self.jobs.get(job_id)
            if job is None or job.status in FINAL_STATES:
                yield JobUpdate(
                    job_id, job.status if job else "erased", message=job.error if job else None
                )
                return
            while True:
                update = await queue.get()
                yield update
                if update.state in FINAL_STATES:
                    return
        finally:
            self._listeners[job_id].discard(queue)
            if not self._listeners[job_id]:
                del self._listeners[job_id]

    # the loop --------------------------------------------------------------------------

    async def _loop(self, lane: Lane) -> None:
        while True:
            lane.bell.clear()
            paused = await self.repo.setting(QUEUE_PAUSED) is not None
            if not paused and await self._wants_engine(lane):
                await self._restart_engine(lane)
            shared = len(self.lanes) > 1
            # With several lanes, one whose engine cannot start (its machine left the
            # cluster) takes no job: another lane runs it.
            ready = not shared or lane.engine.alive
            jobs = await self._claim(lane) if ready and not paused else []
            if self._next_look is not None and not self._next_look.done():
                self._next_look.set_result(None)
            if not jobs:
                # Other processes (the command line) queue jobs and pause the queue through
                # the database only: look again now and then even when nobody rings.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.bell.wait(), POLL_SECONDS)
                continue
            try:
                await self._run(lane, jobs)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The dispatcher outlives any one job's bug.
                _log.exception("jobs %s: unexpected error", [job.id for job in jobs])
                for job in jobs:
                    row = await self.jobs.get(job.id)
                    if row is not None and row.status not in FINAL_STATES:
                        await self._fail(job, "an internal error stopped this job")

    async def _wants_engine(self, lane: Lane) -> bool:
        """Whether to start the lane's engine before it takes a job: it died (health
        checks and the next job find it ready again, and a lane that is ready takes the
        job meanwhile), or, with several lanes, there is work for it."""
        if lane.engine.exited:
            return True
        if len(self.lanes) == 1 or lane.engine.alive:
            return False  # the only engine starts with its next job
        return bool(await self.jobs.schedule())

    async def _claim(self, lane: Lane) -> list[JobRecord]:
        """The jobs this lane runs next, marked running: one, or pictures that share a
        batch; none when there is none for it."""
        async with self._claiming:
            training = {
                other.current.user_id
                for other in self.lanes
                if other.current is not None and other.current.kind == "train"
            }
            free = [other for other in self.lanes if other.current is None]
            queued = await self.jobs.queued()
            starting: list[JobRecord] = []  # the jobs that would start now on free lanes
            for job in queued:
                if job.kind == "train" and job.user_id in training:
                    continue  # one training per user at a time
                starting.append(job)
                if len(starting) == len(free):
                    break
            # LoRA affinity: the picture whose model this lane holds; else the first job
            # whose model no other free lane holds (that lane takes it).
            others = [o for o in free if o is not lane and o.engine.alive]
            chosen = next((job for job in starting if _model_of(job) in lane.models), None)
            if chosen is None:
                chosen = next(
                    (j for j in starting if not any(_model_of(j) in o.models for o in others)),
                    None,
                )
            if chosen is None:
                return []
            batch = [chosen, *_batch_mates(chosen, queued, lane.engine.batch)]
            for job in batch:
                await self.jobs.mark_running(job.id)
                lane.running.append(await self.jobs.get(job.id) or job)
            lane.idle.clear()
            return list(lane.running)

    async def _run(self, lane: Lane, jobs: list[JobRecord]) -> None:
        for job in jobs:
            together = f", in a batch of {len(jobs)}" if len(jobs) > 1 else ""
            job_event(
                "started", job, f"attempt {job.attempts}{together}", attempt=job.attempts,
                batch=len(jobs),
            )  # fmt: skip
            LANE_JOBS.labels(lane.engine.name, job.kind).inc()
        LANE_BUSY.labels(lane.engine.name).set(1)
        BATCH_JOBS.observe(len(jobs))
        try:
            await self._drive(lane)
        except (EngineDied, TimeoutError) as exc:
            await self._engine_lost(lane, exc)
        finally:
            LANE_BUSY.labels(lane.engine.name).set(0)
            lane.running.clear()
            lane.idle.set()

    async def _drive(self, lane: Lane) -> None:
        engine = lane.engine
        commands: list[Command] = []
        for job in list(lane.running):
            try:
                commands.append(await self._command(job))
            except JobFormatError as exc:
                # Queued by a version of selfiebooth that wrote another format.
                lane.running.remove(job)
                await self._fail(job, f"this job cannot run: {exc}")
        if not commands:
            return
        if not engine.alive:
            await self._start_engine(lane)
        for job in lane.running:
            if (model := _model_of(job)) is not None and model not in lane.models:
                lane.models.append(model)
        began = time.monotonic()  # loading the model is not the job's time
        if len(commands) == 1:
            await engine.send(commands[0])
        else:  # a batch holds pictures only (_batch_mates)
            pictures = [command for command in commands if command["op"] == "generate"]
            assert len(pictures) == len(commands)
            await engine.send({"op": "batch", "jobs": pictures})
        for job in lane.running:
            self._publish(JobUpdate(job.id, "running"))
            if await self.jobs.cancel_requested(job.id):
                await engine.send({"op": "cancel", "job_id": job.id})
        if engine.prefetches:
            try:
                await self._prefetch(lane)
            except EngineDied:
                raise
            except Exception:
                # Advice only: its failure never touches the jobs that run.
                _log.exception("the next pictures' models could not be named to %s", engine.name)
        first = lane.running[0]
        if (
            first.kind == "train"
            and not self.jobs.waited_long(first)
            and not await self.jobs.cancel_requested(first.id)
            and all(other.current is not None for other in self.lanes)
            and await self.jobs.has_queued("imagine")
        ):
            await engine.send({"op": "yield", "job_id": first.id})
        runs = {job.id: _Run() for job in lane.running}
        while lane.running:
            event = await engine.next_event()
            about = next((job for job in lane.running if job.id == event.get("job_id")), None)
            if about is not None and await self._follow(about, event, began, runs[about.id]):
                lane.running.remove(about)

    async def _prefetch(self, lane: Lane) -> None:
        """Name to the lane's engine the models of the next few queued pictures it does
        not hold, to read while it works. Reads the queue, changes nothing in it."""
        erasures = self._erasures
        if self._erasing:
            return
        files: list[PrefetchFile] = []
        seen: set[str] = set()
        for job in (await self.jobs.queued())[:_PREFETCH_LOOK]:
            if len(files) >= PREFETCH_AHEAD:
                break
            model = _model_ref(job)
            if model is None or model.blob in lane.models or model.blob in seen:
                continue
            seen.add(model.blob)
            # A blob store without local files: the job's command copies the file later.
            path = self.blobs.local_path(model.blob)
            if path is not None:
                files.append({"path": str(path), "sha256": model.sha256})
        # No await between this check and the write: an erasure begun meanwhile drops it.
        if files and self._erasures == erasures and not self._erasing:
            await lane.engine.send({"op": "prefetch", "files": files})

    async def _follow(self, job: JobRecord, event: Event, began: float, run: _Run) -> bool:
        """Act on one of a running job's events; True when the job is over."""
        kind = event["event"]
        if "gpu_memory" in event:
            GPU_MEMORY.set(event["gpu_memory"])
        if kind in ("done", "stopped", "failed"):
            self._seconds[job.id] += time.monotonic() - began
        if kind == "progress":
            step, total = int(event["step"]), int(event["total"])
            if step * 4 // total > run.quarters and step < total:
                run.quarters = step * 4 // total
                job_event("progress", job, f"step {step} of {total}", step=step, total=total)
            if job.kind == "train":
                self._training_rate(run.first_step, step)
            if step * 10 // total > run.tenths:
                # A tenth at a time: a batch of eight pictures would write each step of
                # each picture, and the console shows whole percents of long jobs anyway.
                run.tenths = step * 10 // total
                await self.jobs.set_progress(job.id, step / total)
            self._publish(
                JobUpdate(job.id, "progress", step, total, event.get("loss"), event.get("eta"))
            )
        elif kind == "checking":  # a training measures its likeness (a few seconds)
            self._publish(JobUpdate(job.id, "checking", int(event["step"])))
        elif kind == "sample":
            try:
                preview = await asyncio.to_thread(Path(event["path"]).read_bytes)
            except OSError:
                return False  # the engine moved on and removed it: the next one will do
            if self.likeness is None or await self.likeness.allows_preview(job.user_id, preview):
                self._publish(JobUpdate(job.id, "sample", int(event["step"]), preview=preview))
        elif kind == "done":
            await self._complete(job, event.get("generated"), event.get("trained"))
            return True
        elif kind == "stopped":
            if event.get("reason") == "yield":
                await self.jobs.requeue(job.id, attempt_counts=False)
                job_event("requeued", job, "making way for pictures", reason="yield")
                self._publish(JobUpdate(job.id, "paused", message="making way for pictures"))
            else:
                await self._end(job, "cancelled", error="cancelled by the user")
            return True
        elif kind == "failed":
            await self._fail(job, str(event.get("error", "unknown error")))
            return True
        return False

    async def _engine_lost(self, lane: Lane, exc: Exception) -> None:
        """The lane's engine is gone mid-run: each of its jobs not over yet goes back to
        the queue, or ends if it was cancelled, erased or out of attempts."""
        await lane.engine.kill()
        # Killed on purpose to stop an erased user's job: its batch mates lost no attempt.
        erasure = any(job.id in self._abandoned for job in lane.running)
        for job in list(lane.running):
            lane.running.remove(job)
            if job.id in self._abandoned:
                self._abandoned.discard(job.id)
                self._seconds.pop(job.id, None)
                job_event("cancelled", job, "erased with its user")
                # Followers (chat front ends) hear the end; the rows go with the erasure.
                self._publish(JobUpdate(job.id, "erased"))
            elif await self.jobs.cancel_requested(job.id):
                await self._end(job, "cancelled", error="cancelled by the user")
            elif erasure:
                await self.jobs.requeue(job.id, attempt_counts=False)
                job_event("requeued", job, "its batch was stopped for an erasure", reason="erasure")
                self._publish(JobUpdate(job.id, "retrying", message="the engine was restarted"))
            elif job.attempts >= self.max_attempts:
                message = (
                    f"the engine stopped unexpectedly {job.attempts} times while running this"
                    " job; it will not be tried again"
                )
                await self._fail(job, message)
            else:
                await self.jobs.requeue(job.id, attempt_counts=True)
                job_event(
                    "requeued",
                    job,
                    f"the engine was lost ({exc}) in attempt {job.attempts} of {self.max_attempts}",
                    level=logging.WARNING,
                    reason="engine lost",
                    attempt=job.attempts,
                )
                self._publish(JobUpdate(job.id, "retrying", message=str(exc)))
        self.wake()  # a free lane takes them while this one starts again

    # inputs and results ----------------------------------------------------------------

    def job_dir(self, job_id: int) -> Path:
        return self.work_dir / f"job-{job_id}"

    async def _command(self, job: JobRecord) -> Command:
        request = job.request()
        work = self.job_dir(job.id)
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        if isinstance(request, TrainRequest):
            images = []
            for n, key in enumerate(request.crops):
                path = work / f"crop-{n}.png"
                data = await self.blobs.get(key)
                await asyncio.to_thread(path.write_bytes, data)
                images.append(str(path))
            return {
                "op": "train",
                "job_id": job.id,
                "request": job.params,
                "files": {
                    "images": images,
                    "output": str(work / "lora.safetensors"),
                    "checkpoint_dir": str(work / "checkpoints"),
                },
            }
        lora = None
        if request.model is not None:
            lora = str(await self._readable(request.model.blob, work / "lora.safetensors"))
        files: GenerateFiles = {"lora": lora, "out_dir": str(work / "out")}
        if request.styles:
            files["styles"] = [
                str(await self._readable(style.blob, work / f"style-{n}.safetensors"))
                for n, style in enumerate(request.styles)
            ]
        if request.source is not None:
            files["source"] = str(await self._readable(request.source, work / "source"))
        if request.mask is not None:
            files["mask"] = str(await self._readable(request.mask, work / "mask"))
        if request.edges is not None:
            files["edges"] = str(await self._readable(request.edges, work / "edges"))
        return {"op": "generate", "job_id": job.id, "request": job.params, "files": files}

    async def _readable(self, key: str, fallback: Path) -> Path:
        local = self.blobs.local_path(key)
        if local is not None:
            return local
        data = await self.blobs.get(key)
        await asyncio.to_thread(fallback.write_bytes, data)
        return fallback

    async def _complete(
        self, job: JobRecord, generated: Generated | None, trained: Trained | None
    ) -> None:
        written: list[str] = []
        try:
            result = await self._store_result(job, generated, trained, written)
        except BaseException:
            # The user may have been erased meanwhile: keep none of their files.
            for key in written:
                if not await self.repo.blob_in_use(key):
                    await self.blobs.delete(key)
            raise
        if isinstance(result, ImagineResult):
            PICTURES.labels("made").inc(len(result.images))
            PICTURES.labels("withheld").inc(result.withheld)
        await self._end(job, "succeeded", result=result)

    async def _fail(self, job: JobRecord, error: str) -> None:
        await self._end(job, "failed", error=error)

    async def _end(
        self,
        job: JobRecord,
        state: str,
        *,
        error: str | None = None,
        result: JobResult | None = None,
    ) -> None:
        """A job is over: its row, its files, a log line and the metrics, its followers."""
        await self.jobs.finish(job.id, state, error=error, result=result)
        await self._release(job.id)
        seconds = self._seconds.pop(job.id, 0.0)
        if state == "succeeded":
            JOB_SECONDS.labels(job.kind, self.family).observe(seconds)
        job_event(
            state,
            job,
            error or f"{seconds:.1f} s in the engine",
            level=logging.WARNING if state == "failed" else logging.INFO,
            seconds=round(seconds, 3),
            error=error,
        )
        message = error if state == "failed" else None
        self._publish(JobUpdate(job.id, state, message=message, result=result))

    async def _store_result(
        self,
        job: JobRecord,
        generated: Generated | None,
        trained: Trained | None,
        written: list[str],
    ) -> JobResult:
        """Result files into the blob store (their keys added to `written`), rows added."""
        request = job.request()
        if isinstance(request, TrainRequest):
            if trained is None:
                raise ValueError(f"the engine finished training job {job.id} without a model")
            data = await asyncio.to_thread(Path(trained["path"]).read_bytes)
            key = await self.blobs.put(data)
            written.append(key)
            report = trained.get("likeness")
            likeness: dict[str, object] | None = None
            if report is not None:
                # The pictures the score is based on are kept with the version.
                pictures = []
                for picture in report["pictures"]:
                    pictures.append(
                        await self.blobs.put(await asyncio.to_thread(Path(picture).read_bytes))
                    )
                    written.append(pictures[-1])
                likeness = {**report, "pictures": pictures}
            lora = await self.repo.add_lora(
                job.user_id,
                base_model=request.base_model,
                family=trained["family"],
                trigger_word=request.trigger,
                blob=key,
                sha256=trained["sha256"],
                recipe=trained["recipe"],
                job_id=job.id,
                likeness=likeness,
                method=request.method,
            )
            result = TrainResult(lora.id, lora.version, trained["steps"], trained["loss"])
            if report is None:
                return result
            return dataclasses.replace(
                result,
                likeness=report["distance"],
                likeness_faces=report["faces"],
                likeness_samples=report["samples"],
                likeness_step=report["step"],
            )
        assert isinstance(request, ImagineRequest)
        if generated is None:
            raise ValueError(f"the engine finished picture job {job.id} without pictures")
        if self.likeness is not None:
            generated = await self.likeness.screen_result(job.user_id, generated)
        images: list[str] = []
        for image in generated["images"]:
            data = await asyncio.to_thread(Path(image["path"]).read_bytes)
            key = await self.blobs.put(data)
            written.append(key)
            images.append(key)
            await self.repo.add_image(
                job.id,
                job.user_id,
                blob=key,
                seed=image["seed"],
                width=image["width"],
                height=image["height"],
            )
        blocked = generated["blocked"]
        for entry in blocked:
            # The engine writes a blocked image only when config keeps them for review.
            kept = None
            if "path" in entry:
                kept = await self.blobs.put(await asyncio.to_thread(Path(entry["path"]).read_bytes))
                written.append(kept)
            detail = {"source": "generation", "seed": entry["seed"], "classes": entry["classes"]}
            detail |= entry.get("review", {})
            await self.repo.add_review_item("image", job.user_id, detail, job_id=job.id, blob=kept)
        if blocked:
            _log.info("job %d: %d image(s) withheld by the safety filters", job.id, len(blocked))
        return ImagineResult(tuple(images), withheld=len(blocked), model_prompt=generated["prompt"])

    async def _sweep(self) -> None:
        """Remove scratch space left by jobs that are over or gone (a crash, an erasure)."""
        if not self.work_dir.is_dir():
            return
        for path in self.work_dir.glob("job-*"):
            suffix = path.name.removeprefix("job-")
            job = await self.jobs.get(int(suffix)) if suffix.isdigit() else None
            if job is None or job.status in FINAL_STATES:
                await asyncio.to_thread(shutil.rmtree, path, True)

    async def _start_engine(self, lane: Lane) -> None:
        lane.models.clear()
        if lane.engine.exited:
            ENGINE_RESTARTS.inc()
            await self.repo.add_engine_restart(utcnow())
            _log.warning("starting %s again: the last one ended unexpectedly", lane.engine.name)
        await lane.engine.start()

    async def _restart_engine(self, lane: Lane) -> None:
        """Start the lane's engine; a failed start is tried again later."""
        if time.monotonic() < lane.retry_start:
            return
        try:
            await self._start_engine(lane)
        except (EngineDied, TimeoutError, OSError) as exc:
            lane.retry_start = time.monotonic() + RESTART_BACKOFF
            await lane.engine.kill()
            _log.error("%s did not start: %s", lane.engine.name, exc)

    def _training_rate(self, run: list[float], step: int) -> None:
        """Steps per second of this run since its first step; `run` holds that step and
        its time once it is known."""
        now = time.monotonic()
        if not run:
            run.extend((step, now))
        elif step > run[0] and now > run[1]:
            TRAINING_RATE.labels(self.family).set((step - run[0]) / (now - run[1]))

    def _cleanup(self, job_id: int) -> None:
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    async def _release(self, job_id: int) -> None:
        """A job has ended: its scratch space and its attached picture go."""
        self._cleanup(job_id)
        job = await self.jobs.get(job_id)
        if job is not None:
            try:
                request = job.request()
            except JobFormatError:
                return  # another version's row: it names no picture this one could read
            await release_source(self.repo, self.blobs, request)

    def _lane_of(self, job_id: int) -> Lane | None:
        for lane in self.lanes:
            if any(job.id == job_id for job in lane.running):
                return lane
        return None

    def _publish(self, update: JobUpdate) -> None:
        for queue in self._listeners.get(update.job_id, ()):
            queue.put_nowait(update)


@dataclass
class _Run:
    """What the dispatcher follows of one job's run."""

    quarters: int = 0  # the quarters of the run logged so far
    tenths: int = 0  # the tenths of the run saved as the job's progress so far
    first_step: list[float] = field(default_factory=list)  # a training's first step, time


def _batch_of(job: JobRecord) -> tuple[tuple[object, ...] | None, int]:
    """The picture job's batch key (None: it runs alone) and its number of pictures."""
    if job.kind != "imagine":
        return None, 1
    try:
        request = job.request()
    except JobFormatError:
        return None, 1
    if not isinstance(request, ImagineRequest):
        return None, 1
    return request.batch_key(), request.count


def _batch_mates(chosen: JobRecord, queued: list[JobRecord], room: int) -> list[JobRecord]:
    """Queued pictures, in the schedule's order, that can share `chosen`'s denoising batch
    of at most `room` pictures."""
    key, count = _batch_of(chosen)
    room -= count
    mates: list[JobRecord] = []
    if key is None:
        return mates
    for job in queued:
        if room <= 0:
            break
        their_key, their_count = _batch_of(job)
        if job.id != chosen.id and their_key == key and their_count <= room:
            mates.append(job)
            room -= their_count
    return mates


def _model_ref(job: JobRecord) -> ModelRef | None:
    """The picture job's own model (its blob and sha256); None for any other job."""
    if job.kind != "imagine":
        return None
    try:
        request = job.request()
    except JobFormatError:
        return None
    return request.model if isinstance(request, ImagineRequest) else None


def _model_of(job: JobRecord) -> str | None:
    """The blob of the picture job's own model, which a lane keeps loaded after it."""
    model = _model_ref(job)
    return model.blob if model is not None else None


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("the dispatcher stopped", exc_info=task.exception())
