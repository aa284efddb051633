"""Text conditioning for the UNet, computed once per caption before the training loop.

SD1.x needs the text encoder's hidden states; SDXL also needs the pooled embedding of its
second encoder and the "time ids" (original size, crop offset, target size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import StableDiffusionXLPipeline

from engine.models.pipeline import Pipeline, denoiser

__all__ = ["Conditioning", "LiveCaptions", "encode_captions"]


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


class LiveCaptions:
    """Captions tokenized once and encoded at every step, with gradients: a token in them
    is being learned (engine.training.embedding). The same outputs as `encode_prompt`:
    SD 1.x the last hidden state; SDXL both encoders' penultimate ones side by side and
    the second's pooled projection."""

    def __init__(self, pipeline: Pipeline, captions: list[str], resolution: int) -> None:
        self.resolution = resolution
        self.xl = isinstance(pipeline, StableDiffusionXLPipeline)
        pairs = [(pipeline.tokenizer, pipeline.text_encoder)]
        if self.xl:
            pairs.append((pipeline.tokenizer_2, pipeline.text_encoder_2))  # type: ignore[attr-defined]
        device = denoiser(pipeline).device
        self.encoders = []
        for tokenizer, encoder in pairs:
            ids = tokenizer(
                captions,
                padding="max_length",
                max_length=tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            self.encoders.append((encoder, ids.to(device)))

    def __call__(self, index: torch.Tensor) -> Conditioning:
        """The conditioning of the captions at `index`, in that order."""
        if not self.xl:
            encoder, ids = self.encoders[0]
            return Conditioning(encoder(ids[index])[0], None, self.resolution)
        hidden, pooled = [], None
        for encoder, ids in self.encoders:
            out = encoder(ids[index], output_hidden_states=True)
            if out[0].ndim == 2:
                pooled = out[0]
            hidden.append(out.hidden_states[-2])
        return Conditioning(torch.concat(hidden, dim=-1), pooled, self.resolution)


@torch.no_grad()
def encode_captions(pipeline: Pipeline, captions: list[str], resolution: int) -> Conditioning:
    device = denoiser(pipeline).device
    if isinstance(pipeline, StableDiffusionXLPipeline):
        hidden, _, pooled, _ = pipeline.encode_prompt(
            captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )
        return Conditioning(hidden, pooled, resolution)
    hidden, _ = pipeline.encode_prompt(
        captions, device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    return Conditioning(hidden, None, resolution)
