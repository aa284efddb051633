"""The engine's speed settings for pictures, named in the config's [engine] section.

`compile`: the denoiser runs through `torch.compile` when it makes pictures, and users'
LoRAs are hotswapped into one slot so that switching users does not recompile
(engine.generation.hotswap). "auto" compiles on CUDA only, and there a part dynamo
cannot compile runs eagerly instead of failing the job; "on" compiles on any device and
lets errors through; "off" never compiles. Trainings always run the plain module: the
compiled graph is for inference, and a training's adapter would recompile it.

`lora_prefetch`: while a lane's engine makes pictures, the dispatcher names the models
of the pictures queued next, and the engine reads and checks their files on a thread of
its own, into CPU memory (pinned on CUDA; engine.generation.prefetch): the next user's
LoRA then loads without touching the disk. "auto" reads ahead on CUDA only, where the
denoising leaves the CPU free and pinned memory makes the copy a DMA (on a CPU engine the
reading thread takes a core from the denoising); "on" reads ahead on any device; "off"
reads each file when its picture starts.
Only models of a UNet (SD1.5, SDXL, tiny) are read ahead: FLUX's LoRA loader does more
than a dict of tensors can say, and reads its file as before.

Torch-free at import: the bot validates the names without loading torch.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = [
    "COMPILE_MODES",
    "PREFETCH_MODES",
    "compile_denoiser",
    "compiled",
    "compiles",
    "prefetches",
]

_log = logging.getLogger(__name__)

COMPILE_MODES = ("auto", "on", "off")
PREFETCH_MODES = ("auto", "on", "off")


def compiles(mode: str, device: Any) -> bool:
    """Whether `mode` compiles the denoiser on `device`."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {mode!r}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def prefetches(mode: str, device: Any) -> bool:
    """Whether `mode` reads users' model files ahead of their pictures on `device`."""
    if mode not in PREFETCH_MODES:
        raise ValueError(f"lora_prefetch must be one of {', '.join(PREFETCH_MODES)}, got {mode!r}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_denoiser(pipeline: Any, mode: str, *, backend: str = "inductor") -> Any:
    """The pipeline's denoiser's call, compiled by `torch.compile` at its first use.

    As `nn.Module.compile` does it, but kept aside: `compiled` puts it in place only
    while pictures are made, so the module stays the pipeline's own (diffusers' adapter
    calls see it as before) and a training runs it uncompiled.
    """
    import torch

    from engine.models.pipeline import denoiser

    if mode == "auto":
        # A graph break or a backend failure falls back to eager for that frame.
        torch._dynamo.config.suppress_errors = True
    net = denoiser(pipeline)
    _log.info("compiling the %s (%s) at its first picture", type(net).__name__, backend)
    return torch.compile(net._call_impl, backend=backend)


@contextlib.contextmanager
def compiled(pipeline: Any, call: Any | None) -> Iterator[None]:
    """The denoiser runs `call` (from `compile_denoiser`) inside the block; None: as it is."""
    if call is None:
        yield
        return
    from engine.models.pipeline import denoiser

    net = denoiser(pipeline)
    net._compiled_call_impl = call  # what nn.Module.__call__ runs when it is set
    try:
        yield
    finally:
        net._compiled_call_impl = None
