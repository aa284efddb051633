"""The tiny Stable Diffusion 1.x pipeline: real diffusers code paths, random weights, no network.

Built from configs as diffusers' own pipeline tests build their dummy components, with a
fixed seed, saved once with `save_pretrained` into a cache directory and loaded from there
afterwards, so every process sees the same weights. The VAE downsamples by 8 like SD's, with
few channels, so the 32x32 latents of the small UNet decode to 256x256 images: large enough
to carry the invisible watermark, while the UNet, which does most of the work, stays small.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from engine.models.pipeline import Pipeline

__all__ = [
    "TINY_SEED",
    "TINY_VERSION",
    "build_tiny",
    "bytes_to_unicode",
    "clip_config",
    "clip_tokenizer",
    "ensure_built",
    "ensure_tiny",
    "load_tiny",
    "tiny_vae",
]

_log = logging.getLogger(__name__)

TINY_SEED = 0
# Bumped whenever build_tiny makes a different model; a cache of another version is rebuilt.
TINY_VERSION = 2  # 2: VAE with scale factor 8 (256 px images); 1: scale factor 2 (64 px)
_STAMP = "selfiebooth-tiny.json"
_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, which CLIP's BPE works on.

    Printable Latin-1 bytes map to themselves; the other 68 go to code points from 256 up.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _write_tokenizer_files(directory: Path) -> Path:
    """A byte-level vocab (no merges: every word is spelled out byte by byte)."""
    symbols = list(bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), _BOS, _EOS]
    directory.mkdir(parents=True, exist_ok=True)
    vocab = directory / "vocab.json"
    vocab.write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return vocab


def clip_tokenizer(work_dir: Path) -> CLIPTokenizer:
    """The byte-level CLIP tokenizer of the tiny models, its files written in `work_dir`."""
    vocab = _write_tokenizer_files(work_dir / "tokenizer-src")
    tokenizer = CLIPTokenizer.from_pretrained(
        vocab.parent, model_max_length=77, local_files_only=True
    )
    if not isinstance(tokenizer, CLIPTokenizer):
        raise TypeError(f"the tiny vocabulary loaded as a {type(tokenizer).__name__}")
    return tokenizer


def clip_config(tokenizer: CLIPTokenizer, **config: Any) -> CLIPTextConfig:
    """A small CLIP text encoder's config over `tokenizer`, `config` added."""
    eos = int(tokenizer.convert_tokens_to_ids(_EOS))  # type: ignore[arg-type]
    return CLIPTextConfig(
        bos_token_id=int(tokenizer.convert_tokens_to_ids(_BOS)),  # type: ignore[arg-type]
        eos_token_id=eos,
        pad_token_id=eos,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        max_position_embeddings=77,
        vocab_size=len(tokenizer),
        **config,
    )


def tiny_vae(**config: Any) -> AutoencoderKL:
    """The tiny models' VAE (random weights from the global RNG), `config` added."""
    # Four blocks: a scale factor of 8, as SD's VAE. Few channels (and groups of 8 for
    # the group norms) keep decoding a 256 px image at about 30 ms on a CPU.
    return AutoencoderKL(  # type: ignore[no-untyped-call]
        block_out_channels=(8, 8, 16, 32),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=256,
        **config,
    )


def build_tiny(work_dir: Path) -> Pipeline:
    """Build the tiny pipeline from configs with seeded random weights (no files read)."""
    tokenizer = clip_tokenizer(work_dir)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
            block_out_channels=(32, 64),
            layers_per_block=2,
            sample_size=32,
            in_channels=4,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32,
        )
        vae = tiny_vae()
        text_encoder = CLIPTextModel(clip_config(tokenizer, num_hidden_layers=5))
    scheduler = DDIMScheduler(  # type: ignore[no-untyped-call]
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(  # type: ignore[no-untyped-call]
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return cast(Pipeline, pipe)


def ensure_tiny(cache_dir: Path) -> Path:
    """Build and save the tiny pipeline into `cache_dir` unless this version is there."""
    return ensure_built(cache_dir, build_tiny, TINY_VERSION)


def ensure_built(cache_dir: Path, build: Callable[[Path], Any], version: int) -> Path:
    """Save the pipeline `build(work_dir)` makes into `cache_dir`, unless `version` of it
    is there already; safe when several processes do it at once."""
    if _is_current(cache_dir, version):
        return cache_dir
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir.parent, prefix=".tiny-") as tmp:
        staging = Path(tmp) / "pipeline"
        pipe: Any = build(Path(tmp))
        pipe.save_pretrained(staging, safe_serialization=True)
        (staging / _STAMP).write_text(json.dumps({"version": version}), encoding="utf-8")
        if cache_dir.exists() and not _is_current(cache_dir, version):
            # An older build: moved aside first, so that the rename below stays atomic.
            stale = Path(tmp) / "stale"
            try:
                cache_dir.rename(stale)
            except OSError:
                pass  # another process moved it already
            else:
                _log.info("replacing the tiny pipeline in %s (an older version)", cache_dir)
        try:
            staging.rename(cache_dir)  # atomic: a reader never sees half a pipeline
        except OSError:
            if not _is_current(cache_dir, version):
                raise
            shutil.rmtree(staging)  # another process finished first
    _log.info("built the tiny pipeline in %s", cache_dir)
    return cache_dir


def _is_current(cache_dir: Path, version: int) -> bool:
    try:
        stamp = json.loads((cache_dir / _STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (cache_dir / "model_index.json").is_file() and stamp == {"version": version}


def load_tiny(cache_dir: Path, dtype: torch.dtype = torch.float32) -> Pipeline:
    """The tiny pipeline from `cache_dir`, built there first if needed."""
    pipe = StableDiffusionPipeline.from_pretrained(  # type: ignore[no-untyped-call]
        ensure_tiny(cache_dir), local_files_only=True, safety_checker=None, dtype=dtype
    )
    if not isinstance(pipe, StableDiffusionPipeline):
        raise TypeError(f"{cache_dir} holds a {type(pipe).__name__}, not the tiny pipeline")
    return cast(Pipeline, pipe)
