"""A user's LoRA in the kohya layout that AUTOMATIC1111, Forge and ComfyUI load:
`lora_unet_down_blocks_0_..._to_q.lora_down.weight`, an `.alpha` per module, and the
`ss_*` and `modelspec.*` metadata those tools show.

The keys are diffusers' own conversion (`convert_unet_state_dict_to_peft`, then
`convert_state_dict_to_kohya`); the alphas are then set to the trained ones, since
diffusers writes the rank there, which would rescale a LoRA trained with another alpha.

A model with a learned trigger token (engine.training.embedding) exports it as A1111
reads embeddings: textual inversion as an embedding file of its own (`emb_params`, or
`clip_l` and `clip_g` for SDXL), named after the token, since A1111 and Forge call an
embedding by its file name; pivotal tuning as the kohya LoRA with the vectors bundled
in, under `bundle_emb.<token>.*`, which A1111 and Forge load with the LoRA.

    python -m engine.kohya '{"family": "sd15", ...}' < lora.safetensors > kohya.safetensors

The bot runs it as a child process, so that the bot never imports torch
(bot.core.exports); this module imports torch only inside `to_kohya`.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["KohyaInfo", "model_method", "to_kohya"]

# engine.training.embedding.EMBEDDING_PREFIX, without importing torch here.
_EMBEDDING = "embedding."

# family -> (ss_base_model_version, modelspec.architecture, modelspec.implementation)
_ARCHITECTURES = {
    "sd15": ("sd_v1", "stable-diffusion-v1/lora", "diffusers"),
    "sdxl": (
        "sdxl_base_v1-0",
        "stable-diffusion-xl-v1-base/lora",
        "https://github.com/Stability-AI/generative-models",
    ),
    # The tiny offline model is no published architecture: said so, not passed off.
    "tiny": ("selfiebooth_tiny", "selfiebooth-tiny/lora", "diffusers"),
}


@dataclass(frozen=True, slots=True)
class KohyaInfo:
    """What the tools show about a LoRA, beside its weights."""

    family: str
    base_model: str  # the base model's hub id or name
    resolution: int
    trigger_word: str
    steps: int
    title: str  # e.g. "selfiebooth-sbx7-v2"
    date: str  # ISO 8601, when it was trained


def to_kohya(data: bytes, info: KohyaInfo) -> bytes:
    """The diffusers-format LoRA file `data` (as engine.training.export writes it) in the
    kohya layout."""
    import torch
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_kohya,
        convert_unet_state_dict_to_peft,
    )
    from safetensors.torch import load, save

    if info.family not in _ARCHITECTURES:
        raise ValueError(f"no kohya layout is known for the {info.family!r} family")
    adapter = json.loads(_metadata(data).get("lora_adapter_metadata", "{}"))
    rank, alpha = adapter.get("unet.r"), adapter.get("unet.lora_alpha")
    tensors = load(data)
    vectors = {
        k.removeprefix(_EMBEDDING): tensors.pop(k)
        for k in list(tensors)
        if k.startswith(_EMBEDDING)
    }
    if vectors and not tensors:  # textual inversion: A1111's embedding file
        return bytes(save(vectors, metadata=_embedding_metadata(info)))
    try:
        kohya: dict[str, torch.Tensor] = convert_state_dict_to_kohya(  # type: ignore[no-untyped-call]
            convert_unet_state_dict_to_peft(tensors)  # type: ignore[no-untyped-call]
        )
    except ValueError:  # diffusers found no LoRA layout it knows
        kohya = {}
    if not kohya or not all(key.startswith("lora_") for key in kohya):
        raise ValueError("the file holds no LoRA weights diffusers can convert")
    for key, value in kohya.items():
        if key.endswith(".alpha"):
            # Kohya stores alpha as a float scalar; the scale applied is alpha / rank.
            trained = alpha if alpha is not None else int(value)
            kohya[key] = torch.tensor(float(trained), dtype=torch.float32)
    rank = rank or next(v.shape[0] for k, v in kohya.items() if k.endswith("lora_down.weight"))
    for slot, vector in vectors.items():
        kohya[f"bundle_emb.{info.trigger_word}.{slot}"] = vector
    return bytes(save(kohya, metadata=_kohya_metadata(info, int(rank), alpha or rank)))


def model_method(data: bytes) -> str:
    """How the model file `data` was trained, from its header: "lora",
    "textual_inversion" or "pivotal" ("lora" when the header cannot be read: the
    conversion then says what is wrong with the file)."""
    try:
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + length])
    except (struct.error, ValueError):
        return "lora"
    keys = [k for k in header if k != "__metadata__"]
    embedded = [k for k in keys if k.startswith(_EMBEDDING)]
    if not embedded:
        return "lora"
    return "textual_inversion" if len(embedded) == len(keys) else "pivotal"


def _embedding_metadata(info: KohyaInfo) -> dict[str, str]:
    architecture = _ARCHITECTURES[info.family][1]
    return {
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": architecture.replace("/lora", "/textual-inversion"),
        "modelspec.title": info.title,
        "modelspec.date": info.date,
        "modelspec.trigger_phrase": info.trigger_word,
        "ss_training_comment": f"selfiebooth textual inversion; {info.steps} steps",
    }


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header."""
    (length,) = struct.unpack("<Q", data[:8])
    header: dict[str, Any] = json.loads(data[8 : 8 + length])
    return dict(header.get("__metadata__", {}))


def _kohya_metadata(info: KohyaInfo, rank: int, alpha: float) -> dict[str, str]:
    base_version, architecture, implementation = _ARCHITECTURES[info.family]
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(rank),
        "ss_network_alpha": str(float(alpha)),
        "ss_base_model_version": base_version,
        "ss_sd_model_name": info.base_model,
        "ss_resolution": f"({info.resolution}, {info.resolution})",
        "ss_max_train_steps": str(info.steps),
        "ss_steps": str(info.steps),
        "ss_output_name": info.title,
        "ss_training_comment": f"selfiebooth; trigger word: {info.trigger_word}",
        "ss_tag_frequency": json.dumps({"selfies": {f"{info.trigger_word} person": 1}}),
        "ss_v2": "False",
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": architecture,
        "modelspec.implementation": implementation,
        "modelspec.title": info.title,
        "modelspec.resolution": f"{info.resolution}x{info.resolution}",
        "modelspec.date": info.date,
        "modelspec.trigger_phrase": info.trigger_word,
        "modelspec.usage_hint": f"Write '{info.trigger_word} person' in the prompt.",
        "modelspec.prediction_type": "epsilon",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("info", help="KohyaInfo as JSON")
    args = parser.parse_args(argv)
    info = KohyaInfo(**json.loads(args.info))
    try:
        out = to_kohya(sys.stdin.buffer.read(), info)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.buffer.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
