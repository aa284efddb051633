"""Text conditioning for the UNet, computed once per caption before the training loop.

SD1.x needs the text encoder's hidden states; SDXL also needs the pooled embedding of its
second encoder and the "time ids" (original size, crop offset, target size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import StableDiffusionXLPipeline

from engine.models.pipeline import Pipeline

__all__ = ["Conditioning", "encode_captions"]


@dataclass(frozen=True, slots=True)
class Conditioning:
    hidden: torch.Tensor  # (captions, tokens, dim)
    pooled: torch.Tensor | None  # (captions, dim2), SDXL only
    resolution: int

    def unet_kwargs(self, index: torch.Tensor) -> dict[str, object]:
        """Keyword arguments of the UNet's forward for the captions at `index`."""
        kwargs: dict[str, object] = {"encoder_hidden_states": self.hidden[index]}
        if self.pooled is not None:
            res = self.resolution
            time_ids = torch.tensor([res, res, 0, 0, res, res], dtype=self.hidden.dtype)
            time_ids = time_ids.to(self.hidden.device).repeat(len(index), 1)
            kwargs["added_cond_kwargs"] = {"text_embeds": self.pooled[index], "time_ids": time_ids}
        return kwargs


def encode_captions(
    pipeline: Pipeline, captions: list[str], resolution: int, *, grad: bool = False
) -> Conditioning:
    """The captions' conditioning; with `grad`, differentiable (a learned token in them)."""
    with torch.set_grad_enabled(grad):
        return _encode(pipeline, captions, resolution)


def _encode(pipeline: Pipeline, captions: list[str], resolution: int) -> Conditioning:
    device = pipeline.unet.device
    if isinstance(pipeline, StableDiffusionXLPipeline):
        hidden, _, pooled, _ = pipeline.encode_prompt(
            captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return Conditioning(hidden, pooled, resolution)
    hidden, _ = pipeline.encode_prompt(
        captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    return Conditioning(hidden, None, resolution)
