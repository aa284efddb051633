"""The wire between the bot process and the engine process: one JSON object per line.

The bot sends commands on the engine's stdin; the engine answers with events on its
stdout. A job command carries the job's request in its versioned JSON form
(engine.jobs) and the local files the engine reads and writes for it. Both sides import
this module, which imports neither torch nor diffusers.
"""

from __future__ import annotations

import json
import typing
from typing import Literal, NotRequired, TypedDict, cast

__all__ = [
    "BatchCommand",
    "BlockedImage",
    "Command",
    "ControlCommand",
    "Event",
    "GenerateCommand",
    "GenerateFiles",
    "Generated",
    "OutputImage",
    "PrefetchCommand",
    "PrefetchFile",
    "TrainCommand",
    "TrainFiles",
    "Trained",
    "decode_command",
    "decode_event",
    "encode",
]


class TrainFiles(TypedDict):
    images: list[str]  # square face crops at the family's resolution, in request order
    output: str  # where the LoRA file goes
    checkpoint_dir: str  # resumable checkpoints; a restarted job resumes from the newest


class GenerateFiles(TypedDict):
    lora: str | None  # the request's model file, when it names one
    out_dir: str
    # The request's style files, in the order of its styles (absent: no styles).
    styles: NotRequired[list[str]]
    # The request's attached pictures (engine.jobs.ATTACHMENTS), each present only when
    # the request names it: the picture to redraw, its inpainting mask, the edge picture.
    source: NotRequired[str | None]
    mask: NotRequired[str | None]
    edges: NotRequired[str | None]


class TrainCommand(TypedDict):
    op: Literal["train"]
    job_id: int
    request: str  # engine.jobs.TrainRequest, encoded
    files: TrainFiles


class GenerateCommand(TypedDict):
    op: Literal["generate"]
    job_id: int
    request: str  # engine.jobs.ImagineRequest, encoded
    files: GenerateFiles


class BatchCommand(TypedDict):
    """Picture jobs run together, in one denoising batch where they can share one
    (engine.generation.together); each job still ends with its own event."""

    op: Literal["batch"]
    jobs: list[GenerateCommand]


class ControlCommand(TypedDict):
    op: Literal["cancel", "yield", "shutdown"]
    job_id: NotRequired[int]


class ForgetCommand(TypedDict):
    """Drop these models from the engine's memory: their user was erased. Answered with
    a "forgotten" event that counts the ones it held."""

    op: Literal["forget"]
    sha256s: list[str]


class PrefetchFile(TypedDict):
    path: str  # a user's model file, readable by the engine
    sha256: str  # as the bot recorded it: the engine keeps the file only if it matches


class PrefetchCommand(TypedDict):
    """Read these model files ahead, while the running job goes on: the pictures queued
    next use them (engine.generation.prefetch). Advisory: no event answers it, and an
    engine that does not read ahead ignores it."""

    op: Literal["prefetch"]
    files: list[PrefetchFile]


Command = (
    TrainCommand | GenerateCommand | BatchCommand | ControlCommand | ForgetCommand | PrefetchCommand
)


class OutputImage(TypedDict):
    path: str
    seed: int
    width: int
    height: int


class BlockedImage(TypedDict):
    """A generated image a safety filter withheld (in a generation's result)."""

    seed: int
    classes: dict[str, float]  # blocking class -> its highest score
    path: NotRequired[str]  # only when blocked images are kept for review
    # More for the review item, added on the bot's side (the likeness guard's reason).
    review: NotRequired[dict[str, str | int | float]]


class Generated(TypedDict):
    images: list[OutputImage]
    blocked: list[BlockedImage]
    prompt: str  # as the model read it, trigger word included
    seconds: float


class LikenessReport(TypedDict):
    distance: float | None  # None: no face in the validation pictures
    faces: int
    samples: int
    step: int  # the step whose weights were kept
    pictures: list[str]  # its validation pictures (screened and marked)


class Trained(TypedDict):
    path: str
    sha256: str
    steps: int
    loss: float
    recipe: dict[str, int | float]
    family: str
    # The likeness of the weights kept, when the request asked for it.
    likeness: NotRequired[LikenessReport]


EventName = Literal[
    "ready", "progress", "checking", "sample", "done", "stopped", "failed", "forgotten"
]


class Event(TypedDict):
    event: EventName
    job_id: NotRequired[int]
    step: NotRequired[int]
    total: NotRequired[int]
    loss: NotRequired[float]
    eta: NotRequired[float]
    path: NotRequired[str]  # a sample image
    reason: NotRequired[Literal["cancel", "yield"]]
    error: NotRequired[str]
    # With "progress" and "done" on CUDA: bytes of GPU memory the engine holds.
    gpu_memory: NotRequired[int]
    # With "ready": how many pictures the engine makes in one batch (1: one job a run),
    # and whether it reads the models a `prefetch` command names (else it ignores it).
    batch: NotRequired[int]
    prefetch: NotRequired[bool]
    # With "forgotten": how many of the models named it held.
    count: NotRequired[int]
    # With "done", by the job's kind:
    generated: NotRequired[Generated]
    trained: NotRequired[Trained]


def encode(message: Command | Event) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")


def _object(line: bytes) -> dict[str, object]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError(f"protocol message is not an object: {line[:80]!r}")
    return value


def decode_command(line: bytes) -> Command:
    value = _object(line)
    ops = ("train", "generate", "batch", "cancel", "yield", "shutdown", "forget", "prefetch")
    if value.get("op") not in ops:
        raise ValueError(f"unknown command: {line[:80]!r}")
    # Both ends are this program: the shape is this module's, the op checked above.
    return cast(Command, value)


def decode_event(line: bytes) -> Event:
    value = _object(line)
    if value.get("event") not in typing.get_args(EventName):
        raise ValueError(f"unknown event: {line[:80]!r}")
    return cast(Event, value)
