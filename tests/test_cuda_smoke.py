"""The engine's CUDA path, end to end, on the full-size SD1.5 architecture with random
weights: a face LoRA trained by the engine's trainer, then pictures with it through the
compiled denoiser and the hotswap slot, and two users in one denoising batch.

Runs only where CUDA exists; steps are cut so that it takes about a minute on one GPU.
Random weights do the arithmetic of real ones, so what it checks is that every CUDA
code path runs (half precision, SDPA, gradient checkpointing, torch.compile, peft's
hotswap and mixed batches) and keeps the same seed's picture, not what the pictures show.
"""

from __future__ import annotations

import io
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate
from engine.generation.hotswap import SLOT, HotswapCache
from engine.generation.together import generate_together
from engine.models.families import FAMILIES, dtype_for
from engine.models.speed import compile_denoiser, compiled
from engine.training import TrainingRequest, train

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SD15 = FAMILIES["sd15"]


def _full_sd15(work: Path) -> Any:
    sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))
    from _full import assemble, build_full

    device = torch.device("cuda")
    parts = build_full("sd15", device, work)
    for module in parts.values():
        if isinstance(module, torch.nn.Module):
            module.to(dtype=dtype_for(SD15, device)).eval().requires_grad_(False)
    return assemble("sd15", parts)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def test_train_then_pictures_on_the_full_size_sd15_architecture(tmp_path: Path) -> None:
    pipe = _full_sd15(tmp_path)
    photos = tuple(Image.new("RGB", (512, 512), (40 * i, 120, 200)) for i in range(4))
    request = TrainingRequest(photos, "sbx7", tmp_path / "user0.safetensors", steps=4)
    result = train(pipe, SD15, request)
    assert result.steps == 4 and np.isfinite(result.loss)
    first = LoraRef(result.path, result.sha256, "sbx7")
    result = train(pipe, SD15, replace(request, output=tmp_path / "user1.safetensors", seed=1))
    second = LoraRef(result.path, result.sha256, "sbx7", scale=0.5)

    def ask(lora: LoraRef, seed: int) -> GenerationRequest:
        return GenerationRequest("sbx7 person, a portrait", lora=lora, seed=seed, steps=4)

    cache = HotswapCache(pipe, SD15.recipe.rank)
    with compiled(pipe, compile_denoiser(pipe, "on")):
        one = generate(pipe, ask(first, 1), adapters=cache)
        with torch._dynamo.config.patch(error_on_recompile=True):
            generate(pipe, ask(second, 2), adapters=cache)
            again = generate(pipe, ask(first, 1), adapters=cache)
    assert cache.swaps == 3 and list(pipe.unet.peft_config) == [SLOT]
    assert (one.images[0].width, one.images[0].height) == (512, 512)
    assert int(np.abs(_pixels(one.images[0].png) - _pixels(again.images[0].png)).max()) <= 2
    cache.clear()

    plain = LoraCache(pipe)
    requests = [ask(first, 3), ask(second, 4)]
    together = generate_together(pipe, requests, adapters=plain)
    alone = [generate(pipe, r, adapters=plain) for r in requests]
    for batched, single in zip(together, alone, strict=True):
        difference = np.abs(_pixels(batched.images[0].png) - _pixels(single.images[0].png))
        assert int(difference.max()) <= 8  # half-precision rounding of a batched matmul
