"""Resumable training checkpoints, written without pickle.

A checkpoint is a directory `step-NNNNNN/` holding:
- `lora.safetensors`: the trainable (LoRA) parameters of the UNet, by parameter name;
- `optimizer.safetensors`: AdamW's per-parameter state, keyed `<param index>.<name>`, and
  the training generator's RNG state under `rng`;
- `state.json`: the step, the recipe and what the run was trained on.
Nothing here is ever unpickled; the param groups are rebuilt from the recipe on resume.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from engine.models.recipe import TrainingRecipe

__all__ = ["CheckpointState", "latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_FORMAT = 1
_KEEP = 2  # older checkpoints than the last two are removed


@dataclass(frozen=True, slots=True)
class CheckpointState:
    step: int
    total_steps: int
    recipe: TrainingRecipe
    seed: int
    trigger: str
    images: int


def save_checkpoint(
    root: Path,
    state: CheckpointState,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> Path:
    """Write a checkpoint under `root` atomically and return its directory."""
    final = root / f"step-{state.step:06d}"
    staging = root / f".step-{state.step:06d}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(
        {name: p.detach().cpu().contiguous() for name, p in params.items()},
        staging / "lora.safetensors",
    )
    tensors = {"rng": generator.get_state()}
    for index, slot in optimizer.state_dict()["state"].items():
        for key, value in slot.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(tensors, staging / "optimizer.safetensors")
    meta = {
        "format": _FORMAT,
        "step": state.step,
        "total_steps": state.total_steps,
        "recipe": state.recipe.to_dict(),
        "seed": state.seed,
        "trigger": state.trigger,
        "images": state.images,
    }
    (staging / "state.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    staging.rename(final)
    for old in sorted(root.glob("step-*"))[:-_KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`, if any."""
    done = [d for d in sorted(root.glob("step-*")) if (d / "state.json").is_file()]
    return done[-1] if done else None


def load_checkpoint(
    directory: Path,
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> CheckpointState:
    """Restore `params`, `optimizer` and `generator` in place from `directory`."""
    meta = json.loads((directory / "state.json").read_text(encoding="utf-8"))
    if meta.get("format") != _FORMAT:
        raise ValueError(f"checkpoint {directory} has format {meta.get('format')!r}, not {_FORMAT}")
    saved = load_file(directory / "lora.safetensors")
    if saved.keys() != params.keys():
        missing = sorted(params.keys() - saved.keys())[:3]
        raise ValueError(f"checkpoint {directory} does not match the model: missing {missing}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    tensors = load_file(directory / "optimizer.safetensors")
    generator.set_state(tensors.pop("rng"))
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = value
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})
    return CheckpointState(
        step=int(meta["step"]),
        total_steps=int(meta["total_steps"]),
        recipe=TrainingRecipe.from_dict(meta["recipe"]),
        seed=int(meta["seed"]),
        trigger=str(meta["trigger"]),
        images=int(meta["images"]),
    )
