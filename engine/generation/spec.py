"""What a generation is asked for, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

from engine.limits import (
    ASPECT_RATIOS,
    MAX_GUIDANCE,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MAX_STEPS,
)

__all__ = [
    "ASPECT_RATIOS",
    "MAX_IMAGES",
    "GeneratedImage",
    "GenerationRequest",
    "GenerationResult",
    "LoraRef",
    "PreviewFn",
    "StepFn",
    "check_request",
]

# (denoising step just finished, total steps)
StepFn = Callable[[int, int], None]
# (denoising step just finished, a cheap preview of the first image)
PreviewFn = Callable[[int, "Image.Image"], None]


@dataclass(frozen=True, slots=True)
class LoraRef:
    """A user's trained LoRA file; `sha256` both checks the file and keys the cache."""

    path: Path
    sha256: str
    trigger: str
    class_word: str = "person"
    scale: float = 1.0


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    prompt: str
    lora: LoraRef | None = None
    negative_prompt: str = ""
    # None: a random seed, reported in the result. Image i uses seed + i.
    seed: int | None = None
    steps: int = 30
    guidance: float = 7.0
    aspect_ratio: str = "1:1"
    count: int = 1
    # Variations of the picture made with `variation_seed`: its starting noise blended
    # (spherically) with each image's own, `variation_strength` of the way (0 = the same).
    variation_seed: int | None = None
    variation_strength: float = 0.0


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    png: bytes  # carries the parameters and the AI-generated statement
    seed: int
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class GenerationResult:
    images: tuple[GeneratedImage, ...]
    prompt: str  # as given to the model, trigger included
    parameters: dict[str, str | int | float]  # as written into each PNG (seed: the first's)
    seconds: float  # time spent in the pipeline


def check_request(request: GenerationRequest) -> None:
    """Raise ValueError naming the bad value and what is allowed."""
    if not request.prompt.strip():
        raise ValueError("prompt is empty")
    if len(request.prompt) > MAX_PROMPT_CHARS:
        raise ValueError(f"prompt has {len(request.prompt)} characters, at most {MAX_PROMPT_CHARS}")
    if not 1 <= request.steps <= MAX_STEPS:
        raise ValueError(f"steps must be 1 to {MAX_STEPS}, got {request.steps!r}")
    if not 0.0 <= request.guidance <= MAX_GUIDANCE:
        raise ValueError(f"guidance must be 0 to {MAX_GUIDANCE:g}, got {request.guidance!r}")
    if not 1 <= request.count <= MAX_IMAGES:
        raise ValueError(f"count must be 1 to {MAX_IMAGES}, got {request.count!r}")
    if request.aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(
            f"aspect ratio {request.aspect_ratio!r} is not one of {', '.join(ASPECT_RATIOS)}"
        )
    if request.seed is not None and not 0 <= request.seed < 2**32 - MAX_IMAGES:
        raise ValueError(f"seed must be 0 to {2**32 - MAX_IMAGES - 1}, got {request.seed!r}")
    if not 0.0 <= request.variation_strength <= 1.0:
        raise ValueError(f"variation strength must be 0 to 1, got {request.variation_strength!r}")
    if request.variation_seed is not None and not 0 <= request.variation_seed < 2**32:
        raise ValueError(f"variation seed must be 0 to {2**32 - 1}, got {request.variation_seed!r}")
    lora = request.lora
    if lora is not None:
        if not lora.trigger.isalnum():
            raise ValueError(f"trigger must be one alphanumeric word, got {lora.trigger!r}")
        if not 0.0 <= lora.scale <= 2.0:
            raise ValueError(f"LoRA scale must be 0 to 2, got {lora.scale!r}")
