"""The training set: captions, and the face crops as VAE latents cached before the loop.

Each crop is encoded twice, as it is and mirrored, so the random horizontal flip costs
nothing per step. The latent distribution (mean and std) is kept and sampled each step,
as diffusers' train_dreambooth_lora.py does with --cache_latents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from engine.models.pipeline import Pipeline

__all__ = ["CAPTION_TEMPLATES", "LatentCache", "captions_for", "encode_images", "to_tensor"]

# A little variety around the DreamBooth instance prompt "a photo of <trigger> <class>".
CAPTION_TEMPLATES: tuple[str, ...] = (
    "a photo of {trigger} {cls}",
    "a close-up photo of {trigger} {cls}",
    "a portrait photo of {trigger} {cls}",
    "a picture of {trigger} {cls}, looking at the camera",
    "a cropped photo of the face of {trigger} {cls}",
)
_ENCODE_BATCH = 8


def captions_for(trigger: str, class_word: str) -> list[str]:
    return [t.format(trigger=trigger, cls=class_word) for t in CAPTION_TEMPLATES]


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a (3, H, W) float tensor in [-1, 1], the VAE's input range."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@dataclass(frozen=True, slots=True)
class LatentCache:
    # (2, images, C, h, w): index 0 as given, 1 mirrored.
    mean: torch.Tensor
    std: torch.Tensor
    scaling_factor: float
    shift_factor: float = 0.0  # FLUX's VAE centres its latents before scaling them

    def __len__(self) -> int:
        return int(self.mean.shape[1])

    def sample(
        self, index: torch.Tensor, flip: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Scaled latents of the images at `index`, mirrored where `flip` is true."""
        mean = self.mean[flip.long(), index]
        std = self.std[flip.long(), index]
        eps = torch.randn(mean.shape, generator=generator).to(mean.device, mean.dtype)
        return (mean + std * eps - self.shift_factor) * self.scaling_factor


@torch.no_grad()
def encode_images(pipeline: Pipeline, images: Sequence[Image.Image]) -> LatentCache:
    vae = pipeline.vae
    pixels = torch.stack([to_tensor(img) for img in images])
    means: list[torch.Tensor] = []
    stds: list[torch.Tensor] = []
    for batch in (pixels, pixels.flip(-1)):
        for chunk in torch.split(batch, _ENCODE_BATCH):
            dist = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
    n = len(images)
    mean = torch.cat(means).reshape(2, n, *means[0].shape[1:])
    std = torch.cat(stds).reshape(2, n, *stds[0].shape[1:])
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)
    return LatentCache(mean, std, float(vae.config.scaling_factor), shift)
