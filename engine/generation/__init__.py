"""Generation: text-to-image and image-to-image with a user's LoRA and styles, marked as
AI-generated."""

from engine.generation.adapters import LoraCache
from engine.generation.generate import generate, with_styles, with_trigger
from engine.generation.png import AI_STATEMENT, encode_png_with_metadata
from engine.generation.sizes import native_resolution, size_for
from engine.generation.spec import (
    ASPECT_RATIOS,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    LoraRef,
    StepFn,
    StyleLora,
)

__all__ = [
    "AI_STATEMENT",
    "ASPECT_RATIOS",
    "GeneratedImage",
    "GenerationRequest",
    "GenerationResult",
    "LoraCache",
    "LoraRef",
    "StepFn",
    "StyleLora",
    "encode_png_with_metadata",
    "generate",
    "native_resolution",
    "size_for",
    "with_styles",
    "with_trigger",
]
