"""The wire between the bot process and the engine process: one JSON object per line.

The bot sends commands on the engine's stdin; the engine answers with events on its
stdout. Both sides import this module, which imports neither torch nor diffusers.
"""

from __future__ import annotations

import json
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "BlockedImage",
    "Command",
    "Event",
    "GenerateParams",
    "LoraParams",
    "PriorParams",
    "TrainParams",
    "decode",
    "encode",
]


class LoraParams(TypedDict):
    path: str
    sha256: str
    trigger: str


class PriorParams(TypedDict):
    class_images: int  # made once per base model by the base model, then cached
    weight: float


class TrainParams(TypedDict):
    images: list[str]  # square face crops at the family's resolution
    trigger: str
    output: str  # where the LoRA file goes
    checkpoint_dir: str  # resumable checkpoints; a restarted job resumes from the newest
    seed: int
    steps: NotRequired[int]
    checkpoint_every: int
    sample_every: int
    recipe: NotRequired[dict[str, int | float]]
    prior: NotRequired[PriorParams]


class VariationParams(TypedDict):
    seed: int
    strength: float


class GenerateParams(TypedDict):
    prompt: str
    negative_prompt: str
    seed: int | None
    steps: int
    guidance: float
    aspect_ratio: str
    count: int
    lora: LoraParams | None
    out_dir: str
    variation: NotRequired[VariationParams]


class BlockedImage(TypedDict):
    """A generated image a safety filter withheld (in a generation's result)."""

    seed: int
    classes: dict[str, float]  # blocking class -> its highest score
    path: NotRequired[str]  # only when blocked images are kept for review
    # More for the review item, added on the bot's side (the likeness guard's reason).
    review: NotRequired[dict[str, Any]]


class Command(TypedDict):
    op: Literal["train", "generate", "cancel", "yield", "shutdown"]
    job_id: NotRequired[int]
    params: NotRequired[Any]  # TrainParams or GenerateParams, by op


class Event(TypedDict):
    event: Literal["ready", "progress", "sample", "done", "stopped", "failed"]
    job_id: NotRequired[int]
    step: NotRequired[int]
    total: NotRequired[int]
    loss: NotRequired[float]
    eta: NotRequired[float]
    path: NotRequired[str]  # a sample image
    reason: NotRequired[Literal["cancel", "yield"]]
    error: NotRequired[str]
    result: NotRequired[dict[str, Any]]


def encode(message: Command | Event) -> bytes:
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes) -> dict[str, Any]:
    value = json.loads(line)
    if not isinstance(value, dict):
        raise ValueError(f"protocol message is not an object: {line[:80]!r}")
    return value
