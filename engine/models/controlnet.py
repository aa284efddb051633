"""The ControlNet that edge control (`--edges`) feeds the canny edges to, one per
deployment (config `model.controlnet`).

"auto" is the tiny model's own for the tiny base, and none for the others: a real base
needs a ControlNet trained for it (lllyasviel/sd-controlnet-canny for SD 1.5,
diffusers/controlnet-canny-sdxl-1.0 for SDXL), named by its local directory or hub id.
It is read from safetensors only. "" turns edge control off.

The tiny ControlNet is made for the tiny UNet (`ControlNetModel.from_unet`, from its
config: its layers may be wrapped by LoRA adapters by then) with random weights from a
fixed seed, its zero-initialised output convolutions included: a fresh ControlNet adds
nothing until trained, and the tests need edges that change the picture.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from diffusers import ControlNetModel

from engine.models.pipeline import Pipeline

__all__ = ["TINY_CONTROLNET_SEED", "load_controlnet", "tiny_controlnet"]

TINY_CONTROLNET_SEED = 1


def load_controlnet(spec: str, base: str, pipeline: Pipeline) -> ControlNetModel | None:
    """The ControlNet `spec` names for `base` (see above), on the pipeline's device and
    dtype; None when edge control is off."""
    if spec == "" or (spec == "auto" and base != "tiny"):
        return None
    controlnet: Any
    if spec == "auto":
        controlnet = tiny_controlnet(pipeline)
    else:
        controlnet = ControlNetModel.from_pretrained(  # type: ignore[no-untyped-call]
            spec, use_safetensors=True
        )
    return cast(
        ControlNetModel, controlnet.to(device=pipeline.unet.device, dtype=pipeline.unet.dtype)
    )


def tiny_controlnet(pipeline: Pipeline) -> ControlNetModel:
    """A ControlNet of the tiny UNet whose output convolutions are not zero (see above)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_CONTROLNET_SEED)
        controlnet = ControlNetModel.from_unet(pipeline.unet, load_weights_from_unet=False)
    generator = torch.Generator("cpu").manual_seed(TINY_CONTROLNET_SEED)

    def he(conv: torch.nn.Conv2d, gain: float = 1.0) -> None:
        fan_in = conv.weight[0].numel()
        conv.weight.copy_(
            torch.randn(conv.weight.shape, generator=generator) * gain * (2 / fan_in) ** 0.5
        )

    with torch.no_grad():
        # The edges' embedding strong enough to steer, the residuals small enough not to
        # swamp the UNet (found by trying: different edges then move pixels by about 1).
        embedding = controlnet.controlnet_cond_embedding
        for conv in (embedding.conv_in, *embedding.blocks):
            he(conv)
        he(embedding.conv_out, gain=3.0)
        for conv in (*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator) * 0.3)
    return cast(ControlNetModel, controlnet)
