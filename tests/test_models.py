"""Model families, recipes, the dtype policy, and the tiny pipeline built offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.models import FAMILIES, TrainingRecipe, dtype_for, resolve_family
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.models.tiny import TINY_VERSION, bytes_to_unicode, ensure_tiny


def _weights(pipe: Pipeline) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for part in ("unet", "vae", "text_encoder"):
        for name, value in getattr(pipe, part).state_dict().items():
            out[f"{part}.{name}"] = value
    return out


def test_families_know_resolution_targets_and_recipe() -> None:
    assert {f: FAMILIES[f].resolution for f in FAMILIES} == {
        "tiny": 256,
        "sd15": 512,
        "sdxl": 1024,
        "flux": 1024,
        "tiny-flux": 256,
    }
    for family in FAMILIES.values():
        unet = family.pipeline != "flux"
        assert (family.lora_targets == ("to_k", "to_q", "to_v", "to_out.0")) is unet
        assert family.recipe.min_steps <= family.recipe.max_steps
    assert resolve_family("stabilityai/stable-diffusion-xl-base-1.0").name == "sdxl"
    assert resolve_family("runwayml/stable-diffusion-v1-5").name == "sd15"
    assert resolve_family("tiny").name == "tiny"
    with pytest.raises(ValueError, match="'sd3'"):
        resolve_family("x", "sd3")


def test_recipe_steps_are_clamped_and_validated() -> None:
    recipe = FAMILIES["sd15"].recipe
    assert recipe.total_steps(1) == recipe.min_steps
    assert recipe.total_steps(10) == 10 * recipe.steps_per_photo
    assert recipe.total_steps(1000) == recipe.max_steps
    assert TrainingRecipe.from_dict(recipe.to_dict()) == recipe
    with pytest.raises(ValueError, match="rank must be at least 1, got 0"):
        TrainingRecipe(0, 1, 1e-4, 1, 1, 1, 1)


def test_dtype_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for family in FAMILIES.values():
        assert dtype_for(family, "cpu") == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert dtype_for(FAMILIES["sd15"], "cuda") == torch.float16
    assert dtype_for(FAMILIES["sdxl"], "cuda") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert dtype_for(FAMILIES["sdxl"], "cuda") == torch.float16


def test_bytes_to_unicode_is_a_printable_bijection() -> None:
    mapping = bytes_to_unicode()
    assert sorted(mapping) == list(range(256))
    assert len(set(mapping.values())) == 256
    assert mapping[ord("a")] == "a"
    assert all(ch.isprintable() and not ch.isspace() for ch in mapping.values())


def test_tiny_pipeline_builds_offline_and_reloads_identically(
    models_dir: Path, tmp_path: Path
) -> None:
    first = load_pipeline("tiny", FAMILIES["tiny"], "cpu", models_dir=models_dir)
    again = load_pipeline("tiny", FAMILIES["tiny"], "cpu", models_dir=models_dir)
    a, b = _weights(first), _weights(again)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # A build elsewhere gives the same weights: the seed fixes them.
    other = _weights(load_pipeline("tiny", FAMILIES["tiny"], "cpu", models_dir=tmp_path))
    assert all(torch.equal(a[k], other[k]) for k in a)

    tokenizer = first.tokenizer  # type: ignore[attr-defined]
    assert len(tokenizer) == 514 == first.text_encoder.config.vocab_size  # type: ignore[attr-defined]
    assert tokenizer.model_max_length == 77
    ids = tokenizer("a photo of sbx7 person").input_ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|startoftext|>")
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert first.unet.config.sample_size * first.vae_scale_factor == 256
    assert first.vae_scale_factor == 8  # as SD's VAE


def test_ensure_tiny_keeps_an_existing_build(models_dir: Path) -> None:
    ensure_tiny(models_dir / "tiny")
    stamp = (models_dir / "tiny" / "model_index.json").stat().st_mtime_ns
    ensure_tiny(models_dir / "tiny")
    assert (models_dir / "tiny" / "model_index.json").stat().st_mtime_ns == stamp


def test_a_tiny_cache_of_an_older_version_is_rebuilt(tmp_path: Path) -> None:
    old = tmp_path / "tiny"
    old.mkdir()
    (old / "model_index.json").write_text("{}")  # version 1 wrote no stamp
    (old / "vae").mkdir()
    (old / "vae" / "old-weights.safetensors").write_bytes(b"64 px")
    ensure_tiny(old)
    assert not (old / "vae" / "old-weights.safetensors").exists()
    stamp = json.loads((old / "selfiebooth-tiny.json").read_text())
    assert stamp == {"version": TINY_VERSION}
    vae = json.loads((old / "vae" / "config.json").read_text())
    assert len(vae["block_out_channels"]) == 4  # a scale factor of 8
    assert not list(tmp_path.glob(".tiny-*"))  # the staging directory is gone


def test_tiny_base_needs_the_tiny_family(models_dir: Path) -> None:
    with pytest.raises(ValueError, match="base 'tiny' needs family 'tiny', got 'sd15'"):
        load_pipeline("tiny", FAMILIES["sd15"], "cpu", models_dir=models_dir)
