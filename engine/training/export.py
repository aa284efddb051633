"""Saving what a training learned as one model file (safetensors): the LoRA in the
diffusers format (of the UNet, or of FLUX's transformer), the trigger's embedding
(engine.training.embedding), or both."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import torch
from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import save_file

from engine.models.pipeline import Pipeline, denoiser, is_flux

__all__ = ["TRIGGER_KEY", "file_sha256", "save_lora", "save_model"]

# The model file's metadata key naming the token its embedding is for.
TRIGGER_KEY = "selfiebooth.trigger"


def save_model(
    pipeline: Pipeline,
    adapter: str | None,
    embeddings: dict[str, torch.Tensor],
    trigger: str,
    output: Path,
) -> tuple[Path, str]:
    """Write the UNet's `adapter` (when there is one) and `embeddings` to `output`; the
    path and its sha256. A LoRA alone is exactly the file `save_lora` writes."""
    if not embeddings:
        if adapter is None:
            raise ValueError("nothing to save: no adapter and no embedding")
        return save_lora(pipeline, adapter, output)
    tensors = dict(embeddings)
    metadata = {TRIGGER_KEY: trigger}
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".model-") as tmp:
        if adapter is not None:
            lora, _ = save_lora(pipeline, adapter, Path(tmp) / "lora.safetensors")
            with safe_open(str(lora), framework="pt") as f:
                metadata |= f.metadata() or {}
                tensors |= {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        staged = Path(tmp) / output.name
        save_file(tensors, str(staged), metadata=metadata)
        staged.replace(output)
    return output, file_sha256(output)


def save_lora(pipeline: Pipeline, adapter: str, output: Path) -> tuple[Path, str]:
    """Write `adapter` of the UNet (FLUX: the transformer) to `output` as
    train_dreambooth_lora.py does; return the path and its sha256. The file loads with
    `pipeline.load_lora_weights(output)`."""
    unet = denoiser(pipeline)
    component = "transformer" if is_flux(pipeline) else "unet"
    peft_state = get_peft_model_state_dict(unet, adapter_name=adapter)
    layers = convert_state_dict_to_diffusers(peft_state)  # type: ignore[no-untyped-call]
    config = unet.peft_config[adapter].to_dict()
    config["target_modules"] = sorted(config["target_modules"])  # a set is not JSON
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written next to the target and renamed into place: never half a file at `output`.
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".lora-") as tmp:
        type(pipeline).save_lora_weights(
            tmp,
            weight_name=output.name,
            safe_serialization=True,
            **{f"{component}_lora_layers": layers, f"{component}_lora_adapter_metadata": config},
        )
        (Path(tmp) / output.name).replace(output)
    return output, file_sha256(output)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
