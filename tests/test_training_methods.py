"""Textual inversion and pivotal tuning on the tiny models: what each writes, that the
learned token draws something the base model does not, that it is in the tokenizers
only while its user's model is active, and that a stopped run resumes exactly."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load as load_torch
from test_training import _image, _tiny_xl

from engine.generation.adapters import LoraCache
from engine.generation.spec import LoraRef
from engine.kohya import KohyaInfo, model_method, to_kohya
from engine.models import FAMILIES, Family
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.training import TrainingRequest, TrainingStopped, latest_checkpoint, train
from engine.training.conditioning import LiveCaptions, encode_captions
from engine.training.embedding import load_embeddings
from engine.training.export import TRIGGER_KEY, file_sha256

TINY = FAMILIES["tiny"]
TRIGGER = "sbx7"


@pytest.fixture
def pipe(models_dir: Path) -> Pipeline:
    return load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)


def noise(count: int = 3, side: int = TINY.resolution) -> tuple[Image.Image, ...]:
    rng = np.random.default_rng(0)
    return tuple(
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(count)
    )


def contents(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}  # noqa: SIM118


def request(out: Path, method: str, **kw: int) -> TrainingRequest:
    return TrainingRequest(noise(), TRIGGER, out, seed=5, steps=6, method=method, **kw)  # type: ignore[arg-type]


def test_textual_inversion_learns_the_trigger_token_only(pipe: Pipeline, tmp_path: Path) -> None:
    vocabulary = len(pipe.tokenizer)
    init_ids = pipe.tokenizer("person", add_special_tokens=False).input_ids
    start = pipe.text_encoder.get_input_embeddings().weight[init_ids].mean(0)
    before = _image(pipe)
    result = train(pipe, TINY, request(tmp_path / "ti.safetensors", "textual_inversion"))
    tensors, metadata = contents(result.path)
    assert list(tensors) == ["embedding.emb_params"] and metadata[TRIGGER_KEY] == TRIGGER
    vector = tensors["embedding.emb_params"]
    assert vector.shape == (1, 32) and not torch.allclose(vector[0], start)
    # The pipeline is as it was: no token left behind, no adapter.
    assert len(pipe.tokenizer) == vocabulary and not getattr(pipe.unet, "peft_config", None)
    assert torch.equal(_image(pipe), before)

    load_embeddings(pipe, TRIGGER, tensors)
    assert len(pipe.tokenizer) == vocabulary + 1
    assert not torch.allclose(_image(pipe), before)  # the token draws something else


def test_pivotal_tuning_writes_both_and_the_cache_loads_them_as_one_model(
    pipe: Pipeline, tmp_path: Path
) -> None:
    result = train(pipe, TINY, request(tmp_path / "pivotal.safetensors", "pivotal"))
    tensors, metadata = contents(result.path)
    lora = [k for k in tensors if k.startswith("unet.") and "lora" in k]
    assert lora and "embedding.emb_params" in tensors and "lora_adapter_metadata" in metadata
    inversion = train(pipe, TINY, request(tmp_path / "ti.safetensors", "textual_inversion"))

    vocabulary = len(pipe.tokenizer)
    base = _image(pipe)
    cache = LoraCache(pipe)
    pivotal_ref = LoraRef(result.path, file_sha256(result.path), TRIGGER)
    cache.activate(pivotal_ref)
    pivotal_image = _image(pipe)
    assert len(pipe.tokenizer) == vocabulary + 1 and not torch.allclose(pivotal_image, base)
    cache = LoraCache(pipe := load_pipeline("tiny", TINY, "cpu", models_dir=result.path.parent))
    cache.activate(pivotal_ref)
    assert torch.allclose(_image(pipe), pivotal_image, atol=1e-5)  # a fresh load, the same
    cache.activate(LoraRef(inversion.path, file_sha256(inversion.path), TRIGGER))  # another user
    assert len(pipe.tokenizer) == vocabulary + 1
    assert not torch.allclose(_image(pipe), pivotal_image)  # no LoRA, another vector
    cache.activate(None)  # the bare base model: nobody's token is left to name
    assert len(pipe.tokenizer) == vocabulary
    assert torch.allclose(_image(pipe), base, atol=1e-5)
    cache.activate(pivotal_ref)
    assert torch.allclose(_image(pipe), pivotal_image, atol=1e-5)  # from memory, again
    cache.clear()
    assert len(pipe.tokenizer) == vocabulary and cache.loaded == ()


def test_a_stopped_pivotal_run_resumes_where_it_stopped(pipe: Pipeline, tmp_path: Path) -> None:
    straight = train(pipe, TINY, request(tmp_path / "straight.safetensors", "pivotal"))
    steps: list[int] = []
    halted = request(tmp_path / "resumed.safetensors", "pivotal", checkpoint_every=2)
    with pytest.raises(TrainingStopped):
        train(
            pipe,
            TINY,
            halted,
            checkpoint_dir=tmp_path / "checkpoints",
            progress=lambda step, *_: steps.append(step),
            should_stop=lambda: len(steps) >= 3,
        )
    checkpoint = latest_checkpoint(tmp_path / "checkpoints")
    assert checkpoint is not None
    resumed = train(pipe, TINY, halted, resume_from=checkpoint)
    first, again = contents(straight.path)[0], contents(resumed.path)[0]
    assert first.keys() == again.keys()
    assert all(torch.allclose(first[k], again[k], atol=1e-6) for k in first)


def test_sdxl_pivotal_tuning_learns_both_encoders(pipe: Pipeline, tmp_path: Path) -> None:
    family = Family("tiny-xl", 64, "sdxl", replace(TINY.recipe, batch_size=1), "bfloat16")
    xl = _tiny_xl(pipe.tokenizer)
    xl.tokenizer_2 = copy.deepcopy(pipe.tokenizer)  # type: ignore[attr-defined]
    images = tuple(Image.new("RGB", (64, 64), (30 * i, 120, 60)) for i in range(3))
    done = train(
        xl,
        family,
        TrainingRequest(images, TRIGGER, tmp_path / "xl.safetensors", steps=3, method="pivotal"),
    )
    tensors, _ = contents(done.path)
    assert tensors["embedding.clip_l"].shape == tensors["embedding.clip_g"].shape == (1, 32)
    fresh = _tiny_xl(pipe.tokenizer)
    fresh.tokenizer_2 = copy.deepcopy(pipe.tokenizer)  # type: ignore[attr-defined]
    before = _image(fresh)
    LoraCache(fresh).activate(LoraRef(done.path, done.sha256, TRIGGER))
    assert not torch.allclose(_image(fresh), before)


def test_an_unknown_method_is_refused(pipe: Pipeline, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="method must be one of lora, textual_inversion"):
        train(pipe, TINY, request(tmp_path / "x.safetensors", "hypernetwork"))


def test_exports_carry_the_embedding_as_a1111_reads_it(pipe: Pipeline, tmp_path: Path) -> None:
    info = KohyaInfo("tiny", "tiny", 256, TRIGGER, 6, "selfiebooth-sbx7-v1", "2026-12-05T10:00")
    inversion = train(pipe, TINY, request(tmp_path / "ti.safetensors", "textual_inversion"))
    pivotal = train(pipe, TINY, request(tmp_path / "pivotal.safetensors", "pivotal"))
    stored = {path: path.read_bytes() for path in (inversion.path, pivotal.path)}
    assert model_method(stored[inversion.path]) == "textual_inversion"
    assert model_method(stored[pivotal.path]) == "pivotal"

    # Textual inversion: A1111's one-vector embedding file, which diffusers loads too.
    embedding = load_torch(to_kohya(stored[inversion.path], info))
    assert list(embedding) == ["emb_params"] and embedding["emb_params"].shape == (1, 32)
    cache = LoraCache(pipe)
    cache.activate(LoraRef(inversion.path, inversion.sha256, TRIGGER))
    ours = _image(pipe)
    cache.clear()
    pipe.load_textual_inversion(embedding, token=TRIGGER)
    assert torch.allclose(_image(pipe), ours, atol=1e-5)
    pipe.unload_textual_inversion(tokens=[TRIGGER])

    # Pivotal: the kohya LoRA with the vector bundled in (A1111's bundle_emb keys).
    kohya = load_torch(to_kohya(stored[pivotal.path], info))
    bundled = {k: v for k, v in kohya.items() if k.startswith("bundle_emb.")}
    assert list(bundled) == [f"bundle_emb.{TRIGGER}.emb_params"]
    assert all(k.startswith("lora_unet_") for k in kohya.keys() - bundled.keys())
    cache.activate(LoraRef(pivotal.path, pivotal.sha256, TRIGGER))
    ours = _image(pipe)
    cache.clear()
    lora = {k: v for k, v in kohya.items() if k not in bundled}
    pipe.load_lora_weights(lora, adapter_name="kohya")
    pipe.load_textual_inversion(bundled[f"bundle_emb.{TRIGGER}.emb_params"], token=TRIGGER)
    assert torch.allclose(_image(pipe), ours, atol=1e-4)


def test_live_captions_encode_as_the_pipeline_does(pipe: Pipeline) -> None:
    """With a learned token the captions are encoded at every step, outside
    `encode_prompt`: the same conditioning as the pipeline's own, SD and SDXL."""
    captions = ["a photo of sbx7 person", "sbx7 person, smiling"]
    xl = _tiny_xl(pipe.tokenizer)
    for model in (pipe, xl):
        cached = encode_captions(model, captions, 64)
        with torch.no_grad():
            live = LiveCaptions(model, captions, 64)(torch.tensor([1, 0]))
        assert torch.allclose(live.hidden, cached.hidden[[1, 0]], atol=1e-6)
        if cached.pooled is not None:
            assert live.pooled is not None
            assert torch.allclose(live.pooled, cached.pooled[[1, 0]], atol=1e-6)
        assert (cached.pooled is None) == (model is pipe)
