"""Image sizes: an aspect ratio around the base model's native resolution."""

from __future__ import annotations

import math

from engine.generation.spec import ASPECT_RATIOS
from engine.models.pipeline import Pipeline, is_flux

__all__ = ["native_resolution", "size_for", "size_multiple"]

_MULTIPLE = 8  # diffusers' pipelines require width and height divisible by 8


def native_resolution(pipeline: Pipeline) -> int:
    """The square side the model was trained at, as diffusers computes its default size
    (FLUX's transformer has no sample size; its VAE's is the model's, 1024 for FLUX.1)."""
    if is_flux(pipeline):
        return int(pipeline.vae.config.sample_size)
    return int(pipeline.unet.config.sample_size) * int(pipeline.vae_scale_factor)


def size_multiple(pipeline: Pipeline) -> int:
    """What width and height must be multiples of: 8, and 16 for FLUX, which packs its
    latents into 2x2 patches."""
    return _MULTIPLE * 2 if is_flux(pipeline) else _MULTIPLE


def size_for(resolution: int, aspect_ratio: str, multiple: int = _MULTIPLE) -> tuple[int, int]:
    """(width, height) of about `resolution`² pixels in `aspect_ratio`, multiples of
    `multiple`."""
    w_part, h_part = ASPECT_RATIOS[aspect_ratio]
    ratio = w_part / h_part
    width = resolution * math.sqrt(ratio)
    height = resolution / math.sqrt(ratio)
    return _snap(width, multiple), _snap(height, multiple)


def _snap(value: float, multiple: int) -> int:
    return max(multiple, round(value / multiple) * multiple)
