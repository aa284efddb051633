"""The pipelines of the picture tools, each made once from the loaded pipeline with
diffusers' `from_pipe` (the same modules, so the same adapters and no second copy of the
weights): image-to-image, inpainting and edge control (ControlNet); and the pictures they
start from, fitted to the generation's size.

Inpainting with a regular base model blends the latents outside the mask back to the
source's at every step (diffusers does this for a UNet with 4 input channels), so a
user's LoRA works with it as it does with text-to-image. A dedicated inpainting UNet,
when the deployment has one, takes the mask as input instead; the user's LoRA is loaded
into it as well (its layers are the base UNet's).
"""

from __future__ import annotations

import weakref
from typing import Any, cast

import cv2
import numpy as np
from diffusers import (
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    ControlNetModel,
    UNet2DConditionModel,
)
from PIL import Image, ImageOps

from engine.models.pipeline import Pipeline

__all__ = [
    "CANNY_THRESHOLDS",
    "canny_edges",
    "edge_control",
    "fit_source",
    "image_to_image",
    "inpainting",
]

_MADE: weakref.WeakKeyDictionary[Pipeline, dict[object, Any]] = weakref.WeakKeyDictionary()

# OpenCV's hysteresis thresholds of the Canny detector, as ControlNet's canny model was
# trained with (lllyasviel's annotator uses 100 and 200).
CANNY_THRESHOLDS = (100, 200)


def _made(pipeline: Pipeline, key: object, make: Any) -> Pipeline:
    made = _MADE.setdefault(pipeline, {})
    if key not in made:
        pipe = make()
        pipe.set_progress_bar_config(disable=True)
        made[key] = pipe
    return cast(Pipeline, made[key])


def image_to_image(pipeline: Pipeline) -> Pipeline:
    """The img2img pipeline of `pipeline`'s family over the same modules."""
    return _made(pipeline, "img2img", lambda: AutoPipelineForImage2Image.from_pipe(pipeline))


def inpainting(pipeline: Pipeline, unet: UNet2DConditionModel | None = None) -> Pipeline:
    """The inpainting pipeline of `pipeline`'s family over the same modules, or over
    the same modules but a dedicated inpainting `unet` (engine.models.inpainting)."""
    if unet is None:
        return _made(pipeline, "inpaint", lambda: AutoPipelineForInpainting.from_pipe(pipeline))
    return _made(pipeline, unet, lambda: AutoPipelineForInpainting.from_pipe(pipeline, unet=unet))


def edge_control(pipeline: Pipeline, controlnet: ControlNetModel) -> Pipeline:
    """The family's ControlNet pipeline over the same modules, with `controlnet`."""
    return _made(
        pipeline,
        controlnet,
        lambda: AutoPipelineForText2Image.from_pipe(pipeline, controlnet=controlnet),
    )


def fit_source(source: Image.Image, width: int, height: int) -> Image.Image:
    """The source cropped around its centre to width:height and resized to that size."""
    return ImageOps.fit(source.convert("RGB"), (width, height), Image.Resampling.LANCZOS)


def fit_mask(mask: Image.Image, width: int, height: int) -> Image.Image:
    """A mask cropped and resized as its source is (`fit_source`), as grey levels."""
    return ImageOps.fit(mask.convert("L"), (width, height), Image.Resampling.BILINEAR)


def canny_edges(image: Image.Image, width: int, height: int) -> Image.Image:
    """The Canny edges of `image` fitted to width x height: white lines on black, RGB."""
    grey = np.asarray(fit_source(image, width, height).convert("L"))
    edges = cv2.Canny(grey, *CANNY_THRESHOLDS)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))
