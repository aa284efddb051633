"""The engine process: owns the model and the device, runs one job at a time (or a
batch of picture jobs, in one denoising batch where they can share one).

    python -m engine.worker --base tiny --family auto --models-dir DIR [--device auto]
        --certificate CHAIN.pem --private-key KEY.pem
        [--blocked-classes '{"FEMALE_BREAST_EXPOSED": 0.4}'] [--keep-blocked]

Commands arrive on stdin and events leave on stdout (engine.protocol). A reader thread
takes `cancel` and `yield` while a job runs, so training stops between two steps (after
a checkpoint) and generation between two denoising steps; it also hands `prefetch` to
the thread that reads the next pictures' models ahead (engine.generation.prefetch).
Anything else the libraries print goes to stderr, so stdout carries the protocol only.

Every image that leaves the engine (a result, a generation preview, a training sample)
first passes the image filter (NudeNet, with the blocked classes given), carries the
job id as an invisible watermark, and leaves as a PNG with signed Content Credentials
(C2PA, engine.provenance.credentials). A blocked result is not written as a result: the job's
result lists it under "blocked", with a file only when it is kept for review.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, cast

from engine.jobs import ATTACHMENTS, ImagineRequest, TrainRequest, decode_request
from engine.logs import LOG_FORMATS, configure_logging
from engine.models.memory import QUANTIZE_MODES, MemoryOptions, whole_on_device
from engine.models.speed import (
    COMPILE_MODES,
    PREFETCH_MODES,
    compile_denoiser,
    compiled,
    compiles,
    prefetches,
)
from engine.protocol import (
    BlockedImage,
    Command,
    Event,
    GenerateCommand,
    Generated,
    OutputImage,
    TrainCommand,
    Trained,
    decode_command,
    encode,
)

if TYPE_CHECKING:
    from diffusers import ControlNetModel, UNet2DConditionModel
    from PIL import Image

    from engine.generation import GeneratedImage, GenerationRequest, GenerationResult
    from engine.intake.faces import FaceAnalyzer
    from engine.safety.image_filter import ImageFilter
    from engine.training import TrainingRequest
    from engine.training.likeness import LikenessScore

__all__ = ["main", "screen_results"]

_log = logging.getLogger("engine.worker")

# Likeness checks of a training (engine.training.likeness): the best one's weights are kept.
VALIDATIONS = 4


class JobInterrupted(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Worker:
    def __init__(self, args: argparse.Namespace, out: BinaryIO) -> None:
        import torch

        from engine.generation import LoraCache
        from engine.models.families import resolve_family
        from engine.models.loader import load_pipeline
        from engine.provenance.credentials import ContentCredentials
        from engine.safety.image_filter import ImageFilter

        self._out = out
        self._out_lock = threading.Lock()
        device = args.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.cuda = device.startswith("cuda")
        self.device = torch.device(device)
        self.family = resolve_family(args.base, args.family)
        self.base: str = args.base
        self.models_dir: Path = args.models_dir
        self.memory = MemoryOptions(
            cpu_offload=args.cpu_offload,
            gradient_checkpointing=not args.no_gradient_checkpointing,
            quantize=args.quantize,
        )
        self.pipeline = load_pipeline(
            args.base, self.family, device, models_dir=args.models_dir, memory=self.memory
        )
        # The compiled denoiser, for pictures (engine.models.speed); None: eager.
        self.compiled: Any = None
        if compiles(args.compile, self.device):
            from engine.generation.hotswap import HotswapCache

            self.compiled = compile_denoiser(self.pipeline, args.compile)
            HotswapCache(self.pipeline, self.family.recipe.rank).install()
        self.adapters = LoraCache.for_pipeline(self.pipeline)
        self.adapters.family = self.family.name
        # FLUX's LoRA loader does more than a dict of tensors can say: it reads its files.
        if prefetches(args.lora_prefetch, self.device) and hasattr(self.pipeline, "unet"):
            from engine.generation.prefetch import Prefetcher

            self.adapters.prefetched = Prefetcher(pin=self.cuda)
        classes: dict[str, float] = json.loads(args.blocked_classes)
        self.image_filter = ImageFilter(classes) if classes else None
        self.keep_blocked: bool = args.keep_blocked
        self._faces: FaceAnalyzer | None = None  # dlib, loaded for the first likeness
        self._controlnet_spec: str = args.controlnet
        self._controlnet: ControlNetModel | None = None
        self._inpainting_spec: str = args.inpainting
        self._inpainting_unet: UNet2DConditionModel | None = None
        self.credentials = ContentCredentials(args.certificate, args.private_key)
        self.commands: queue.Queue[Command | None] = queue.Queue()
        # job id -> "cancel" or "yield"; may arrive before the job starts.
        self.interrupts: dict[int, str] = {}
        self.running: tuple[int, ...] = ()  # the jobs being worked on
        # Pictures made in one batch at most (engine.generation.together); 1: one job a run.
        self.batch: int = args.batch or (8 if self.cuda else 1)

    def controlnet(self) -> ControlNetModel | None:
        """The deployment's ControlNet, loaded at the first edge control job."""
        if self._controlnet is None and self._controlnet_spec:
            from engine.models.controlnet import load_controlnet

            self._controlnet = load_controlnet(self._controlnet_spec, self.base, self.pipeline)
        return self._controlnet

    def inpainting_unet(self) -> UNet2DConditionModel | None:
        """The deployment's dedicated inpainting UNet, loaded at the first edit."""
        if self._inpainting_unet is None and self._inpainting_spec:
            from engine.models.inpainting import load_inpainting_unet

            self._inpainting_unet = load_inpainting_unet(self._inpainting_spec, self.pipeline)
        return self._inpainting_unet

    def send(self, event: Event) -> None:
        if self.cuda and event["event"] in ("progress", "done"):
            import torch  # loaded already: the model is on the GPU

            # For the bot's metrics: what this process holds of the GPU.
            event["gpu_memory"] = torch.cuda.memory_reserved()
        with self._out_lock:
            self._out.write(encode(event))
            self._out.flush()

    def read_commands(self, stdin: BinaryIO) -> None:
        for line in stdin:
            try:
                command = decode_command(line)
            except ValueError:
                # A bot of another version: what this engine cannot read, it says and
                # skips, rather than stop hearing the bot (the job's events still come).
                _log.error("a command this engine cannot read is ignored: %r", line[:80])
                continue
            if command["op"] == "prefetch":
                # Advisory, and for while a job runs: never queued behind it.
                if self.adapters.prefetched is not None:
                    self.adapters.prefetched.request(
                        (Path(f["path"]), f["sha256"]) for f in command["files"]
                    )
                continue
            if command["op"] == "cancel" or command["op"] == "yield":
                job_id = command.get("job_id", -1)
                # A cancel is never downgraded to a yield.
                if self.interrupts.get(job_id) != "cancel":
                    self.interrupts[job_id] = command["op"]
                continue
            self.commands.put(command)
        # stdin closed: the bot (or the lane's actor) is gone, and nobody would take the
        # running job's result: it stops at its next step, a training with a checkpoint.
        for job_id in self.running:
            self.interrupts[job_id] = "cancel"
        self.commands.put(None)

    def serve(self) -> None:
        prefetch = self.adapters.prefetched is not None
        self.send({"event": "ready", "batch": self.batch, "prefetch": prefetch})
        while (command := self.commands.get()) is not None:
            if command["op"] == "batch":
                self.generate_batch(command["jobs"])
            elif command["op"] == "train" or command["op"] == "generate":
                self.run(command)
            elif command["op"] == "forget":
                held = self.adapters.forget(command["sha256s"])
                self.send({"event": "forgotten", "count": held})
            else:
                break  # shutdown

    def run(self, command: TrainCommand | GenerateCommand) -> None:
        """Run one job and send how it ended."""
        job_id = command["job_id"]
        self.running = (job_id,)
        try:
            if command["op"] == "train":
                self.send({"event": "done", "job_id": job_id, "trained": self.train(command)})
            else:
                generated = self.generate(command)
                self.send({"event": "done", "job_id": job_id, "generated": generated})
        except JobInterrupted as stop:
            reason: Literal["cancel", "yield"] = "yield" if stop.reason == "yield" else "cancel"
            self.send({"event": "stopped", "job_id": job_id, "reason": reason})
        except Exception as exc:  # a job's failure must not end the engine
            self.failed(job_id, exc)
        finally:
            self.running = ()
            self.interrupts.pop(job_id, None)

    def failed(self, job_id: int, exc: Exception) -> None:
        _log.error("job %d failed:\n%s", job_id, traceback.format_exc())
        self.send({"event": "failed", "job_id": job_id, "error": _describe(exc)})

    def train(self, command: TrainCommand) -> Trained:
        from PIL import Image

        from engine.models.recipe import TrainingRecipe
        from engine.training import TrainingRequest, TrainingStopped, latest_checkpoint, train

        job_id, files = command["job_id"], command["files"]
        asked = decode_request("train", command["request"])
        assert isinstance(asked, TrainRequest)
        asked.check()
        images = []
        for path in files["images"]:
            with Image.open(path) as img:
                images.append(img.convert("RGB"))
        request = TrainingRequest(
            images=tuple(images),
            trigger=asked.trigger,
            output=Path(files["output"]),
            seed=asked.seed,
            steps=asked.steps,
            recipe=TrainingRecipe.from_dict(dict(asked.recipe)) if asked.recipe else None,
            checkpoint_every=asked.checkpoint_every,
            sample_every=asked.sample_every,
            method=asked.method,
        )
        if asked.prior is not None:
            request = dataclasses.replace(
                request,
                class_images=self.class_images(asked.prior.class_images, request.class_word),
                prior_loss_weight=asked.prior.weight,
            )
        # A training takes minutes; reloading cached adapters afterwards takes milliseconds.
        self.adapters.clear()
        checkpoints = Path(files["checkpoint_dir"])
        sample_dir = checkpoints.parent

        def progress(step: int, total: int, loss: float, eta: float) -> None:
            self.send(
                {
                    "event": "progress",
                    "job_id": job_id,
                    "step": step,
                    "total": total,
                    "loss": loss,
                    "eta": eta,
                }
            )

        def on_sample(step: int, image: Image.Image) -> None:
            path = sample_dir / f"sample-{step:06d}.png"
            if self.outgoing(job_id, image, path, tool="train"):
                self.send({"event": "sample", "job_id": job_id, "step": step, "path": str(path)})

        validate = None
        rendered: dict[int, list[Image.Image]] = {}  # step -> its validation pictures
        if asked.likeness is not None:
            request = dataclasses.replace(request, validations=VALIDATIONS)
            validate = self.validator(job_id, request, asked.likeness, rendered)
        try:
            with whole_on_device(self.pipeline, self.device, self.memory):
                result = train(
                    self.pipeline,
                    self.family,
                    request,
                    checkpoint_dir=checkpoints,
                    resume_from=latest_checkpoint(checkpoints) if checkpoints.is_dir() else None,
                    progress=progress,
                    on_sample=on_sample,
                    should_stop=lambda: job_id in self.interrupts,
                    validate=validate,
                    checkpointing=self.memory.gradient_checkpointing,
                )
        except TrainingStopped:
            raise JobInterrupted(self.interrupts.get(job_id, "cancel")) from None
        trained: Trained = {
            "path": str(result.path),
            "sha256": result.sha256,
            "steps": result.steps,
            "loss": result.loss,
            "recipe": result.recipe.to_dict(),
            "family": self.family.name,
        }
        if result.likeness is not None:
            # The pictures the score is based on leave the engine as every picture does.
            pictures = []
            for n, picture in enumerate(rendered.get(result.likeness_step, []), start=1):
                saved = sample_dir / f"validation-{n}.png"
                if self.outgoing(job_id, picture, saved, tool="train"):
                    pictures.append(str(saved))
            score = result.likeness
            trained["likeness"] = {
                "distance": score.distance,
                "faces": score.faces,
                "samples": score.pictures,
                "step": result.likeness_step,
                "pictures": pictures,
            }
        return trained

    def validator(
        self,
        job_id: int,
        request: TrainingRequest,
        reference: Sequence[float],
        rendered: dict[int, list[Image.Image]],
    ) -> Callable[[int], LikenessScore]:
        """Renders the validation pictures (into `rendered`, by step) and scores them
        against `reference`."""
        from engine.intake.faces import FaceAnalyzer
        from engine.training.likeness import FaceLikeness
        from engine.training.samples import render_validation

        if self._faces is None:
            self._faces = FaceAnalyzer()
        scorer = FaceLikeness(reference, self._faces)

        def validate(step: int) -> LikenessScore:
            self.send({"event": "checking", "job_id": job_id, "step": step})
            started = time.monotonic()
            rendered[step] = render_validation(self.pipeline, request)
            score = scorer(rendered[step])
            _log.info(
                "job %d: step %d validated in %.1f s: %s",
                job_id, step, time.monotonic() - started, score.words(),
            )  # fmt: skip
            return score

        return validate

    def class_images(self, count: int, class_word: str) -> tuple[Image.Image, ...]:
        """`count` pictures of the class by the bare base model, made once and cached."""
        from PIL import Image

        from engine.generation import GenerationRequest, generate

        key = hashlib.sha256(f"{self.base}|{self.family.name}|{class_word}".encode()).hexdigest()
        folder = self.models_dir / "class-images" / key[:16]
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            path = folder / f"{n:04d}.png"
            if path.exists():
                continue
            request = GenerationRequest(
                f"a photo of a {class_word}",
                seed=n,
                steps=self.family.steps or 25,
                guidance=7.0 if self.family.guidance is None else self.family.guidance,
            )
            png = generate(self.pipeline, request, adapters=self.adapters).images[0].png
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(png)
            tmp.replace(path)
        size = (self.family.resolution, self.family.resolution)
        images = []
        for n in range(count):
            with Image.open(folder / f"{n:04d}.png") as img:
                images.append(img.convert("RGB").resize(size))
        return tuple(images)

    def generate(self, command: GenerateCommand) -> Generated:
        from engine.generation import generate

        job_id = command["job_id"]
        request = generation_request(command)

        def progress(step: int, total: int) -> None:
            if self.interrupts.get(job_id) == "cancel":
                raise JobInterrupted("cancel")  # generations are short: they never yield
            self.send({"event": "progress", "job_id": job_id, "step": step, "total": total})

        out_dir = Path(command["files"]["out_dir"])
        out_dir.mkdir(parents=True, exist_ok=True)
        previews = self.previews(job_id, out_dir, request.tool)
        # The tools' pipelines share the plain modules: text-to-image alone is compiled.
        wrapper = self.compiled if request.tool == "imagine" else None
        try:
            with compiled(self.pipeline, wrapper):
                result = generate(
                    self.pipeline,
                    request,
                    adapters=self.adapters,
                    progress=progress,
                    preview=previews.put,
                    preview_every=preview_every(request.steps),
                    watermark=job_id,
                    controlnet=self.controlnet() if request.edges is not None else None,
                    inpainting_unet=self.inpainting_unet() if request.mask is not None else None,
                )
        finally:
            previews.close()  # before the result: no preview event follows "done"
        return self.delivered(job_id, result, out_dir)

    def generate_batch(self, commands: Sequence[GenerateCommand]) -> None:
        """Run picture jobs together where they can share a denoising batch (at most
        `self.batch` pictures each), the others one by one; each job ends with its own
        event."""
        from engine.generation.together import batch_key

        groups: dict[tuple[object, ...], list[list[tuple[GenerateCommand, GenerationRequest]]]]
        groups = {}
        for command in commands:
            try:
                request = generation_request(command)
            except Exception as exc:
                self.failed(command["job_id"], exc)
                continue
            key = batch_key(request)
            if key is None:
                self.run(command)
                continue
            batches = groups.setdefault(key, [[]])
            if sum(r.count for _, r in batches[-1]) + request.count > self.batch:
                batches.append([])
            batches[-1].append((command, request))
        for batches in groups.values():
            for members in batches:
                if len(members) == 1:
                    self.run(members[0][0])
                else:
                    self.together(members)

    def together(self, members: Sequence[tuple[GenerateCommand, GenerationRequest]]) -> None:
        from engine.generation.together import generate_together

        ids = [command["job_id"] for command, _ in members]
        requests = [request for _, request in members]
        out_dirs = [Path(command["files"]["out_dir"]) for command, _ in members]
        self.running = tuple(ids)

        def progress(step: int, total: int) -> None:
            going = [job_id for job_id in ids if self.interrupts.get(job_id) != "cancel"]
            if not going:
                raise JobInterrupted("cancel")
            for job_id in going:
                self.send({"event": "progress", "job_id": job_id, "step": step, "total": total})

        for out_dir in out_dirs:
            out_dir.mkdir(parents=True, exist_ok=True)
        previews = [
            self.previews(job_id, out_dir, "imagine")
            for job_id, out_dir in zip(ids, out_dirs, strict=True)
        ]
        results: list[GenerationResult] | None = None  # None: run each job alone
        cancelled = False
        try:
            results = generate_together(
                self.pipeline,
                requests,
                adapters=self.adapters,
                watermarks=ids,
                progress=progress,
                previews=[preview.put for preview in previews],
                preview_every=preview_every(requests[0].steps),
            )
        except JobInterrupted:
            cancelled = True  # every job of the batch was cancelled
        except Exception:
            # A model that cannot share a batch (an embedding), or a batch too large for
            # the device: each job runs alone below, and fails alone if it must.
            _log.warning("jobs %s could not run in one batch:\n%s", ids, traceback.format_exc())
        finally:
            for preview in previews:
                preview.close()
            self.running = ()
        if cancelled:
            for job_id in ids:
                self.send({"event": "stopped", "job_id": job_id, "reason": "cancel"})
                self.interrupts.pop(job_id, None)
            return
        if results is None:
            for command, _ in members:
                self.run(command)
            return
        for job_id, result, out_dir in zip(ids, results, out_dirs, strict=True):
            try:
                if self.interrupts.get(job_id) == "cancel":
                    self.send({"event": "stopped", "job_id": job_id, "reason": "cancel"})
                else:
                    generated = self.delivered(job_id, result, out_dir)
                    self.send({"event": "done", "job_id": job_id, "generated": generated})
            except Exception as exc:
                self.failed(job_id, exc)
            finally:
                self.interrupts.pop(job_id, None)

    def previews(self, job_id: int, out_dir: Path, tool: str) -> LatestOnly:
        """Where a job's previews go: screened, marked and sent, off the denoising thread."""

        def preview(step: int, image: Image.Image) -> None:
            path = out_dir / f"preview-{step:03d}.png"
            if self.outgoing(job_id, image, path, tool=tool):
                self.send({"event": "sample", "job_id": job_id, "step": step, "path": str(path)})

        return LatestOnly(preview, name=f"previews-{job_id}")

    def delivered(self, job_id: int, result: GenerationResult, out_dir: Path) -> Generated:
        """A job's pictures screened, signed and written to `out_dir`, as its result."""
        tool = str(result.parameters["tool"])
        images, blocked = screen_results(
            result.images,
            out_dir,
            self.image_filter,
            keep_blocked=self.keep_blocked,
            seal=lambda png: self.credentials.sign(
                png, job_id=job_id, family=self.family.name, tool=tool
            ),
        )
        for entry in blocked:
            _log.warning(
                "job %d: the image of seed %d is withheld by the image filter (%s)",
                job_id,
                entry["seed"],
                ", ".join(entry["classes"]),
            )
        return {
            "images": images,
            "blocked": blocked,
            "prompt": result.prompt,
            "seconds": result.seconds,
        }

    def outgoing(self, job_id: int, image: Image.Image, path: Path, *, tool: str) -> bool:
        """Write a preview or sample as it may leave the engine, screened, marked and signed
        (a PNG at `path`); False, writing nothing, when the image filter blocks it."""
        from engine.provenance import MIN_SIDE, embed

        if self.image_filter is not None:
            verdict = self.image_filter.check(image)
            if not verdict.allowed:
                _log.warning(
                    "job %d: a preview is withheld by the image filter (%s)",
                    job_id,
                    ", ".join(verdict.blocked_by),
                )
                return False
        # Previews of very small models are below what a mark needs; results never are.
        if max(image.size) >= MIN_SIDE:
            image = embed(image, job_id)
        png = io.BytesIO()
        image.save(png, format="PNG")
        path.write_bytes(
            self.credentials.sign(png.getvalue(), job_id=job_id, family=self.family.name, tool=tool)
        )
        return True


def preview_every(steps: int) -> int:
    """Steps between a picture's previews: about three a picture."""
    return max(1, steps // 4)


def generation_request(command: GenerateCommand) -> GenerationRequest:
    """The generation a picture job's command asks for, its files opened and checked."""
    from engine.generation import GenerationRequest, LoraRef, StyleLora

    files = command["files"]
    asked = decode_request("imagine", command["request"])
    assert isinstance(asked, ImagineRequest)
    asked.check()
    model, lora_file = asked.model, files["lora"]
    if (model is None) != (lora_file is None):
        raise ValueError("a generation's model and its file come together or not at all")
    variation = asked.variation
    lora = LoraRef(Path(lora_file), model.sha256, model.trigger) if model and lora_file else None
    style_files = files.get("styles", [])
    if len(style_files) != len(asked.styles):
        raise ValueError(
            f"the request names {len(asked.styles)} styles but {len(style_files)} files came"
        )
    styles = tuple(
        StyleLora(Path(path), style.sha256, style.name, style.weight, style.trigger)
        for style, path in zip(asked.styles, style_files, strict=True)
    )
    attached: dict[str, Image.Image | None] = {}
    for name in ATTACHMENTS:
        path = cast("str | None", files.get(name))
        if (getattr(asked, name) is None) != (path is None):
            raise ValueError(f"a request's {name} picture and its file come together or not at all")
        attached[name] = _open_source(Path(path)) if path else None
    return GenerationRequest(
        prompt=asked.prompt,
        lora=lora,
        negative_prompt=asked.negative,
        seed=asked.seed,
        steps=asked.steps,
        guidance=asked.guidance,
        aspect_ratio=asked.aspect_ratio,
        count=asked.count,
        variation_seed=variation.seed if variation else None,
        variation_strength=variation.strength if variation else 0.0,
        styles=styles,
        source=attached["source"],
        strength=asked.strength,
        mask=attached["mask"],
        edges=attached["edges"],
        upscale=asked.upscale,
    )


def screen_results(
    images: Sequence[GeneratedImage],
    out_dir: Path,
    image_filter: ImageFilter | None,
    *,
    keep_blocked: bool,
    seal: Callable[[bytes], bytes] = lambda png: png,
) -> tuple[list[OutputImage], list[BlockedImage]]:
    """Write the images the filter allows as image-N.png, each `seal`ed (signed); list the
    ones it blocks.

    A blocked image is written (as blocked-N.png) only when it is kept for review.
    """
    from PIL import Image

    allowed: list[OutputImage] = []
    blocked: list[BlockedImage] = []
    for n, image in enumerate(images, start=1):
        if image_filter is not None:
            with Image.open(io.BytesIO(image.png)) as decoded:
                verdict = image_filter.check(decoded)
            if not verdict.allowed:
                entry: BlockedImage = {"seed": image.seed, "classes": verdict.scores()}
                if keep_blocked:
                    kept = out_dir / f"blocked-{n}.png"
                    kept.write_bytes(image.png)
                    entry["path"] = str(kept)
                blocked.append(entry)
                continue
        path = out_dir / f"image-{n}.png"
        path.write_bytes(seal(image.png))
        allowed.append(
            {"path": str(path), "seed": image.seed, "width": image.width, "height": image.height}
        )
    return allowed, blocked


# A source was screened by the core (intake's limits: 40 MP); this is the engine's own
# guard against a file it was not meant to get.
_MAX_SOURCE_PIXELS = 64_000_000


class LatestOnly:
    """Previews finished off the denoising thread: screening, the watermark (about 50 ms
    at 256 px) and the PNG run while the next steps do, on another core. A preview still
    waiting when a newer one comes is dropped: the newest is always sent."""

    def __init__(self, handle: Callable[[int, Image.Image], None], *, name: str) -> None:
        self._handle = handle
        self._changed = threading.Condition()
        self._pending: tuple[int, Image.Image] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, step: int, image: Image.Image) -> None:
        with self._changed:
            self._pending = (step, image)
            self._changed.notify()

    def close(self) -> None:
        """Send what waits, and stop."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._thread.join()

    def _run(self) -> None:
        while True:
            with self._changed:
                while self._pending is None and not self._closed:
                    self._changed.wait()
                if self._pending is None:
                    return
                step, image = self._pending
                self._pending = None
            try:
                self._handle(step, image)
            except Exception:
                # A preview is a courtesy: its failure never fails the job.
                _log.exception("a preview could not be sent")


def _open_source(path: Path) -> Image.Image:
    """An attached picture as RGB pixels, its size checked before decoding."""
    from PIL import Image

    with Image.open(path) as img:
        if img.width * img.height > _MAX_SOURCE_PIXELS:
            raise ValueError(
                f"the source picture is {img.width}x{img.height} pixels, more than the "
                f"{_MAX_SOURCE_PIXELS // 1_000_000} MP the engine takes"
            )
        return img.convert("RGB")


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _route_library_logs(quiet: bool) -> None:
    """diffusers and transformers write with handlers of their own: through the root
    logger, their records take the configured format (one JSON object per line). Their
    progress bars are noise in a bot's log, and below INFO so is their advice."""
    import diffusers
    import transformers

    for library in (diffusers.utils.logging, transformers.utils.logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()
        if quiet:
            library.set_verbosity_error()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engine.worker")
    parser.add_argument("--base", default="tiny")
    parser.add_argument("--family", default="auto")
    parser.add_argument("--models-dir", type=Path, required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    # NudeNet class -> threshold, as JSON; "{}" screens nothing.
    parser.add_argument("--blocked-classes", default="{}")
    parser.add_argument("--keep-blocked", action="store_true")
    # The ControlNet of edge control: "auto", "" (none), a directory or a hub id.
    parser.add_argument("--controlnet", default="auto")
    parser.add_argument("--inpainting", default="")
    parser.add_argument("--certificate", type=Path, required=True)
    parser.add_argument("--private-key", type=Path, required=True)
    parser.add_argument("--quantize", choices=QUANTIZE_MODES, default="none")
    parser.add_argument("--cpu-offload", action="store_true")
    parser.add_argument("--no-gradient-checkpointing", action="store_true")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="auto")
    parser.add_argument("--lora-prefetch", choices=PREFETCH_MODES, default="auto")
    # Pictures in one batch at most; 0: 8 on CUDA, 1 (no batches) elsewhere.
    parser.add_argument("--batch", type=int, default=0)
    args = parser.parse_args(argv)
    configure_logging(
        args.log_level, args.log_format, fmt="%(asctime)s %(levelname)s engine: %(message)s"
    )
    # The protocol owns the real stdout; everything else printed lands on stderr.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _route_library_logs(quiet=logging.getLogger().getEffectiveLevel() > logging.INFO)
    worker = Worker(args, out)
    reader = threading.Thread(target=worker.read_commands, args=(sys.stdin.buffer,), daemon=True)
    reader.start()
    try:
        worker.serve()
    except BrokenPipeError:
        _log.warning("the bot is gone: the engine stops")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
