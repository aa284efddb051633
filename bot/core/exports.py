"""A user's model as a file in the format asked for: the kohya layout that AUTOMATIC1111,
Forge and ComfyUI load (the default), or the diffusers file the bot keeps.

A FLUX LoRA always leaves in the diffusers layout, which ComfyUI, Forge and diffusers
load as it is: kohya's FLUX layout names the original model's fused layers (one qkv
projection where diffusers has three), a conversion this bot does not make.

The kohya file is made by a child process (`python -m engine.kohya`, diffusers' own
conversion), so that the bot never imports torch; it takes a few seconds, once per
export.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys

from bot.core.types import BoothError, Export
from engine.kohya import KohyaInfo, model_method
from engine.models.families import FAMILIES
from storage.records import LoraRecord

__all__ = ["EXPORT_FORMATS", "kohya_file", "model_file"]

_log = logging.getLogger(__name__)

EXPORT_FORMATS = ("kohya", "diffusers")
_TIMEOUT = 300.0  # seconds: importing torch and diffusers on a slow disk


async def kohya_file(data: bytes, info: KohyaInfo) -> bytes:
    """`data`, a diffusers-format LoRA, converted to the kohya layout with `info`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engine.kohya",
        json.dumps(dataclasses.asdict(info)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(data), _TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise BoothError(
            "Making the kohya file took too long. Try again, or ask for the diffusers file."
        ) from None
    if process.returncode != 0 or not out:
        _log.error("the kohya conversion failed: %s", err.decode(errors="replace")[-2000:])
        raise BoothError(
            "Your model could not be converted to the kohya layout; the diffusers file "
            "(export format diffusers) loads in diffusers and ComfyUI's diffusers loader."
        )
    return out


async def model_file(lora: LoraRecord, data: bytes, fmt: str, steps: int) -> Export:
    """The model `lora` (its stored file `data`, trained for `steps`) as an Export in
    `fmt`, one of EXPORT_FORMATS."""
    title = f"selfiebooth-{lora.trigger_word}-v{lora.version}"
    method = model_method(data)
    filename = f"{title}.safetensors"
    family = FAMILIES.get(lora.family)
    if family is not None and family.pipeline == "flux":
        fmt = "diffusers"
    if fmt == "kohya":
        info = KohyaInfo(
            family=lora.family,
            base_model=lora.base_model,
            resolution=family.resolution if family is not None else 0,
            trigger_word=lora.trigger_word,
            steps=steps,
            title=title,
            date=lora.created_at[:19],
        )
        data = await kohya_file(data, info)
        # A1111 and Forge name an embedding by its file: the trigger word itself.
        inversion = method == "textual_inversion"
        filename = f"{lora.trigger_word}.safetensors" if inversion else f"{title}-kohya.safetensors"
    return Export(
        filename=filename,
        data=data,
        version=lora.version,
        trigger_word=lora.trigger_word,
        format=fmt,
        method=method,
        family_pipeline=family.pipeline if family is not None else "sd",
    )
