"""Cheap previews during generation: latents mapped to RGB by a fixed linear projection.

Decoding with the VAE at every preview would cost as much as a denoising step; a 4x3
matrix fitted to SD's latent space gives a blurry but recognisable picture for free.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

__all__ = ["LATENT_RGB", "latents_to_preview"]

# Rows: the 4 latent channels; columns: R, G, B. SD1.x / SD2 VAE (widely used
# approximation from ComfyUI's and A1111's live previews); the tiny model reuses it.
LATENT_RGB = (
    (0.298, 0.207, 0.208),
    (0.187, 0.286, 0.173),
    (-0.158, 0.189, 0.264),
    (-0.184, -0.271, -0.473),
)
# The SDXL VAE's latent space differs (same sources).
LATENT_RGB_SDXL = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)


def latents_to_preview(latents: torch.Tensor, *, sdxl: bool = False, scale: int = 8) -> Image.Image:
    """A preview of the first latent of a batch (channels, h, w), `scale` times larger."""
    factors = torch.tensor(LATENT_RGB_SDXL if sdxl else LATENT_RGB, dtype=torch.float32)
    first = latents[0].detach().float().cpu()
    rgb = torch.einsum("chw,cr->hwr", first, factors)
    pixels = ((rgb.clamp(-1, 1) + 1) * 127.5).numpy().astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.BILINEAR)
