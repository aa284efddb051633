"""Loading a base model as a diffusers pipeline on a device, in its family's dtype.

"tiny" and "tiny-flux" are the pipelines built offline by `engine.models.tiny` and
`engine.models.tiny_flux`; anything else is a hub model
id or a local directory handed to `from_pretrained` with the family's pipeline class. This
is the one place that knows which class that is.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import FluxPipeline, StableDiffusionPipeline, StableDiffusionXLPipeline

from engine.models.families import Family, dtype_for
from engine.models.memory import MemoryOptions, place
from engine.models.pipeline import Pipeline
from engine.models.tiny import load_tiny
from engine.models.tiny_flux import load_tiny_flux

__all__ = ["Pipeline", "load_pipeline", "pipeline_class"]

_log = logging.getLogger(__name__)


_Loaded = StableDiffusionPipeline | StableDiffusionXLPipeline | FluxPipeline


def pipeline_class(family: Family) -> type[_Loaded]:
    if family.pipeline == "sdxl":
        return StableDiffusionXLPipeline
    if family.pipeline == "flux":
        return FluxPipeline
    return StableDiffusionPipeline


def load_pipeline(
    base: str,
    family: Family,
    device: torch.device | str,
    *,
    models_dir: Path,
    memory: MemoryOptions | None = None,
) -> Pipeline:
    """`base` loaded for `family` on `device`; the tiny model lives in `models_dir / "tiny"`.

    Only local files are read for the tiny model; a hub id is fetched by diffusers as
    usual (or from its cache), a directory is read as it is.
    """
    device = torch.device(device)
    dtype = dtype_for(family, device)
    pipe: Any
    if base in ("tiny", "tiny-flux"):
        if family.name != base:
            raise ValueError(f"base {base!r} needs family {base!r}, got {family.name!r}")
        load = load_tiny if base == "tiny" else load_tiny_flux
        pipe = load(models_dir / base, dtype=dtype)
    else:
        cls = pipeline_class(family)
        kwargs: dict[str, object] = {"dtype": dtype}
        if cls is StableDiffusionPipeline:
            # The engine filters every image itself; diffusers' checker is not used.
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        local = Path(base).expanduser()
        source = str(local) if local.is_dir() else base
        pipe = cls.from_pretrained(source, **kwargs)  # type: ignore[no-untyped-call]
    if not isinstance(pipe, pipeline_class(family)):
        raise TypeError(
            f"{base!r} loaded as {type(pipe).__name__}, not a family {family.name!r} pipeline"
        )
    loaded = cast(Pipeline, pipe)
    place(loaded, device, memory or MemoryOptions())
    loaded.set_progress_bar_config(disable=True)
    _log.info("loaded %s (%s) on %s as %s", base, family.name, device, dtype)
    return loaded
