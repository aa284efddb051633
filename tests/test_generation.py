"""Generation on the tiny model: seeds, LoRA adapters and their cache, sizes, PNG marking."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from engine.generation import (
    AI_STATEMENT,
    GenerationRequest,
    LoraCache,
    LoraRef,
    generate,
    size_for,
    with_trigger,
)
from engine.models import FAMILIES
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.training import TrainingRequest, file_sha256, train

TINY = FAMILIES["tiny"]


@pytest.fixture(scope="module")
def lora(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoraRef:
    """A LoRA trained for a few steps on flat colours: enough to change the output."""
    trainer = load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)
    images = tuple(Image.new("RGB", (256, 256), (200, 40 * i, 90)) for i in range(4))
    out = tmp_path_factory.mktemp("lora") / "user.safetensors"
    result = train(trainer, TINY, TrainingRequest(images, "sbx7", out, steps=6))
    return LoraRef(result.path, result.sha256, "sbx7")


def _req(**kw: object) -> GenerationRequest:
    return replace(GenerationRequest("a lego figure", seed=11, steps=4), **kw)  # type: ignore[arg-type]


def _pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).tobytes()


def test_same_seed_same_image_other_seed_other_image(pipe: Pipeline) -> None:
    first = generate(pipe, _req())
    again = generate(pipe, _req())
    other = generate(pipe, _req(seed=12))
    assert first.images[0].png == again.images[0].png
    assert _pixels(first.images[0].png) != _pixels(other.images[0].png)


def test_variations_stay_near_the_picture_they_vary(pipe: Pipeline) -> None:
    def pixels(png: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(png)), dtype=np.float32)

    original = pixels(generate(pipe, _req(seed=40)).images[0].png)
    unrelated = pixels(generate(pipe, _req(seed=900)).images[0].png)
    same = generate(pipe, _req(seed=900, variation_seed=40, variation_strength=0.0))
    assert np.array_equal(pixels(same.images[0].png), original)

    varied = generate(pipe, _req(seed=900, count=2, variation_seed=40, variation_strength=0.2))
    first, second = (pixels(i.png) for i in varied.images)
    assert not np.array_equal(first, second)
    for image in (first, second):
        assert not np.array_equal(image, original)
        assert np.abs(image - original).mean() < 0.5 * np.abs(unrelated - original).mean()


def test_count_seeds_and_progress(pipe: Pipeline) -> None:
    steps: list[tuple[int, int]] = []
    result = generate(pipe, _req(count=2), progress=lambda s, t: steps.append((s, t)))
    assert [img.seed for img in result.images] == [11, 12]
    assert steps == [(s, 4) for s in range(1, 5)]
    unseeded = generate(pipe, _req(seed=None))
    assert isinstance(unseeded.parameters["seed"], int)


def test_lora_changes_output_and_stays_loaded(pipe: Pipeline, lora: LoraRef) -> None:
    cache = LoraCache(pipe, capacity=2)
    bare = generate(pipe, _req(), adapters=cache)
    with_lora = generate(pipe, _req(lora=lora), adapters=cache)
    assert _pixels(bare.images[0].png) != _pixels(with_lora.images[0].png)
    assert with_lora.prompt == "sbx7 person, a lego figure"

    again = generate(pipe, _req(lora=lora), adapters=cache)
    assert cache.loads == 1 and cache.loaded == (lora.sha256,)
    assert _pixels(again.images[0].png) == _pixels(with_lora.images[0].png)
    # Back to the bare model: the adapter stays loaded but inactive.
    assert _pixels(generate(pipe, _req(), adapters=cache).images[0].png) == _pixels(
        bare.images[0].png
    )
    cache.evict(lora.sha256)
    assert not cache.loaded


def test_lru_evicts_the_least_recently_used_adapter(
    pipe: Pipeline, lora: LoraRef, tmp_path: Path
) -> None:
    # A second user's LoRA: the same file with halved weights (so another sha256).
    with safe_open(lora.path, "pt") as f:
        metadata = f.metadata()
    halved = {k: v * 0.5 for k, v in load_file(lora.path).items()}
    save_file(halved, tmp_path / "other.safetensors", metadata=metadata)
    other = LoraRef(
        tmp_path / "other.safetensors", file_sha256(tmp_path / "other.safetensors"), "zqx9"
    )

    cache = LoraCache(pipe, capacity=1)
    cache.activate(lora)
    cache.activate(lora)
    assert cache.loads == 1
    cache.activate(other)
    assert cache.loads == 2 and cache.loaded == (other.sha256,)
    cache.activate(lora)
    assert cache.loads == 3 and cache.loaded == (lora.sha256,)
    with pytest.raises(ValueError, match="expected 0000"):
        cache.activate(replace(lora, sha256="0" * 64))
    cache.evict(lora.sha256)
    cache.activate(None)
    assert not cache.loaded


def test_trigger_is_put_in_only_when_missing(lora: LoraRef) -> None:
    assert with_trigger("sbx7 as an astronaut", lora) == "sbx7 as an astronaut"
    assert with_trigger("SBX7, oil painting", lora) == "SBX7, oil painting"
    assert with_trigger("an astronaut", lora) == "sbx7 person, an astronaut"
    assert with_trigger("an astronaut", None) == "an astronaut"


def test_aspect_ratio_sizes(pipe: Pipeline) -> None:
    assert size_for(512, "1:1") == (512, 512)
    assert size_for(512, "16:9") == (680, 384)
    assert size_for(1024, "2:3") == (840, 1256)
    image = generate(pipe, _req(aspect_ratio="16:9")).images[0]
    assert (image.width, image.height) == (344, 192)
    assert Image.open(io.BytesIO(image.png)).size == (344, 192)


def test_png_carries_parameters_and_ai_statement(pipe: Pipeline) -> None:
    result = generate(pipe, _req(negative_prompt="blurry", guidance=5.0))
    png = Image.open(io.BytesIO(result.images[0].png))
    text = png.text  # type: ignore[attr-defined]
    params = json.loads(text["parameters"])
    assert params["prompt"] == "a lego figure"
    assert params["negative_prompt"] == "blurry"
    assert (params["seed"], params["steps"], params["guidance"]) == (11, 4, 5.0)
    assert params["ai_generated"] is True
    assert "AI-generated" in text["Disclaimer"] == AI_STATEMENT
    assert "trainedAlgorithmicMedia" in text["XML:com.adobe.xmp"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "steps must be 1 to 100, got 0"),
        ({"count": 5}, "count must be 1 to 4, got 5"),
        ({"guidance": -1.0}, "guidance must be 0 to 20, got -1.0"),
        ({"aspect_ratio": "7:3"}, "aspect ratio '7:3' is not offered"),
        ({"prompt": "  "}, "prompt is empty"),
    ],
)
def test_bad_requests_are_refused_quoting_the_value(
    pipe: Pipeline, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        generate(pipe, _req(**change))


def test_previews_come_during_denoising(pipe: Pipeline) -> None:
    previews: list[tuple[int, tuple[int, int]]] = []
    generate(
        pipe,
        _req(steps=8),
        preview=lambda step, img: previews.append((step, img.size)),
        preview_every=2,
    )
    # Every second step but the last, whose finished picture needs no preview.
    assert [step for step, _ in previews] == [2, 4, 6]
    assert all(size == (256, 256) for _, size in previews)
