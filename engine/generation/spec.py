"""What a generation is asked for, and what it returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PIL import Image

from engine.jobs import STRENGTH, ImagineRequest, StyleRef, Variation, tool_of
from engine.limits import ASPECT_RATIOS, MAX_IMAGES

__all__ = [
    "ASPECT_RATIOS",
    "MAX_IMAGES",
    "GeneratedImage",
    "GenerationRequest",
    "GenerationResult",
    "LoraRef",
    "PreviewFn",
    "StepFn",
    "StyleLora",
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
class StyleLora:
    """A style LoRA file from the library, mixed in at `weight`; its `trigger` words are
    added to the prompt (when the weight is above 0). Checked before its first load
    (engine.models.styles) and against its sha256 at every load."""

    path: Path
    sha256: str
    name: str
    weight: float = 1.0
    trigger: str = ""


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
    styles: tuple[StyleLora, ...] = ()
    # Image-to-image: the picture to start from (cropped to the aspect ratio and sized
    # like a text-to-image picture), noised `strength` of the way and denoised again.
    source: Image.Image | None = None
    strength: float = STRENGTH.default
    # Inpainting: a mask for the source (white: repaint), any size (fitted like the source).
    mask: Image.Image | None = None
    # Edge control: a picture whose canny edges the new picture follows (text-to-image).
    edges: Image.Image | None = None
    # Upscale: the source made this many times larger, then redrawn at `strength`.
    upscale: int = 1

    @property
    def tool(self) -> str:
        """Which of engine.jobs.TOOLS this is (as the job's request says)."""
        return tool_of(self.source, self.mask, self.edges, self.upscale)


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
    """Raise ValueError naming the bad value and what is allowed (the job contract's rules)."""
    variation = None
    if request.variation_seed is not None or request.variation_strength:
        variation = Variation(request.variation_seed or 0, request.variation_strength)
    ImagineRequest(
        prompt=request.prompt,
        negative=request.negative_prompt,
        seed=request.seed,
        steps=request.steps,
        guidance=request.guidance,
        aspect_ratio=request.aspect_ratio,
        count=request.count,
        variation=variation,
        styles=tuple(
            StyleRef(style.name, "-", style.sha256, style.weight, style.trigger)
            for style in request.styles
        ),
        source=None if request.source is None else "-",
        strength=request.strength,
        mask=None if request.mask is None else "-",
        edges=None if request.edges is None else "-",
        upscale=request.upscale,
    ).check()
    lora = request.lora
    if lora is not None:
        if not lora.trigger.isalnum():
            raise ValueError(f"trigger must be one alphanumeric word, got {lora.trigger!r}")
        if not 0.0 <= lora.scale <= 2.0:
            raise ValueError(f"LoRA scale must be 0 to 2, got {lora.scale!r}")
