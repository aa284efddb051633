"""Image sizes: an aspect ratio around the base model's native resolution."""

from __future__ import annotations

import math

from engine.generation.spec import ASPECT_RATIOS
from engine.models.pipeline import Pipeline

__all__ = ["native_resolution", "size_for"]

_MULTIPLE = 8  # diffusers' pipelines require width and height divisible by 8


def native_resolution(pipeline: Pipeline) -> int:
    """The square side the model was trained at, as diffusers computes its default size."""
    return int(pipeline.unet.config.sample_size) * int(pipeline.vae_scale_factor)


def size_for(resolution: int, aspect_ratio: str) -> tuple[int, int]:
    """(width, height) of about `resolution`² pixels in `aspect_ratio`, multiples of 8."""
    w_part, h_part = ASPECT_RATIOS[aspect_ratio]
    ratio = w_part / h_part
    width = resolution * math.sqrt(ratio)
    height = resolution / math.sqrt(ratio)
    return _snap(width), _snap(height)


def _snap(value: float) -> int:
    return max(_MULTIPLE, round(value / _MULTIPLE) * _MULTIPLE)
