"""Preview samples during training: the trigger's portrait at a fixed seed."""

from __future__ import annotations

import torch
from PIL import Image

from engine.models.pipeline import Pipeline
from engine.training.spec import TrainingRequest

__all__ = ["SAMPLE_STEPS", "render_sample"]

SAMPLE_STEPS = 20  # enough for a recognisable preview with DDIM-like schedulers


@torch.no_grad()
def render_sample(pipeline: Pipeline, request: TrainingRequest, *, seed: int) -> Image.Image:
    """One image of "a photo of <trigger> <class>" with the adapter being trained."""
    pipeline.unet.eval()
    result = pipeline(
        f"a photo of {request.trigger} {request.class_word}",
        num_inference_steps=SAMPLE_STEPS,
        generator=torch.Generator("cpu").manual_seed(seed),
    )
    image = result.images[0]
    if not isinstance(image, Image.Image):
        raise TypeError(f"the pipeline returned a {type(image).__name__}, not a PIL image")
    return image
