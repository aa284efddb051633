"""Style LoRA files for the tests of the library and the chats, written without torch.

Only their headers matter to the bot's checks (engine.models.styles reads nothing else):
the layer names and shapes of a LoRA for the tiny family (cross-attention width 32) or for
SD1.x (768). A file the engine is to load is a real LoRA of the tiny model instead (a
trained user's model, exported; see test_cli.py).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from bot.core import Booth, Identity
from storage import NewPhoto

_ATTN = "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn2"


def lora_file(path: Path, *, width: int = 32, rank: int = 4, seed: int = 0) -> Path:
    """A LoRA of the cross-attention's key and value whose text features are `width` wide."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in ("to_k", "to_v"):
        tensors[f"{_ATTN}.{layer}.lora_A.weight"] = rng.normal(size=(rank, width)).astype("<f4")
        tensors[f"{_ATTN}.{layer}.lora_B.weight"] = rng.normal(size=(64, rank)).astype("<f4")
    save_file(tensors, str(path))
    return path


def not_a_lora(path: Path) -> Path:
    """A valid safetensors file that holds a model's weights, not a LoRA."""
    save_file({"unet.conv_in.weight": np.zeros((4, 4), "<f4")}, str(path))
    return path


def pickled(path: Path) -> Path:
    """A pickle, as a .ckpt holds one (never loaded by the bot; only its bytes are read)."""
    path.write_bytes(pickle.dumps({"state_dict": [1, 2, 3]}, protocol=4))
    return path


def tiny_lora(path: Path, models_dir: Path, *, seed: int) -> tuple[Path, str]:
    """A real LoRA of the tiny model (random up-weights, so it changes the pictures) and its
    sha256: what the engine loads, as a user's model or as a style."""
    import torch
    from peft import LoraConfig

    from engine.models import FAMILIES
    from engine.models.loader import load_pipeline
    from engine.training.export import save_lora

    tiny = FAMILIES["tiny"]
    scratch = load_pipeline("tiny", tiny, "cpu", models_dir=models_dir)
    scratch.unet.add_adapter(LoraConfig(r=4, target_modules=list(tiny.lora_targets)), "style")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in scratch.unet.named_parameters():
            if "lora_B.style" in key:
                param.copy_(torch.randn(param.shape, generator=generator))
    return save_lora(scratch, "style", path)


async def give_model(booth: Booth, who: Identity, lora: bytes, sha256: str) -> None:
    """A consenting user with one photo and a trained model (its file in the blob store)."""
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    key = await booth.blobs.put(b"a photo of " + who.user_id.encode())
    photo = NewPhoto("2" * 64, key, key, b"\0" * 512, "0" * 16, (0, 0, 9, 9), 100.0)
    await booth.repo.add_photos(user.id, [photo])
    await booth.repo.set_trigger_word(user.id, "bavoki")
    blob = await booth.blobs.put(lora)
    await booth.repo.add_lora(
        user.id, base_model="tiny", family="tiny", trigger_word="bavoki", blob=blob,
        sha256=sha256, recipe={},
    )  # fmt: skip


def same_model_file(a: bytes, b: bytes) -> bool:
    """Two safetensors files with the same tensors and metadata (their headers' key order
    may differ from one save to the next)."""
    from safetensors.numpy import load

    from engine.kohya import _metadata

    first, second = load(a), load(b)
    return (
        first.keys() == second.keys()
        and all(np.array_equal(first[k], second[k]) for k in first)
        and _metadata(a) == _metadata(b)
    )
