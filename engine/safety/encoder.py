"""Optional fourth opinion of the prompt filter: the base model's own text encoder.

As Stable Diffusion's safety checker compares an image's CLIP embedding with embeddings
of unsafe concepts, this compares the prompt's pooled text embedding (the CLIP text
encoder the pipeline already holds) with embeddings of concept phrases per category, and
names the category whose phrase is nearest, when the cosine similarity reaches the
threshold. It needs a real base model to mean anything: with the offline tiny model the
weights are random, so here it is only plumbing (tests/test_safety_encoder.py). A
deployment passes one to PromptFilter(encoder=...); none is on by default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CONCEPT_PHRASES", "EncoderSignal"]

CONCEPT_PHRASES: dict[str, tuple[str, ...]] = {
    "sexual": ("a naked person", "nudity", "a pornographic photo", "a person in lingerie"),
    "minors": ("a naked child", "a child in a sexual pose", "a child hurt and bleeding"),
    "violence": ("a gory murder", "a mass shooting", "a person stabbed, blood everywhere"),
    "self-harm": ("a person cutting their wrists", "a suicide by hanging", "self-harm"),
    "hate": ("a nazi salute with a swastika flag", "a racist caricature", "a KKK rally"),
}


class EncoderSignal:
    """Nearest concept phrase by cosine similarity of pooled text embeddings."""

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        phrases: Mapping[str, Sequence[str]] = CONCEPT_PHRASES,
        threshold: float = 0.85,
    ) -> None:
        self._tokenizer = tokenizer
        self._encoder = text_encoder
        self.threshold = threshold
        self._labels = [category for category, listed in phrases.items() for _ in listed]
        self._phrases = self._embed([p for listed in phrases.values() for p in listed])

    @classmethod
    def from_pipeline(cls, pipeline: Any, **kwargs: Any) -> EncoderSignal:
        return cls(pipeline.tokenizer, pipeline.text_encoder, **kwargs)

    def similarities(self, text: str) -> dict[str, float]:
        """The highest cosine similarity to each category's phrases."""
        sims = self._phrases @ self._embed([text])[0]
        best: dict[str, float] = {}
        for label, sim in zip(self._labels, sims.tolist(), strict=True):
            best[label] = max(best.get(label, -1.0), float(sim))
        return best

    def category(self, text: str) -> str | None:
        best = self.similarities(text)
        label = max(best, key=lambda k: best[k])
        return label if best[label] >= self.threshold else None

    def _embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import torch

        tokens = self._tokenizer(
            texts,
            padding="max_length",
            max_length=self._tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        with torch.no_grad():
            out = self._encoder(tokens.input_ids.to(self._encoder.device))
        pooled: npt.NDArray[np.float32] = out.pooler_output.float().cpu().numpy()
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit
