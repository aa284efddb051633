"""The kohya export: the key names of a real kohya SD1.5 LoRA, the trained alpha, the
metadata the tools show, and the same picture from the converted file as from the
adapter the bot keeps."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from peft import LoraConfig
from PIL import Image
from safetensors.numpy import load as load_numpy
from safetensors.torch import save as save_torch

from engine.generation import GenerationRequest, LoraRef, generate
from engine.kohya import KohyaInfo, _metadata, to_kohya
from engine.models import FAMILIES
from engine.models.loader import load_pipeline
from engine.training.export import file_sha256, save_lora

TINY = FAMILIES["tiny"]
RANK, ALPHA = 4, 8

# The attention blocks of a LoRA trained by kohya's sd-scripts on SD 1.5 (its key names,
# as A1111 and ComfyUI read them), with the four attention projections of each.
KOHYA_SD15_BLOCKS = [
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0",
    "lora_unet_down_blocks_0_attentions_1_transformer_blocks_0",
    "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0",
    "lora_unet_down_blocks_1_attentions_1_transformer_blocks_0",
    "lora_unet_down_blocks_2_attentions_0_transformer_blocks_0",
    "lora_unet_down_blocks_2_attentions_1_transformer_blocks_0",
    "lora_unet_mid_block_attentions_0_transformer_blocks_0",
    "lora_unet_up_blocks_1_attentions_0_transformer_blocks_0",
    "lora_unet_up_blocks_1_attentions_1_transformer_blocks_0",
    "lora_unet_up_blocks_1_attentions_2_transformer_blocks_0",
    "lora_unet_up_blocks_2_attentions_0_transformer_blocks_0",
    "lora_unet_up_blocks_2_attentions_1_transformer_blocks_0",
    "lora_unet_up_blocks_2_attentions_2_transformer_blocks_0",
    "lora_unet_up_blocks_3_attentions_0_transformer_blocks_0",
    "lora_unet_up_blocks_3_attentions_1_transformer_blocks_0",
    "lora_unet_up_blocks_3_attentions_2_transformer_blocks_0",
]
KOHYA_PROJECTIONS = ["to_q", "to_k", "to_v", "to_out_0"]
KOHYA_SUFFIXES = [".alpha", ".lora_down.weight", ".lora_up.weight"]


def _info(family: str = "tiny") -> KohyaInfo:
    return KohyaInfo(family, "tiny", 256, "sbx7", 24, "selfiebooth-sbx7-v1", "2026-12-05T10:00:00")


def test_sd15_key_names_are_those_of_a_real_kohya_lora() -> None:
    """Our stored layout for every attention projection of an SD 1.5 UNet (built on the
    meta device: the names, no weights), converted, gives exactly kohya's names."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(cross_attention_dim=768)  # SD 1.5's blocks
    targets = tuple(f".{t}" for t in FAMILIES["sd15"].lora_targets)
    stored = {}
    for name, _ in unet.named_modules():
        if "attentions" in name and name.endswith(targets):
            stored[f"unet.{name}.lora.down.weight"] = torch.zeros(RANK, 2)
            stored[f"unet.{name}.lora.up.weight"] = torch.zeros(2, RANK)
    adapter = json.dumps({"unet.r": RANK, "unet.lora_alpha": ALPHA})
    data = save_torch(stored, metadata={"lora_adapter_metadata": adapter, "format": "pt"})

    kohya = load_numpy(to_kohya(data, _info("sd15")))
    expected = {
        f"{block}_{attention}_{projection}{suffix}"
        for block in KOHYA_SD15_BLOCKS
        for attention in ("attn1", "attn2")
        for projection in KOHYA_PROJECTIONS
        for suffix in KOHYA_SUFFIXES
    }
    assert set(kohya) == expected
    alphas = {float(v) for k, v in kohya.items() if k.endswith(".alpha")}
    assert alphas == {float(ALPHA)}  # the trained alpha, not the rank diffusers writes


@pytest.fixture(scope="module")
def stored_lora(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny-model LoRA as the trainer saves it, alpha twice the rank, with random
    up-weights (peft starts them at zero); and the models folder."""
    models = tmp_path_factory.getbasetemp() / "models"
    scratch = load_pipeline("tiny", TINY, "cpu", models_dir=models)
    config = LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=list(TINY.lora_targets))
    scratch.unet.add_adapter(config, "face")
    with torch.no_grad():
        for key, param in scratch.unet.named_parameters():
            if "lora_B.face" in key:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(5)))
    path, _ = save_lora(scratch, "face", tmp_path_factory.mktemp("lora") / "face.safetensors")
    return path, models


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def test_the_kohya_file_draws_the_same_picture_and_says_what_it_is(
    stored_lora: tuple[Path, Path], tmp_path: Path
) -> None:
    path, models = stored_lora
    kohya_path = tmp_path / "face-kohya.safetensors"
    kohya_path.write_bytes(to_kohya(path.read_bytes(), _info()))
    request = GenerationRequest(prompt="a portrait of sbx7 person", seed=3, steps=4)

    pipe = load_pipeline("tiny", TINY, "cpu", models_dir=models)
    bare = _pixels(generate(pipe, request).images[0].png)
    # As the engine draws with the file it keeps...
    ref = LoraRef(path, file_sha256(path), "sbx7")
    ours = _pixels(generate(pipe, dataclasses.replace(request, lora=ref)).images[0].png)
    # ...and as a user's tool would with the export: diffusers converts the kohya keys.
    other = load_pipeline("tiny", TINY, "cpu", models_dir=models)
    other.load_lora_weights(str(kohya_path), adapter_name="kohya")
    theirs = _pixels(generate(other, request).images[0].png)
    assert np.abs(ours - bare).mean() > 1  # the LoRA changes the picture...
    assert np.abs(ours - theirs).mean() < 0.5  # ...and the export changes it alike

    metadata = _metadata(kohya_path.read_bytes())
    assert metadata["ss_network_dim"] == str(RANK) and metadata["ss_network_alpha"] == "8.0"
    assert metadata["ss_base_model_version"] == "selfiebooth_tiny"
    assert metadata["modelspec.architecture"] == "selfiebooth-tiny/lora"
    assert metadata["modelspec.trigger_phrase"] == "sbx7" and metadata["ss_steps"] == "24"
    assert metadata["modelspec.resolution"] == "256x256"


def test_files_that_are_no_lora_are_refused() -> None:
    data = save_torch({"weight": torch.zeros(2, 2)}, metadata={"format": "pt"})
    with pytest.raises(ValueError, match="no LoRA weights"):
        to_kohya(data, _info())
    with pytest.raises(ValueError, match="no kohya layout is known for the 'flux' family"):
        to_kohya(data, _info("flux"))
