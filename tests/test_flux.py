"""The FLUX family on the tiny offline FLUX pipeline: the real FluxPipeline, the
flow-matching trainer with peft, LoRA files diffusers loads, and the picture tools."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import FluxPipeline
from PIL import Image
from safetensors import safe_open

from bot.config import ConfigError, load_config
from engine.generation import GenerationRequest, LoraRef, generate
from engine.models import FAMILIES, resolve_family
from engine.models.loader import load_pipeline
from engine.models.memory import MemoryOptions
from engine.models.pipeline import Pipeline
from engine.models.styles import StyleError, check_family, inspect_style
from engine.models.tiny_flux import t5_tokenizer
from engine.training import TrainingRequest, train

FLUX = FAMILIES["tiny-flux"]


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    return load_pipeline("tiny-flux", FLUX, "cpu", models_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def lora(pipe: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> LoraRef:
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(4)
    ]
    out = tmp_path_factory.mktemp("lora") / "flux.safetensors"
    result = train(pipe, FLUX, TrainingRequest(images=images, trigger="sbx7", output=out, steps=6))
    return LoraRef(result.path, result.sha256, "sbx7")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def test_the_families_of_flux_names_and_their_generation_defaults() -> None:
    dev = resolve_family("black-forest-labs/FLUX.1-dev")
    schnell = resolve_family("black-forest-labs/FLUX.1-schnell")
    assert (dev.name, dev.pipeline, dev.steps, dev.guidance) == ("flux", "flux", 28, 3.5)
    assert (schnell.name, schnell.steps, schnell.guidance) == ("flux", 4, 0.0)
    assert resolve_family("/models/my-flux-finetune", "flux").recipe.rank == 16
    assert resolve_family("tiny-flux") is FLUX
    assert FLUX.methods == ("lora",) and "attn.add_q_proj" in FLUX.lora_targets


def test_the_t5_tokenizer_is_made_in_code_and_ends_each_prompt() -> None:
    tokenizer = t5_tokenizer()
    ids = tokenizer("a photo of sbx7 person").input_ids
    assert ids[-1] == tokenizer.eos_token_id == 1
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "a photo of sbx7 person"


def test_the_tiny_flux_is_a_real_flux_pipeline_saved_once(pipe: Pipeline, tmp_path: Path) -> None:
    assert isinstance(pipe, FluxPipeline)
    assert pipe.transformer.config.guidance_embeds  # type: ignore[attr-defined]
    again = load_pipeline("tiny-flux", FLUX, "cpu", models_dir=tmp_path)
    ours = dict(pipe.transformer.named_parameters())  # type: ignore[attr-defined]
    theirs = dict(again.transformer.named_parameters())  # type: ignore[attr-defined]
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)


def test_a_flux_lora_is_the_transformers_and_changes_the_picture(
    pipe: Pipeline, lora: LoraRef
) -> None:
    with safe_open(str(lora.path), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("transformer.") for k in keys)
    assert any(".single_transformer_blocks.0.attn.to_q." in k for k in keys)
    assert any(".transformer_blocks.0.ff_context.net.2." in k for k in keys)

    asked = GenerationRequest("a portrait", seed=5, steps=4, guidance=3.5)
    plain = generate(pipe, asked).images[0]
    mine = generate(pipe, GenerationRequest("a portrait", lora=lora, seed=5, steps=4)).images[0]
    assert np.abs(_pixels(plain.png) - _pixels(mine.png)).mean() > 0.1


def test_the_same_seed_gives_the_same_flux_picture(pipe: Pipeline, lora: LoraRef) -> None:
    asked = GenerationRequest("sbx7 person on a beach", lora=lora, seed=11, steps=4, count=2)
    first, second = generate(pipe, asked), generate(pipe, asked)
    assert [i.png for i in first.images] == [i.png for i in second.images]
    assert first.images[0].png != first.images[1].png  # seed + 1 is another picture


def test_a_variation_at_strength_zero_is_the_picture_it_varies(pipe: Pipeline) -> None:
    base = GenerationRequest("a cat", seed=3, steps=4)
    varied = GenerationRequest("a cat", seed=9, steps=4, variation_seed=3, variation_strength=0)
    same = generate(pipe, base).images[0]
    assert np.array_equal(_pixels(generate(pipe, varied).images[0].png), _pixels(same.png))
    nudged = GenerationRequest("a cat", seed=9, steps=4, variation_seed=3, variation_strength=0.3)
    assert not np.array_equal(_pixels(generate(pipe, nudged).images[0].png), _pixels(same.png))


def test_flux_sizes_are_multiples_of_sixteen_and_tools_keep_them(pipe: Pipeline) -> None:
    wide = generate(pipe, GenerationRequest("a street", seed=1, steps=2, aspect_ratio="16:9"))
    image = wide.images[0]
    assert (image.width % 16, image.height % 16) == (0, 0) and image.width > image.height
    source = Image.open(io.BytesIO(image.png))
    tool = GenerationRequest("a street at night", seed=1, steps=4, aspect_ratio="16:9")
    redrawn = generate(pipe, replace(tool, source=source, strength=0.5)).images[0]
    assert (redrawn.width, redrawn.height) == (image.width, image.height)
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (0, 0, source.width // 2, source.height))
    edited = generate(pipe, replace(tool, source=source, mask=mask)).images[0]
    assert (edited.width, edited.height) == (image.width, image.height)
    assert edited.png != redrawn.png
    bigger = generate(
        pipe,
        GenerationRequest("a street", seed=1, steps=4, source=source, strength=0.3, upscale=2),
    ).images[0]
    assert (bigger.width, bigger.height) == (
        image.width * 2 // 16 * 16,
        image.height * 2 // 16 * 16,
    )


def test_flux_previews_are_decoded_pictures(pipe: Pipeline) -> None:
    seen: list[tuple[int, tuple[int, int]]] = []
    generate(
        pipe,
        GenerationRequest("a tree", seed=2, steps=4),
        preview=lambda step, image: seen.append((step, image.size)),
        preview_every=2,
    )
    assert seen == [(2, (256, 256))]


def test_what_flux_cannot_learn_or_load_is_refused(pipe: Pipeline, tmp_path: Path) -> None:
    image = Image.new("RGB", (256, 256), "gray")
    request = TrainingRequest(
        images=[image], trigger="sbx7", output=tmp_path / "x.safetensors", method="pivotal"
    )
    with pytest.raises(ValueError, match="tiny-flux models are trained by lora only"):
        train(pipe, FLUX, request, checkpoint_dir=tmp_path / "ckpt")
    assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="for CUDA GPUs"):
        load_pipeline(
            "tiny-flux", FLUX, "cpu", models_dir=tmp_path, memory=MemoryOptions(quantize="fp8")
        )


def test_an_sd_style_is_refused_for_flux(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    path = tmp_path / "sd-style.safetensors"
    save_file(
        {
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (
                np.zeros((4, 768), dtype=np.float32)
            ),
            "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (
                np.zeros((320, 4), dtype=np.float32)
            ),
        },
        str(path),
    )
    with pytest.raises(StyleError, match="changes the unet, which flux models do not have"):
        check_family(inspect_style(path), FAMILIES["flux"])


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[model]\nbase = "tiny-flux"\n[training]\nmethod = "textual_inversion"\n', "lora only"),
        ('[model]\nbase = "tiny-flux"\ncontrolnet = "lllyasviel/sd-controlnet-canny"\n', "edge"),
        ('[model]\nbase = "tiny-flux"\ninpainting = "some/inpainting"\n', "inpaints"),
        ('[engine]\nquantize = "fp8"\n', "is for FLUX"),
        ('[engine]\nquantize = "int3"\n', "one of none, fp8"),
    ],
)
def test_the_config_refuses_what_the_family_cannot_do(
    tmp_path: Path, toml: str, message: str
) -> None:
    path = tmp_path / "selfiebooth.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})
