"""Model families: what the rest of the program may know about a base model.

Nothing outside `engine.models` assumes a particular family; intake asks it for the
training resolution of the configured base model, training for the LoRA recipe and
target modules, loading for the pipeline kind and the dtype on a device, and the core for
the generation defaults and the training methods it offers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from engine.jobs import TRAINING_METHODS
from engine.models.recipe import TrainingRecipe

if TYPE_CHECKING:
    import torch

__all__ = ["FAMILIES", "FAMILY_NAMES", "Family", "dtype_for", "resolve_family"]

# The UNet attention projections; the set diffusers' train_dreambooth_lora.py and
# train_dreambooth_lora_sdxl.py put LoRA on.
UNET_ATTENTION: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
# FLUX's transformer: the attention projections of the image and the text streams and
# the feed-forward layers of both; diffusers' train_dreambooth_lora_flux.py default
# (--lora_layers unset), which is also what kohya sd-scripts' networks/lora_flux.py
# trains in the double and single blocks.
FLUX_TARGETS: tuple[str, ...] = (
    "attn.to_k",
    "attn.to_q",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_k_proj",
    "attn.add_q_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
    "ff.net.0.proj",
    "ff.net.2",
    "ff_context.net.0.proj",
    "ff_context.net.2",
)


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    # Square training resolution in pixels: face crops are stored at this size.
    resolution: int
    # Which diffusers pipeline class loads it: "sd" (StableDiffusionPipeline, SD1.x/2.x
    # and the tiny one), "sdxl" (StableDiffusionXLPipeline) or "flux" (FluxPipeline).
    pipeline: Literal["sd", "sdxl", "flux"]
    recipe: TrainingRecipe
    # Half precision used on CUDA; CPUs always run fp32.
    cuda_dtype: Literal["float16", "bfloat16"]
    lora_targets: tuple[str, ...] = UNET_ATTENTION
    # The width of the text features the UNet attends to (its config's
    # cross_attention_dim): 768 for SD1.x, 1024 for SD2.x, 2048 for SDXL. A style LoRA's
    # attn2.to_k/to_v take this many inputs, which tells its family from its header.
    cross_attention_dim: int = 768
    # What /imagine uses where the user sets no --steps or --guidance; None: the
    # request's own defaults (engine.jobs.STEPS, GUIDANCE).
    steps: int | None = None
    guidance: float | None = None
    # The training methods (engine.training.embedding.METHODS) this family can learn.
    methods: tuple[str, ...] = TRAINING_METHODS


# The tiny models' recipe, sized for tests: a high learning rate so a few steps visibly
# move the output, and batch 4 as in diffusers' train_dreambooth_lora.py default.
TINY_RECIPE = TrainingRecipe(
    rank=4,
    alpha=4,
    learning_rate=1e-3,
    steps_per_photo=4,
    min_steps=8,
    max_steps=40,
    batch_size=4,
)

FAMILIES: dict[str, Family] = {
    # Random weights built from configs; 32x32 latents (256 px images through a VAE that
    # scales by 8, as SD's) keep training and generation to seconds on a CPU.
    "tiny": Family(
        "tiny",
        256,
        "sd",
        TINY_RECIPE,
        cuda_dtype="bfloat16",
        cross_attention_dim=32,
    ),
    # rank 16 / alpha = rank: common face-LoRA practice (diffusers' default rank 4 underfits
    # identities; its scripts set alpha = rank). lr 1e-4 and batch 1: the DreamBooth LoRA
    # example in diffusers' examples/dreambooth/README.md. ~100 steps per photo clamped to
    # 400..1500: the usual DreamBooth-for-faces rule of thumb (HF blog "Training Stable
    # Diffusion with Dreambooth using Diffusers": faces need 800-1200 steps). fp16 weights
    # with fp32 LoRA parameters, as the script's --mixed_precision fp16.
    "sd15": Family(
        "sd15",
        512,
        "sd",
        TrainingRecipe(
            rank=16,
            alpha=16,
            learning_rate=1e-4,
            steps_per_photo=100,
            min_steps=400,
            max_steps=1500,
            batch_size=1,
        ),
        cuda_dtype="float16",
    ),
    # Same practice; lr 1e-4, batch 1 and 500-step runs from diffusers' README_sdxl.md.
    # bf16 because the SDXL VAE overflows in fp16 (the README recommends an fp16-fixed VAE).
    "sdxl": Family(
        "sdxl",
        1024,
        "sdxl",
        TrainingRecipe(
            rank=16,
            alpha=16,
            learning_rate=1e-4,
            steps_per_photo=80,
            min_steps=400,
            max_steps=1200,
            batch_size=1,
        ),
        cuda_dtype="bfloat16",
        cross_attention_dim=2048,
    ),
    # FLUX.1-dev and -schnell. From the FLUX trainers' defaults: rank 16 (fluxgym's
    # "network_dim" default; diffusers' README_flux.md trains rank 16 too), lr 1e-4 (the
    # low end of 1e-4..4e-4 that diffusers' README_flux.md and kohya's flux_train_network
    # README use; fluxgym's default is 8e-4 for its 512 px runs), about 1000 steps for
    # 10 to 20 photos (fluxgym: 10 repeats x 16 epochs of ~10 photos; the diffusers
    # README's 1000 to 1500), batch 1, bf16 (diffusers' --mixed_precision bf16; FLUX has
    # no fp16 weights) and a guidance of 1 during training (--guidance_scale 1 in both).
    # Generation: 28 steps at guidance 3.5 for dev, the model card's; schnell's is 4 steps
    # and no guidance (resolve_family gives it those).
    "flux": Family(
        "flux",
        1024,
        "flux",
        TrainingRecipe(
            rank=16,
            alpha=16,
            learning_rate=1e-4,
            steps_per_photo=70,
            min_steps=600,
            max_steps=1500,
            batch_size=1,
        ),
        cuda_dtype="bfloat16",
        lora_targets=FLUX_TARGETS,
        cross_attention_dim=4096,  # T5-XXL's width, what the joint attention takes in
        steps=28,
        guidance=3.5,
        methods=("lora",),
    ),
    # The tiny FLUX (engine.models.tiny_flux): random weights, 256 px, the tiny recipe.
    "tiny-flux": Family(
        "tiny-flux",
        256,
        "flux",
        TINY_RECIPE,
        cuda_dtype="bfloat16",
        lora_targets=FLUX_TARGETS,
        cross_attention_dim=32,
        steps=28,
        guidance=3.5,
        methods=("lora",),
    ),
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)
# FLUX.1-schnell is distilled for few steps and takes no guidance (its model card).
_SCHNELL_STEPS, _SCHNELL_GUIDANCE = 4, 0.0


def resolve_family(base: str, family: str = "auto") -> Family:
    """The family named in config, or, for "auto", the one `base` most likely is."""
    if family != "auto":
        if family not in FAMILIES:
            raise ValueError(f"unknown model family {family!r}: use one of {FAMILY_NAMES}")
        chosen = FAMILIES[family]
    elif base in ("tiny", "tiny-flux"):
        chosen = FAMILIES[base]
    elif "flux" in base.lower():
        chosen = FAMILIES["flux"]
    elif "xl" in base.lower():
        chosen = FAMILIES["sdxl"]
    else:
        chosen = FAMILIES["sd15"]
    if chosen.name == "flux" and "schnell" in base.lower():
        return replace(chosen, steps=_SCHNELL_STEPS, guidance=_SCHNELL_GUIDANCE)
    return chosen


def dtype_for(family: Family, device: torch.device | str) -> torch.dtype:
    """fp32 on CPU (half precision is slow or unsupported there); the family's half on CUDA."""
    import torch  # here, so that asking about families does not load torch

    if torch.device(device).type != "cuda":
        return torch.float32
    if family.cuda_dtype == "bfloat16" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return getattr(torch, family.cuda_dtype)  # type: ignore[no-any-return]
