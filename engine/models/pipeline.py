"""The typed face of a diffusers Stable Diffusion (XL) pipeline, as the engine uses it."""

from __future__ import annotations

from typing import Any, Protocol

import torch

__all__ = ["Pipeline"]


class Pipeline(Protocol):
    """What the engine uses of a StableDiffusion(XL)Pipeline.

    diffusers registers a pipeline's components as attributes at run time and leaves most
    methods untyped, so this protocol states the part the engine relies on; the
    components themselves are typed Any for the same reason.
    """

    unet: Any  # UNet2DConditionModel
    vae: Any  # AutoencoderKL
    tokenizer: Any  # CLIPTokenizer (SDXL: the first of two)
    text_encoder: Any  # CLIPTextModel (SDXL: the first of two)
    scheduler: Any
    vae_scale_factor: int
    config: Any

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def encode_prompt(self, *args: Any, **kwargs: Any) -> Any: ...
    def load_lora_weights(self, path: str, adapter_name: str) -> None: ...
    def set_adapters(self, names: list[str], adapter_weights: list[float]) -> None: ...
    def enable_lora(self) -> None: ...
    def disable_lora(self) -> None: ...
    def delete_adapters(self, names: str | list[str]) -> None: ...
    def load_textual_inversion(self, embedding: Any, **kwargs: Any) -> None: ...
    def unload_textual_inversion(self, **kwargs: Any) -> None: ...
    def to(self, device: torch.device) -> Any: ...
    def set_progress_bar_config(self, **kwargs: Any) -> None: ...
    @classmethod
    def save_lora_weights(cls, save_directory: str, **kwargs: Any) -> None: ...
