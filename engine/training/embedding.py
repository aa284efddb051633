"""The trigger word as a learned token: textual inversion, and the embedding half of
pivotal tuning (cog-sdxl, diffusers' advanced DreamBooth script).

The trigger becomes one new token in each of the pipeline's tokenizers, initialised
from the class word ("person"), as diffusers' textual_inversion.py does. While training,
a forward hook on each encoder's input embeddings puts the trainable vector in the
token's place, so that only the vector is optimised, not the whole vocabulary.

A model file keeps the vectors under `embedding.<slot>`, beside its LoRA weights (if
any): the slot is A1111's name, `emb_params` for SD 1.x (one encoder), `clip_l` and
`clip_g` for SDXL, so an export is a rename, not a conversion.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import torch
from diffusers import StableDiffusionXLPipeline

from engine.jobs import TRAINING_METHODS
from engine.models.pipeline import Pipeline

__all__ = [
    "EMBEDDING_PREFIX",
    "METHODS",
    "TriggerEmbedding",
    "encoder_slots",
    "load_embeddings",
    "unload_embeddings",
]

EMBEDDING_PREFIX = "embedding."
# How a user's face is learned: a LoRA of the UNet; an embedding of the trigger token
# only (textual inversion); or both together (pivotal tuning).
METHODS = TRAINING_METHODS
# Learning rates of the embedding: A1111's textual-inversion default (0.005) alone, and
# cog-sdxl's ti_lr (3e-4) beside a LoRA, which does most of the work there.
INVERSION_LEARNING_RATE = 5e-3
PIVOTAL_LEARNING_RATE = 3e-4


def encoder_slots(pipeline: Pipeline) -> list[tuple[str, Any, Any]]:
    """(A1111's name, tokenizer, text encoder) of each of the pipeline's text encoders."""
    if isinstance(pipeline, StableDiffusionXLPipeline):
        second = (pipeline.tokenizer_2, pipeline.text_encoder_2)  # type: ignore[attr-defined]
        return [("clip_l", pipeline.tokenizer, pipeline.text_encoder), ("clip_g", *second)]
    return [("emb_params", pipeline.tokenizer, pipeline.text_encoder)]


class TriggerEmbedding:
    """The trigger's token added to `pipeline`, with a trainable vector per encoder;
    `close` takes the token out of the tokenizers again and shrinks the encoders back."""

    def __init__(self, pipeline: Pipeline, trigger: str, init_word: str = "person") -> None:
        self.pipeline = pipeline
        self.trigger = trigger
        self.vectors: dict[str, torch.nn.Parameter] = {}
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        for name, tokenizer, encoder in encoder_slots(pipeline):
            if trigger in tokenizer.get_vocab():
                raise ValueError(f"the tokenizer already has a token {trigger!r}")
            encoder.requires_grad_(False)  # only the new vector learns
            table = encoder.get_input_embeddings()
            ids = tokenizer(init_word, add_special_tokens=False).input_ids
            init = table.weight[ids].detach().float().mean(0, keepdim=True)
            pipeline.load_textual_inversion(
                init.to(table.weight.dtype),
                token=trigger,
                tokenizer=tokenizer,
                text_encoder=encoder,
            )
            token_id = tokenizer.convert_tokens_to_ids(trigger)
            vector = torch.nn.Parameter(init.to(table.weight.device))
            self.vectors[name] = vector
            hook = functools.partial(_substitute, token_id, vector)
            self._hooks.append(encoder.get_input_embeddings().register_forward_hook(hook))

    def params(self) -> dict[str, torch.nn.Parameter]:
        """The trainable vectors, by their name in a model file."""
        return {EMBEDDING_PREFIX + name: vector for name, vector in self.vectors.items()}

    def tensors(self) -> dict[str, torch.Tensor]:
        """The vectors as a model file keeps them: float32 on the CPU, (1, dim) each."""
        return {key: p.detach().float().cpu().contiguous() for key, p in self.params().items()}

    def close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()
        unload_embeddings(self.pipeline, self.trigger)


def _substitute(
    token_id: int, vector: torch.Tensor, module: torch.nn.Module, inputs: Any, output: torch.Tensor
) -> torch.Tensor:
    ids = inputs[0]
    where = (ids == token_id).unsqueeze(-1)
    return torch.where(where, vector.to(output.dtype), output)


def load_embeddings(pipeline: Pipeline, trigger: str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Add `trigger` as a token with the vectors of a model file (`embedding.<slot>`)."""
    for name, tokenizer, encoder in encoder_slots(pipeline):
        vector = tensors.get(EMBEDDING_PREFIX + name)
        if vector is None:
            raise ValueError(f"the model file has no embedding {name!r} for this model")
        width = encoder.get_input_embeddings().weight.shape[1]
        if vector.ndim != 2 or vector.shape != (1, width):
            raise ValueError(
                f"the embedding {name!r} is {tuple(vector.shape)}; this model needs (1, {width})"
            )
        if trigger in tokenizer.get_vocab():
            unload_embeddings(pipeline, trigger)
        pipeline.load_textual_inversion(
            vector.to(encoder.dtype), token=trigger, tokenizer=tokenizer, text_encoder=encoder
        )


def unload_embeddings(pipeline: Pipeline, trigger: str) -> None:
    """Take `trigger`'s token out of every tokenizer that has it."""
    for _, tokenizer, encoder in encoder_slots(pipeline):
        if trigger in tokenizer.get_vocab():
            pipeline.unload_textual_inversion(
                tokens=[trigger], tokenizer=tokenizer, text_encoder=encoder
            )
