"""FLUX's training objective: rectified flow matching, as diffusers'
train_dreambooth_lora_flux.py trains it.

The clean latents x and the noise n are mixed at a time sigma drawn uniformly (the
script's default weighting "none"), x_t = (1 - sigma) x + sigma n, and the transformer
predicts the velocity n - x. Latents are packed into 2x2 patches as the pipeline packs
them, and the guidance the transformer is told is 1, as both the diffusers script and
kohya's flux_train_network train FLUX.1-dev.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import FluxPipeline

from engine.models.pipeline import Pipeline, denoiser, t5_length
from engine.training.data import LatentCache

__all__ = ["TRAINING_GUIDANCE", "FluxConditioning", "encode_flux_captions", "flow_matching_loss"]

TRAINING_GUIDANCE = 1.0


@dataclass(frozen=True, slots=True)
class FluxConditioning:
    hidden: torch.Tensor  # T5's hidden states: (captions, tokens, dim)
    pooled: torch.Tensor  # CLIP's pooled output: (captions, dim)
    text_ids: torch.Tensor  # the text tokens' positions for the rotary embedding

    def transformer_kwargs(self, index: torch.Tensor) -> dict[str, object]:
        """Keyword arguments of the transformer's forward for the captions at `index`."""
        return {
            "encoder_hidden_states": self.hidden[index],
            "pooled_projections": self.pooled[index],
            "txt_ids": self.text_ids,
        }


@torch.no_grad()
def encode_flux_captions(pipeline: Pipeline, captions: list[str]) -> FluxConditioning:
    hidden, pooled, text_ids = pipeline.encode_prompt(
        captions,
        prompt_2=None,
        device=denoiser(pipeline).device,
        num_images_per_prompt=1,
        max_sequence_length=t5_length(pipeline),
    )
    return FluxConditioning(hidden, pooled, text_ids)


def flow_matching_loss(
    transformer: Any,
    scheduler: Any,
    latents: LatentCache,
    conditioning: FluxConditioning,
    caption: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The flow-matching objective on one batch of cached latents."""
    device, dtype = transformer.device, transformer.dtype
    batch = len(caption)
    index = torch.randint(len(latents), (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    model_input = latents.sample(index, flip, generator).to(device)
    noise = torch.randn(model_input.shape, generator=generator).to(device)
    # A fresh scheduler's timesteps run from num_train_timesteps down to 1, unshifted.
    steps = torch.randint(scheduler.config.num_train_timesteps, (batch,), generator=generator)
    timesteps = scheduler.timesteps[steps].to(device)
    sigmas = scheduler.sigmas[steps].to(device).view(batch, 1, 1, 1)
    noisy = (1.0 - sigmas) * model_input + sigmas * noise
    _, channels, height, width = noisy.shape
    packed = FluxPipeline._pack_latents(noisy, batch, channels, height, width)
    image_ids = FluxPipeline._prepare_latent_image_ids(
        batch, height // 2, width // 2, device, dtype
    )
    guidance = None
    if transformer.config.guidance_embeds:
        guidance = torch.full((batch,), TRAINING_GUIDANCE, device=device, dtype=dtype)
    half = device.type == "cuda" and dtype != torch.float32
    with torch.autocast("cuda", dtype=dtype, enabled=half):
        pred = transformer(
            hidden_states=packed.to(dtype),
            timestep=timesteps / 1000,
            guidance=guidance,
            img_ids=image_ids,
            return_dict=False,
            **conditioning.transformer_kwargs(caption.to(device)),
        )[0]
    scale = 8  # the pixel size the unpacking assumes for each latent
    pred = FluxPipeline._unpack_latents(pred, height * scale, width * scale, scale)
    return F.mse_loss(pred.float(), (noise - model_input).float(), reduction="mean")
