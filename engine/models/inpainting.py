"""The dedicated inpainting base that `/edit` repaints with, one per deployment (config
`model.inpainting`): the UNet of the family's inpainting checkpoint, e.g.
runwayml/stable-diffusion-inpainting for SD 1.5, or
diffusers/stable-diffusion-xl-1.0-inpainting-0.1 for SDXL.

Such a UNet reads the mask and the masked picture's latents beside the noise (9 input
channels, not 4), so it fills a region in keeping with its surroundings instead of only
blending latents at the mask's edge. It shares the text encoders and the VAE of the
base, so only its UNet is read: from the `unet` folder of a local directory or hub id,
from safetensors only. "" (the default) inpaints with the base itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from diffusers import UNet2DConditionModel

from engine.models.pipeline import Pipeline

__all__ = ["INPAINTING_CHANNELS", "load_inpainting_unet"]

# Latents (4), the mask (1) and the masked picture's latents (4).
INPAINTING_CHANNELS = 9


def load_inpainting_unet(spec: str, pipeline: Pipeline) -> UNet2DConditionModel | None:
    """The inpainting UNet `spec` names (see above), checked to fit `pipeline`, on its
    device and dtype; None when `spec` is ""."""
    if not spec:
        return None
    local = Path(spec).expanduser()
    unet: Any = UNet2DConditionModel.from_pretrained(  # type: ignore[no-untyped-call]
        str(local) if local.is_dir() else spec, subfolder="unet", use_safetensors=True
    )
    config, base = unet.config, pipeline.unet.config
    if config.in_channels != INPAINTING_CHANNELS:
        raise ValueError(
            f"model.inpainting {spec!r} is not an inpainting model: its UNet takes "
            f"{config.in_channels} input channels, not {INPAINTING_CHANNELS}"
        )
    if (config.cross_attention_dim, config.sample_size) != (
        base.cross_attention_dim,
        base.sample_size,
    ):
        raise ValueError(
            f"model.inpainting {spec!r} does not fit the base model: choose the "
            "inpainting checkpoint of the base's family"
        )
    return cast(
        UNet2DConditionModel, unet.to(device=pipeline.unet.device, dtype=pipeline.unet.dtype)
    )
