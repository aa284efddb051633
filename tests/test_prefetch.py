"""LoRA prefetch on the tiny model (engine.generation.prefetch): a user's model read
ahead, on another thread, gives the picture its file gives, without the file being read
again; a file that does not match its sha256 is never used; forgetting a user drops what
was read ahead of them."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate
from engine.generation.hotswap import HotswapCache
from engine.generation.prefetch import Prefetcher
from engine.models import FAMILIES
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.models.speed import prefetches
from engine.training import TrainingRequest, file_sha256, train

TINY = FAMILIES["tiny"]
SETTLE = 60.0  # seconds a few small files may take to be read, at most


@pytest.fixture(scope="module")
def trainer(models_dir: Path) -> Pipeline:
    return load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)


def _train(trainer: Pipeline, out: Path, method: str, seed: int) -> LoraRef:
    colours = [(200 - 60 * seed, 40 * i, 60 + 60 * seed) for i in range(4)]
    images = tuple(Image.new("RGB", (256, 256), c) for c in colours)
    # alpha 2 with rank 4: the LoRA's metadata must come along with prefetched tensors.
    recipe = replace(TINY.recipe, alpha=2)
    request = TrainingRequest(images, "sbx7", out, steps=4, seed=seed, method=method, recipe=recipe)  # type: ignore[arg-type]
    result = train(trainer, TINY, request)
    return LoraRef(result.path, result.sha256, "sbx7")


@pytest.fixture(scope="module")
def lora(trainer: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> LoraRef:
    return _train(trainer, tmp_path_factory.mktemp("lora") / "user.safetensors", "lora", 0)


@pytest.fixture(scope="module")
def pivotal(trainer: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> LoraRef:
    """A model with a LoRA and its trigger's embedding in one file."""
    return _train(trainer, tmp_path_factory.mktemp("pivotal") / "p.safetensors", "pivotal", 1)


def _png(pipe: Pipeline, cache: LoraCache, lora: LoraRef | None) -> np.ndarray:
    request = GenerationRequest("a lego figure", lora=lora, seed=5, steps=3)
    png = generate(pipe, request, adapters=cache).images[0].png
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def _ahead(cache: LoraCache, *loras: LoraRef) -> Prefetcher:
    cache.prefetched = prefetcher = Prefetcher(capacity=2)
    prefetcher.request((lora.path, lora.sha256) for lora in loras)
    assert prefetcher.settle(SETTLE)
    return prefetcher


@pytest.mark.parametrize("model", ["lora", "pivotal"])
def test_a_prefetched_model_gives_the_picture_its_file_gives_without_reading_it(
    pipe: Pipeline, request: pytest.FixtureRequest, model: str
) -> None:
    ref: LoraRef = request.getfixturevalue(model)
    plain = LoraCache(pipe)
    from_file = _png(pipe, plain, ref)
    assert plain.reads == 1
    plain.clear()

    cache = LoraCache(pipe)
    prefetcher = _ahead(cache, ref)
    assert prefetcher.reads == 1 and prefetcher.holds(ref.sha256)
    ahead = _png(pipe, cache, ref)
    assert cache.reads == 0 and cache.loads == 1  # from the tensors read ahead
    assert not prefetcher.holds(ref.sha256)  # handed over: the adapter holds them now
    assert np.array_equal(ahead, from_file)
    assert not np.array_equal(ahead, _png(pipe, cache, None))
    cache.clear()


def test_the_hotswap_slot_takes_a_prefetched_lora(pipe: Pipeline, lora: LoraRef) -> None:
    cache = HotswapCache(pipe, rank=TINY.recipe.rank)
    _ahead(cache, lora)
    cache.activate(lora)
    assert cache.reads == 0 and cache.swaps == 1
    cache.clear()


def test_a_file_that_does_not_match_its_sha256_is_never_used(
    pipe: Pipeline, lora: LoraRef, pivotal: LoraRef, tmp_path: Path
) -> None:
    swapped = tmp_path / "swapped.safetensors"
    swapped.write_bytes(pivotal.path.read_bytes())  # another model under this one's name
    claimed = replace(lora, path=swapped)
    cache = LoraCache(pipe)
    prefetcher = _ahead(cache, claimed)
    assert prefetcher.reads == 1 and not prefetcher.holds(lora.sha256)
    # The generation reads the file itself, and refuses it as it always did.
    with pytest.raises(ValueError, match=f"expected {lora.sha256}"):
        cache.activate(claimed)
    assert cache.reads == 1 and not cache.holds(lora.sha256)


def test_forget_drops_what_was_read_ahead(pipe: Pipeline, lora: LoraRef, pivotal: LoraRef) -> None:
    cache = LoraCache(pipe)
    prefetcher = _ahead(cache, lora, pivotal)
    assert cache.forget([lora.sha256]) == 1  # held ahead only, not loaded
    assert not prefetcher.holds(lora.sha256) and prefetcher.holds(pivotal.sha256)
    cache.activate(lora)
    assert cache.reads == 1  # read from its file again, once forgotten
    prefetcher.close()


def test_the_oldest_prefetch_goes_first(lora: LoraRef, pivotal: LoraRef, tmp_path: Path) -> None:
    third = tmp_path / "third.safetensors"
    third.write_bytes(lora.path.read_bytes())
    prefetcher = Prefetcher(capacity=2)
    prefetcher.request([(lora.path, lora.sha256), (pivotal.path, pivotal.sha256)])
    prefetcher.request([(third, "3" * 64)])  # does not verify: takes no room
    assert prefetcher.settle(SETTLE)
    assert prefetcher.holds(lora.sha256) and prefetcher.holds(pivotal.sha256)
    again = tmp_path / "again.safetensors"  # another file, another sha256
    save_file({key: t * 0.5 for key, t in load_file(lora.path).items()}, again)
    prefetcher.request([(again, file_sha256(again))])
    assert prefetcher.settle(SETTLE)
    assert not prefetcher.holds(lora.sha256) and prefetcher.holds(pivotal.sha256)
    prefetcher.close()


def test_auto_prefetches_on_cuda_only() -> None:
    assert prefetches("auto", torch.device("cuda")) and not prefetches("auto", torch.device("cpu"))
    assert prefetches("on", torch.device("cpu")) and not prefetches("off", torch.device("cuda"))
    with pytest.raises(ValueError, match="one of auto, on, off"):
        prefetches("always", torch.device("cpu"))
