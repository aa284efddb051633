"""Memory options for large models on a GPU, named in the config's [engine] section.

FLUX.1's transformer alone is 12B parameters (24 GB in bf16). Three standard ways keep
it within one GPU: diffusers' model CPU offload (each model moves to the GPU only while
it runs), gradient checkpointing during training (engine.training.trainer), and storing
the transformer's weights in fp8 with torchao (weight-only: the matmuls still run in
bf16). Torch-free at import: the bot validates the names without loading torch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["QUANTIZE_MODES", "MemoryOptions", "place", "whole_on_device"]

_log = logging.getLogger(__name__)

QUANTIZE_MODES = ("none", "fp8")


@dataclass(frozen=True, slots=True)
class MemoryOptions:
    cpu_offload: bool = False
    gradient_checkpointing: bool = True
    quantize: str = "none"

    def __post_init__(self) -> None:
        if self.quantize not in QUANTIZE_MODES:
            raise ValueError(
                f"quantize must be one of {', '.join(QUANTIZE_MODES)}, got {self.quantize!r}"
            )


def place(pipeline: Any, device: Any, options: MemoryOptions) -> None:
    """Put `pipeline` on `device` as `options` say: quantized first, then moved whole, or
    offloaded model by model. Both options need a CUDA device; on a CPU they are
    refused rather than silently ignored, since they change what runs."""
    cuda = device.type == "cuda"
    if (options.quantize != "none" or options.cpu_offload) and not cuda:
        raise ValueError(
            "engine.quantize and engine.cpu_offload are for CUDA GPUs; this engine runs "
            f"on {device}: turn them off"
        )
    if options.quantize == "fp8":
        _fp8(pipeline)
    if options.cpu_offload:
        pipeline.enable_model_cpu_offload(device=device)
    else:
        pipeline.to(device)


def _fp8(pipeline: Any) -> None:
    transformer = getattr(pipeline, "transformer", None)
    if transformer is None:
        raise ValueError('engine.quantize = "fp8" is for FLUX\'s transformer; this model has none')
    try:
        from torchao.quantization import (  # type: ignore[import-not-found]
            Float8WeightOnlyConfig,
            quantize_,
        )
    except ImportError:
        raise ValueError(
            'engine.quantize = "fp8" needs torchao: pip install torchao, or set it to "none"'
        ) from None
    quantize_(transformer, Float8WeightOnlyConfig())
    _log.info("FLUX's transformer stored in fp8 (torchao, weight-only)")


@contextlib.contextmanager
def whole_on_device(pipeline: Any, device: Any, options: MemoryOptions) -> Iterator[None]:
    """The whole pipeline on `device` while a training runs, offloaded again after.

    A training keeps the denoiser, its LoRA and the optimizer's state on the GPU for
    every step; the offload hooks would move them back and forth between the steps and
    the preview samples, leaving the optimizer's state on another device than its
    parameters.
    """
    if not options.cpu_offload:
        yield
        return
    pipeline.remove_all_hooks()
    pipeline.to(device)
    try:
        yield
    finally:
        pipeline.enable_model_cpu_offload(device=device)
