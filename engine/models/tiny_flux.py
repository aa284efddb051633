"""The tiny FLUX pipeline: diffusers' FluxPipeline over random weights, offline.

Built like the tiny SD pipeline (engine.models.tiny) and like diffusers' own FluxPipeline
tests: a `FluxTransformer2DModel` from a small config, with guidance embedding as
FLUX.1-dev has; a CLIP text encoder (its pooled output) and a T5 encoder (its hidden
states) from configs; the tiny VAE with FLUX's latent shift and scale. The T5 tokenizer
(transformers 5's `T5Tokenizer`, backed by tokenizers) is over a small Unigram vocabulary
made in code: one piece per printable ASCII character, with and without the word-start
mark, as SentencePiece spells a word it has no piece for.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import cast

import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

from engine.models.pipeline import Pipeline
from engine.models.tiny import TINY_SEED, clip_config, clip_tokenizer, ensure_built, tiny_vae

__all__ = ["TINY_FLUX_VERSION", "build_tiny_flux", "load_tiny_flux", "t5_tokenizer"]

# Bumped whenever build_tiny_flux makes a different model; a cache of another version is
# rebuilt.
TINY_FLUX_VERSION = 1
# T5's special pieces, at the ids T5's own vocabulary gives them.
_PAD, _EOS, _UNK = "<pad>", "</s>", "<unk>"
_MARK = "\u2581"  # SentencePiece's word-start mark
# The T5 prompt length: the pipeline pads every prompt to it (FLUX.1-dev uses 512).
MAX_SEQUENCE_LENGTH = 64


def t5_tokenizer(max_length: int = MAX_SEQUENCE_LENGTH) -> T5Tokenizer:
    """A T5 tokenizer over a Unigram model of single characters, made in code; FLUX pads
    prompts to `max_length` tokens."""
    chars = sorted(set(string.printable) - set(string.whitespace))
    pieces = [(_PAD, 0.0), (_EOS, 0.0), (_UNK, 0.0), (_MARK, -2.0)]
    pieces += [(_MARK + c, -2.5) for c in chars] + [(c, -3.0) for c in chars]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_MARK, prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement=_MARK, prepend_scheme="always")
    # T5 ends each sequence with </s> and starts it with nothing.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"$A {_EOS}", pair=f"$A {_EOS} $B {_EOS}", special_tokens=[(_EOS, 1)]
    )
    return T5Tokenizer(
        tokenizer_object=tokenizer,
        eos_token=_EOS,
        unk_token=_UNK,
        pad_token=_PAD,
        extra_ids=0,
        model_max_length=max_length,
    )


def build_tiny_flux(work_dir: Path) -> Pipeline:
    """Build the tiny FLUX pipeline from configs with seeded random weights."""
    tokenizer = clip_tokenizer(work_dir)
    tokenizer_2 = t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(TINY_SEED)
        # 4 latent channels packed 2x2 into 16; the rotary axes add up to the head size.
        transformer = FluxTransformer2DModel(  # type: ignore[no-untyped-call]
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=True,
            axes_dims_rope=(4, 4, 8),
        )
        # FLUX's VAE has no quant convs and shifts its latents before scaling them.
        vae = tiny_vae(
            use_quant_conv=False,
            use_post_quant_conv=False,
            shift_factor=0.0609,
            scaling_factor=1.5035,
        )
        text_encoder = CLIPTextModel(clip_config(tokenizer, num_hidden_layers=2, projection_dim=32))
        text_encoder_2 = T5EncoderModel(
            T5Config(
                vocab_size=len(tokenizer_2),
                d_model=32,
                d_kv=8,
                d_ff=37,
                num_layers=2,
                num_heads=4,
                relative_attention_num_buckets=8,
                pad_token_id=0,
                eos_token_id=1,
            )
        )
    # FLUX.1-dev's scheduler config, its sequence lengths scaled to 256 px images.
    scheduler = FlowMatchEulerDiscreteScheduler(  # type: ignore[no-untyped-call]
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=64,
        max_image_seq_len=1024,
    )
    pipe = FluxPipeline(  # type: ignore[no-untyped-call]
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )
    return cast(Pipeline, pipe)


def load_tiny_flux(cache_dir: Path, dtype: torch.dtype = torch.float32) -> Pipeline:
    """The tiny FLUX pipeline from `cache_dir`, built there first if needed."""
    pipe = FluxPipeline.from_pretrained(  # type: ignore[no-untyped-call]
        ensure_built(cache_dir, build_tiny_flux, TINY_FLUX_VERSION),
        local_files_only=True,
        dtype=dtype,
    )
    if not isinstance(pipe, FluxPipeline):
        raise TypeError(f"{cache_dir} holds a {type(pipe).__name__}, not the tiny FLUX pipeline")
    return cast(Pipeline, pipe)
