"""Pictures of the model being trained: a preview sample of the trigger's portrait at a
fixed seed, and the validation pictures its likeness is measured on."""

from __future__ import annotations

import torch
from PIL import Image

from engine.models.pipeline import Pipeline, denoiser, text_options
from engine.training.spec import TrainingRequest

__all__ = [
    "SAMPLE_STEPS",
    "VALIDATION_SEEDS",
    "VALIDATION_STEPS",
    "render_sample",
    "render_validation",
]

SAMPLE_STEPS = 20  # enough for a recognisable preview with DDIM-like schedulers
# The likeness is measured on four pictures at fixed seeds, made with few steps: a face
# is recognisable long before the details are finished.
VALIDATION_SEEDS = (0, 1, 2, 3)
VALIDATION_STEPS = 12


@torch.no_grad()
def render_sample(pipeline: Pipeline, request: TrainingRequest, *, seed: int) -> Image.Image:
    """One image of "a photo of <trigger> <class>" with the adapter being trained."""
    denoiser(pipeline).eval()
    result = pipeline(
        f"a photo of {request.trigger} {request.class_word}",
        num_inference_steps=SAMPLE_STEPS,
        generator=torch.Generator("cpu").manual_seed(seed),
        **text_options(pipeline),
    )
    image = result.images[0]
    if not isinstance(image, Image.Image):
        raise TypeError(f"the pipeline returned a {type(image).__name__}, not a PIL image")
    return image


@torch.no_grad()
def render_validation(pipeline: Pipeline, request: TrainingRequest) -> list[Image.Image]:
    """The validation pictures: "a photo of <trigger> <class>" at VALIDATION_SEEDS."""
    denoiser(pipeline).eval()
    result = pipeline(
        f"a photo of {request.trigger} {request.class_word}",
        num_inference_steps=VALIDATION_STEPS,
        num_images_per_prompt=len(VALIDATION_SEEDS),
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in VALIDATION_SEEDS],
        **text_options(pipeline),
    )
    images = list(result.images)
    if not all(isinstance(image, Image.Image) for image in images):
        raise TypeError("the pipeline returned something other than PIL images")
    return images
