"""Full-size SD1.5 / SDXL / FLUX.1-dev architectures with random weights, for
`bench/engine.py --full`.

The arithmetic of a diffusion model does not depend on its weights, so the real
architectures built from their published configs (written out below: the `unet/`,
`vae/` and `text_encoder*/` config.json of stable-diffusion-v1-5 and
stable-diffusion-xl-base-1.0, the `transformer/`, `vae/` and `text_encoder_2/` ones of
FLUX.1-dev) give honest speed and memory figures without a download. The tokenizer is
the byte-level one of `engine.models.tiny`; prompts are padded to 77 tokens either way,
so the text encoders do the same work. FLUX's T5 tokenizer is the tiny FLUX one, padding
to FLUX.1-dev's 512 tokens.

Training and generation go through the project's own code (`engine.training.train`,
`engine.generation.generate`), so the figures are the engine's: the family's half
precision, gradient checkpointing and SDPA attention on CUDA, batch 1 at the family's
native resolution.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
    FluxTransformer2DModel,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    T5Config,
    T5EncoderModel,
)

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate
from engine.models.families import FAMILIES, Family, dtype_for
from engine.models.pipeline import FLUX_MAX_SEQUENCE, Pipeline, denoiser
from engine.models.tiny import bytes_to_unicode
from engine.models.tiny_flux import t5_tokenizer
from engine.training import TrainingRequest, train

__all__ = ["FULL_FAMILIES", "FullFigures", "build_full", "measure", "run_full"]

FULL_FAMILIES = ("sd15", "sdxl", "flux")
TRIGGER = "sbx7"
PROMPT = f"a photo of {TRIGGER} person as an astronaut, detailed, studio lighting"

# --- configs -----------------------------------------------------------------------------

_SD15_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": [
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": [
        "UpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
        "CrossAttnUpBlock2D",
    ],
}

_SDXL_UNET: dict[str, Any] = {
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 2816,
    "sample_size": 128,
    "transformer_layers_per_block": [1, 2, 10],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "use_linear_projection": True,
}

_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
_SD15_VAE: dict[str, Any] = {**_VAE, "sample_size": 512, "scaling_factor": 0.18215}
_SDXL_VAE: dict[str, Any] = {
    **_VAE,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

# openai/clip-vit-large-patch14's text tower: SD1.5's encoder and SDXL's first one.
_CLIP_L: dict[str, Any] = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-05,
}
# laion/CLIP-ViT-bigG-14's text tower: SDXL's second encoder (with its projection).
_CLIP_BIGG: dict[str, Any] = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "hidden_act": "gelu",
    "projection_dim": 1280,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-05,
}

_SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
}

# Parameter counts of the published checkpoints: a config typo shows up as a mismatch.
EXPECTED_PARAMS: dict[str, dict[str, int]] = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {
        "unet": 2_567_463_684,
        "vae": 83_653_863,
        "text_encoder": 123_060_480,
        "text_encoder_2": 694_659_840,
    },
    "flux": {
        "transformer": 11_901_408_320,
        "vae": 83_819_683,
        "text_encoder": 123_060_480,
        "text_encoder_2": 4_762_310_656,
    },
}


# FLUX.1-dev's transformer/, vae/ and text_encoder_2/ (T5 v1.1 XXL's encoder) configs,
# and its scheduler's.
_FLUX_TRANSFORMER: dict[str, Any] = {
    "attention_head_dim": 128,
    "axes_dims_rope": [16, 56, 56],
    "guidance_embeds": True,
    "in_channels": 64,
    "joint_attention_dim": 4096,
    "num_attention_heads": 24,
    "num_layers": 19,
    "num_single_layers": 38,
    "patch_size": 1,
    "pooled_projection_dim": 768,
}
_FLUX_VAE: dict[str, Any] = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 2,
    "mid_block_add_attention": True,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 1024,
    "scaling_factor": 0.3611,
    "shift_factor": 0.1159,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}
_T5_XXL: dict[str, Any] = {
    "d_ff": 10240,
    "d_kv": 64,
    "d_model": 4096,
    "feed_forward_proj": "gated-gelu",
    "layer_norm_epsilon": 1e-6,
    "num_heads": 64,
    "num_layers": 24,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 32128,
}
_FLUX_SCHEDULER: dict[str, Any] = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def _tokenizer(directory: Path) -> CLIPTokenizer:
    """CLIP's tokenizer over a byte-level vocab, as engine.models.tiny builds it."""
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(tokens)}
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizer.from_pretrained(directory, model_max_length=77, local_files_only=True)
    return cast(CLIPTokenizer, tokenizer)


def _text_config(values: dict[str, Any], tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    bos = int(tokenizer.convert_tokens_to_ids("<|startoftext|>"))  # type: ignore[arg-type]
    eos = int(tokenizer.convert_tokens_to_ids("<|endoftext|>"))  # type: ignore[arg-type]
    return CLIPTextConfig(**values, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)


def build_full(name: str, device: torch.device, work_dir: Path) -> dict[str, Any]:
    """The components of family `name`'s pipeline, random weights, built on `device`.

    The models are built under `device` as the default device, so a CUDA build never
    holds the fp32 weights in host memory and a "meta" build allocates nothing.
    """
    if name not in FULL_FAMILIES:
        raise ValueError(f"no full-size architecture for {name!r}: use one of {FULL_FAMILIES}")
    tokenizer = _tokenizer(work_dir / "tokenizer")
    parts: dict[str, Any] = {"tokenizer": tokenizer}
    with torch.device(device):
        if name == "flux":
            parts["transformer"] = FluxTransformer2DModel.from_config(_FLUX_TRANSFORMER)  # type: ignore[no-untyped-call]
            parts["vae"] = AutoencoderKL.from_config(_FLUX_VAE)  # type: ignore[no-untyped-call]
            parts["text_encoder"] = CLIPTextModel(_text_config(_CLIP_L, tokenizer))
            parts["text_encoder_2"] = T5EncoderModel(T5Config(**_T5_XXL))
            parts["tokenizer_2"] = t5_tokenizer(FLUX_MAX_SEQUENCE)
        elif name == "sd15":
            parts["unet"] = UNet2DConditionModel.from_config(_SD15_UNET)  # type: ignore[no-untyped-call]
            parts["vae"] = AutoencoderKL.from_config(_SD15_VAE)  # type: ignore[no-untyped-call]
            parts["text_encoder"] = CLIPTextModel(_text_config(_CLIP_L, tokenizer))
        else:
            parts["unet"] = UNet2DConditionModel.from_config(_SDXL_UNET)  # type: ignore[no-untyped-call]
            parts["vae"] = AutoencoderKL.from_config(_SDXL_VAE)  # type: ignore[no-untyped-call]
            parts["text_encoder"] = CLIPTextModel(_text_config(_CLIP_L, tokenizer))
            parts["text_encoder_2"] = CLIPTextModelWithProjection(
                _text_config(_CLIP_BIGG, tokenizer)
            )
            parts["tokenizer_2"] = tokenizer
    # Outside the device context: schedulers keep their tables on the CPU.
    if name == "flux":
        parts["scheduler"] = FlowMatchEulerDiscreteScheduler.from_config(_FLUX_SCHEDULER)  # type: ignore[no-untyped-call]
    elif name == "sd15":
        parts["scheduler"] = PNDMScheduler.from_config(  # type: ignore[no-untyped-call]
            {**_SCHEDULER, "skip_prk_steps": True, "set_alpha_to_one": False}
        )
    else:
        parts["scheduler"] = EulerDiscreteScheduler.from_config(  # type: ignore[no-untyped-call]
            {**_SCHEDULER, "timestep_spacing": "leading", "interpolation_type": "linear"}
        )
    return parts


def param_counts(parts: dict[str, Any]) -> dict[str, int]:
    return {
        key: sum(p.numel() for p in module.parameters())
        for key, module in parts.items()
        if isinstance(module, torch.nn.Module)
    }


def assemble(name: str, parts: dict[str, Any]) -> Pipeline:
    if name == "flux":
        pipe: Any = FluxPipeline(**parts)  # type: ignore[no-untyped-call]
    elif name == "sd15":
        pipe = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
            **parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    else:
        pipe = StableDiffusionXLPipeline(**parts)  # type: ignore[no-untyped-call]
    pipe.set_progress_bar_config(disable=True)
    return cast(Pipeline, pipe)


# --- measuring ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FullFigures:
    weights_gib: float  # memory held by the pipeline before training (CUDA only)
    train_steps_per_s: float
    train_peak_gib: float
    gen_s_per_image: float
    gen_peak_gib: float


def _gib(n: int) -> float:
    return n / 2**30


def _peak(device: torch.device) -> Callable[[], float]:
    """Reset the CUDA peak-memory counter now; the returned function reads it (0 on CPU)."""
    if device.type != "cuda":
        return lambda: 0.0
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    return lambda: _gib(torch.cuda.max_memory_allocated(device))


def measure(
    pipe: Pipeline,
    family: Family,
    work_dir: Path,
    *,
    train_steps: int,
    gen_steps: int,
    gen_reps: int,
) -> FullFigures:
    """Train a LoRA with the project's trainer, then generate with it, timing both."""
    device = denoiser(pipe).device
    weights = _gib(torch.cuda.memory_allocated(device)) if device.type == "cuda" else 0.0
    res = family.resolution
    images = tuple(Image.new("RGB", (res, res), c) for c in ((200, 150, 120), (90, 60, 40)))
    request = TrainingRequest(images, TRIGGER, work_dir / "lora.safetensors", steps=train_steps)
    stamps: list[float] = []

    def progress(step: int, total: int, loss: float, eta: float) -> None:
        stamps.append(time.perf_counter())  # after float(loss): the step has finished

    read_peak = _peak(device)
    result = train(pipe, family, request, progress=progress)
    train_peak = read_peak()
    # Steps after the first: the first pays for kernel selection and allocator warm-up.
    steps_per_s = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else 0.0

    lora = LoraRef(result.path, result.sha256, TRIGGER)
    adapters = LoraCache(pipe)
    read_peak = _peak(device)
    times: list[float] = []
    for rep in range(gen_reps + 1):  # the first is a warm-up
        gen = GenerationRequest(PROMPT, lora=lora, seed=rep, steps=gen_steps)
        start = time.perf_counter()
        generate(pipe, gen, adapters=adapters)  # returns PNGs: the device has finished
        times.append(time.perf_counter() - start)
    gen_peak = read_peak()
    adapters.clear()
    return FullFigures(weights, steps_per_s, train_peak, statistics.median(times[1:]), gen_peak)


def print_figures(label: str, figures: FullFigures, train_steps: int, gen_steps: int) -> None:
    print(f"{label}")
    if figures.weights_gib:
        print(f"  weights on the device            {figures.weights_gib:8.2f} GiB")
    print(
        f"  training (batch 1, {train_steps} steps)     "
        f"{figures.train_steps_per_s:8.3f} steps/s   peak {figures.train_peak_gib:.2f} GiB"
    )
    print(
        f"  generation ({gen_steps} steps, 1 image)   "
        f"{figures.gen_s_per_image:8.3f} s/image   peak {figures.gen_peak_gib:.2f} GiB"
    )


def run_full(
    name: str,
    *,
    dry_run: bool,
    train_steps: int,
    gen_steps: int,
    gen_reps: int,
    models_dir: Path | None = None,
) -> int:
    """`--full NAME`: the figures on CUDA; with `dry_run`, a check of this code on a CPU."""
    family = FAMILIES[name]
    if not dry_run and not torch.cuda.is_available():
        print(
            f"--full {name} needs a CUDA GPU (torch {torch.__version__} sees none); "
            "use --dry-run to check the configs on this machine",
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="selfiebooth-full-") as tmp:
        work = Path(tmp)
        if dry_run:
            return _dry_run(name, work, models_dir or work / "models")
        device = torch.device("cuda")
        dtype = dtype_for(family, device)
        print(f"--full {name}: {torch.cuda.get_device_name(device)}, {dtype}, random weights")
        started = time.perf_counter()
        parts = build_full(name, device, work)
        for module in parts.values():
            if isinstance(module, torch.nn.Module):
                module.to(dtype=dtype).eval().requires_grad_(False)
        pipe = assemble(name, parts)
        torch.cuda.empty_cache()
        print(f"  built in {time.perf_counter() - started:.1f} s: {_counts_line(parts)}")
        figures = measure(
            pipe,
            family,
            work,
            train_steps=train_steps,
            gen_steps=gen_steps,
            gen_reps=gen_reps,
        )
        print_figures(
            f"{name} at {family.resolution}x{family.resolution}", figures, train_steps, gen_steps
        )
    return 0


def _counts_line(parts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in param_counts(parts).items())


def _dry_run(name: str, work: Path, models_dir: Path) -> int:
    """Build the configs on the meta device and check their sizes; run `measure` on tiny."""
    from engine.models.loader import load_pipeline

    parts = build_full(name, torch.device("meta"), work)
    assemble(name, parts)
    counts = param_counts(parts)
    print(f"--full {name} --dry-run: built on the meta device: {_counts_line(parts)}")
    wrong = {
        k: (v, EXPECTED_PARAMS[name][k]) for k, v in counts.items() if v != EXPECTED_PARAMS[name][k]
    }
    if wrong:
        print(f"  parameter counts differ from the published checkpoints (got, expected): {wrong}")
        return 1
    print("  parameter counts match the published checkpoints")
    # The measuring code itself, on the tiny model on this CPU (no memory figures).
    tiny = FAMILIES["tiny-flux" if name == "flux" else "tiny"]
    pipe = load_pipeline(tiny.name, tiny, "cpu", models_dir=models_dir)
    figures = measure(pipe, tiny, work, train_steps=3, gen_steps=2, gen_reps=1)
    print_figures("  measuring code on tiny/cpu (not a figure)", figures, 3, 2)
    return 0
