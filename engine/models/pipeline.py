"""The typed face of a diffusers Stable Diffusion (XL) or FLUX pipeline, as the engine
uses it, and the few questions whose answers differ between them."""

from __future__ import annotations

from typing import Any, Protocol

import torch

__all__ = ["FLUX_MAX_SEQUENCE", "Pipeline", "denoiser", "is_flux", "t5_length", "text_options"]

# FLUX.1-dev's T5 prompt length, which its pipeline pads every prompt to.
FLUX_MAX_SEQUENCE = 512


class Pipeline(Protocol):
    """What the engine uses of a StableDiffusion(XL)Pipeline or a FluxPipeline.

    diffusers registers a pipeline's components as attributes at run time and leaves most
    methods untyped, so this protocol states the part the engine relies on; the
    components themselves are typed Any for the same reason.
    """

    unet: Any  # UNet2DConditionModel (not on FLUX: see `denoiser`)
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


def is_flux(pipeline: object) -> bool:
    """Whether `pipeline` is one of diffusers' FLUX pipelines (text-to-image or a tool)."""
    return type(pipeline).__name__.startswith("Flux")


def denoiser(pipeline: Pipeline) -> Any:
    """The network that denoises: SD's UNet, or FLUX's transformer."""
    return pipeline.transformer if is_flux(pipeline) else pipeline.unet  # type: ignore[attr-defined]


def text_options(pipeline: Pipeline) -> dict[str, int]:
    """Keyword arguments of a pipeline call about the prompt's length: FLUX's T5 one."""
    return {"max_sequence_length": t5_length(pipeline)} if is_flux(pipeline) else {}


def t5_length(pipeline: Pipeline) -> int:
    """The T5 prompt length a FLUX pipeline pads to: 512, or less for a smaller T5
    tokenizer (the tiny one)."""
    tokenizer: Any = pipeline.tokenizer_2  # type: ignore[attr-defined]
    return min(FLUX_MAX_SEQUENCE, int(tokenizer.model_max_length))
