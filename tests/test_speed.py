"""The speed levers on the tiny model: several users' LoRAs in one denoising batch, and a
compiled denoiser whose user LoRA is hotswapped without recompiling. What they must keep
is the picture: the same as the plain path gives, for the same seed."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from PIL import Image
from safetensors import safe_open
from safetensors.torch import save_file

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate
from engine.generation.hotswap import SLOT, HotswapCache
from engine.generation.together import batch_key, generate_together
from engine.models import FAMILIES
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.models.speed import compile_denoiser, compiled, compiles
from engine.training import TrainingRequest, train

TINY = FAMILIES["tiny"]


@pytest.fixture(scope="module")
def loras(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[LoraRef]:
    """Two users' LoRAs, trained on different colours: each moves the picture its own way."""
    trainer = load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)
    out = tmp_path_factory.mktemp("loras")
    refs = []
    for user in range(2):
        colours = [(200 - 120 * user, 40 * i, 60 + 120 * user) for i in range(4)]
        images = tuple(Image.new("RGB", (256, 256), c) for c in colours)
        request = TrainingRequest(images, "sbx7", out / f"user{user}.safetensors", steps=6)
        result = train(trainer, TINY, replace(request, seed=user))
        refs.append(LoraRef(result.path, result.sha256, "sbx7"))
    return refs


def _fresh(models_dir: Path) -> Pipeline:
    return load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)


def _req(lora: LoraRef | None, **kw: object) -> GenerationRequest:
    base = GenerationRequest("a lego figure", lora=lora, seed=5, steps=4)
    return replace(base, **kw)  # type: ignore[arg-type]


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def _differ(a: bytes, b: bytes) -> int:
    return int(np.abs(_pixels(a) - _pixels(b)).max())


# --- several users in one batch ----------------------------------------------------------


def test_a_batch_of_users_gives_each_the_picture_they_would_get_alone(
    models_dir: Path, loras: list[LoraRef]
) -> None:
    pipe = _fresh(models_dir)
    cache = LoraCache(pipe)
    requests = [
        _req(loras[0]),
        _req(loras[1], seed=9),
        _req(None, count=2),
        _req(loras[0], seed=77),
    ]
    alone = [
        generate(pipe, request, adapters=cache, watermark=job)
        for job, request in enumerate(requests, 1)
    ]
    together = generate_together(pipe, requests, adapters=cache, watermarks=[1, 2, 3, 4])

    assert [len(r.images) for r in together] == [1, 1, 2, 1]
    for one, batched in zip(alone, together, strict=True):
        assert [i.seed for i in one.images] == [i.seed for i in batched.images]
        assert one.parameters["lora_sha256"] == batched.parameters["lora_sha256"]
        for a, b in zip(one.images, batched.images, strict=True):
            assert _differ(a.png, b.png) <= 2  # the rounding of a batched matmul
    # ...and the users' pictures are not each other's: each row had its own adapter.
    assert _differ(together[0].images[0].png, _req_png(pipe, cache, _req(loras[1]))) > 8
    assert _differ(together[0].images[0].png, _req_png(pipe, cache, _req(None))) > 8


def _req_png(pipe: Pipeline, cache: LoraCache, request: GenerationRequest) -> bytes:
    return generate(pipe, request, adapters=cache).images[0].png


def test_the_same_batch_twice_gives_the_same_pictures(
    models_dir: Path, loras: list[LoraRef]
) -> None:
    pipe = _fresh(models_dir)
    requests = [_req(loras[0]), _req(loras[1])]
    first = generate_together(pipe, requests)
    again = generate_together(pipe, requests)
    for a, b in zip(first, again, strict=True):
        assert a.images[0].png == b.images[0].png


def test_requests_that_cannot_share_a_batch_are_refused(
    models_dir: Path, loras: list[LoraRef]
) -> None:
    pipe = _fresh(models_dir)
    source = Image.new("RGB", (256, 256), (10, 20, 30))
    assert batch_key(_req(loras[0], source=source)) is None
    assert batch_key(_req(loras[0], variation_seed=3, variation_strength=0.2)) is None
    with pytest.raises(ValueError, match="same steps"):
        generate_together(pipe, [_req(loras[0]), _req(loras[1], steps=6)])
    twice = [_req(loras[0]), _req(replace(loras[0], scale=0.5))]
    with pytest.raises(ValueError, match="two scales"):
        generate_together(pipe, twice)
    assert generate_together(pipe, []) == []


# --- a compiled denoiser and the hotswap slot ---------------------------------------------


def test_hotswapping_users_into_a_compiled_denoiser_does_not_recompile(
    models_dir: Path, loras: list[LoraRef]
) -> None:
    plain = _fresh(models_dir)
    plain_cache = LoraCache(plain)
    expected = [
        _req_png(plain, plain_cache, _req(loras[0])),
        _req_png(plain, plain_cache, _req(loras[1])),
        _req_png(plain, plain_cache, _req(replace(loras[1], scale=0.5))),
    ]

    pipe = _fresh(models_dir)
    cache = HotswapCache(pipe, rank=TINY.recipe.rank)  # the slot as large as the LoRAs
    # dynamo's own backend: recompiles are decided before any backend runs.
    wrapper = compile_denoiser(pipe, "on", backend="eager")
    got = []
    with compiled(pipe, wrapper):
        got.append(_req_png(pipe, cache, _req(loras[0])))  # compiles, with the slot
        with torch._dynamo.config.patch(error_on_recompile=True):
            got.append(_req_png(pipe, cache, _req(loras[1])))
            got.append(_req_png(pipe, cache, _req(replace(loras[1], scale=0.5))))
            again = _req_png(pipe, cache, _req(loras[0]))
    assert cache.swaps == 3 and cache.loads == 2  # the second switch to user 0 read no file
    for a, b in zip(got, expected, strict=True):
        assert _differ(a, b) <= 1
    assert again == got[0]
    assert _differ(got[0], got[1]) > 8
    assert list(pipe.unet.peft_config) == [SLOT]  # one adapter, whatever the users


def test_a_forgotten_users_weights_leave_the_slot(models_dir: Path, loras: list[LoraRef]) -> None:
    pipe = _fresh(models_dir)
    cache = HotswapCache(pipe, rank=8)  # the tiny recipe's rank 4, padded
    cache.install()
    assert LoraCache.for_pipeline(pipe) is cache  # what generate() uses by default
    cache.activate(loras[0])
    cache.evict(loras[0].sha256)
    assert not getattr(pipe.unet, "peft_config", {})
    cache.activate(loras[1])  # the slot is made again for the next user
    assert list(pipe.unet.peft_config) == [SLOT]
    cache.clear()
    assert not getattr(pipe.unet, "peft_config", {})


def test_a_lora_above_the_slots_rank_takes_the_ordinary_path(
    models_dir: Path, loras: list[LoraRef]
) -> None:
    pipe = _fresh(models_dir)
    cache = HotswapCache(pipe, rank=2)
    cache.activate(loras[0])
    assert cache.swaps == 0 and SLOT not in pipe.unet.peft_config
    assert cache.loaded == (loras[0].sha256,)


def test_a_lora_whose_alpha_is_not_its_rank_keeps_its_strength_in_the_slot(
    models_dir: Path, loras: list[LoraRef], tmp_path: Path
) -> None:
    # The slot is loaded from tensors, which carry no LoRA config: without the file's
    # alpha / rank, a file with alpha twice its rank would run at half its strength.
    with safe_open(str(loras[0].path), "pt") as fh:
        tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118
        metadata = dict(fh.metadata())
    config = json.loads(metadata[LORA_ADAPTER_METADATA_KEY])
    config["unet.lora_alpha"] = 2 * config["unet.r"]
    metadata[LORA_ADAPTER_METADATA_KEY] = json.dumps(config)
    path = tmp_path / "alpha.safetensors"
    save_file(tensors, str(path), metadata=metadata)
    strong = LoraRef(path, hashlib.sha256(path.read_bytes()).hexdigest(), "sbx7")

    plain = _fresh(models_dir)
    plain_cache = LoraCache(plain)
    order = (strong, replace(strong, scale=0.5), loras[0], strong)
    expected = [_req_png(plain, plain_cache, _req(r)) for r in order]
    assert _differ(expected[0], expected[2]) > 2

    pipe = _fresh(models_dir)
    cache = HotswapCache(pipe, rank=8)  # padded: rank 4 files
    got = [_req_png(pipe, cache, _req(r)) for r in order]  # the third: alpha = rank again
    assert cache.swaps == 3 and list(pipe.unet.peft_config) == [SLOT]
    for a, b in zip(got, expected, strict=True):
        assert _differ(a, b) <= 1


def test_a_lora_file_changed_since_it_was_recorded_is_refused(
    models_dir: Path, loras: list[LoraRef], tmp_path: Path
) -> None:
    changed = tmp_path / "changed.safetensors"
    changed.write_bytes(loras[1].path.read_bytes())
    cache = HotswapCache(_fresh(models_dir), rank=8)
    with pytest.raises(ValueError, match="expected"):
        cache.activate(replace(loras[0], path=changed))  # the other user's weights
    assert cache.swaps == 0 and not cache.holds(loras[0].sha256)


def test_auto_compiles_on_cuda_only() -> None:
    assert compiles("auto", torch.device("cuda")) and not compiles("auto", torch.device("cpu"))
    assert compiles("on", torch.device("cpu")) and not compiles("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="one of auto, on, off"):
        compiles("fast", torch.device("cpu"))
