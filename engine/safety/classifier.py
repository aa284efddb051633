"""Layer (c) of the prompt filter: a linear classifier over hashed n-grams, numpy only.

Features: character n-grams of 1 to 5 characters (which read Chinese, Japanese, Korean
and Arabic without word segmentation, and survive misspellings) and word unigrams and
bigrams, of the normalised prompt and of its evasion-undone variant, hashed into
`DIMENSION` buckets and L2-normalised; then one indicator per concept that the term
layer found (engine.safety.lists.CONCEPTS), so the model learns how a child, a public
figure or a sport context changes the odds, in every language the lists cover. One
logistic model per refusal category (one-vs-rest); a category refuses when its
probability reaches its threshold.

A child that the term layer found is not evidence by itself: the policy allows "me at 12
on my first day of school". With one, the minors model, which learned mostly that a child
is there, is not asked; the other models judge the prompt (the filter reports a sexual,
violent or self-harm one as minors). Where the prompt also names clothes or something
suggestive ("make me a small child and take my clothes off"), the minors model is asked
as before: there a missed refusal is the worst the filter can make.

The model file is safetensors: `weight` ((DIMENSION + concepts) x categories, float16), `bias`,
`threshold`, and the category names and feature settings in its metadata. Nothing is
unpickled. engine.safety.train writes it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from safetensors.numpy import load_file, save_file

from engine.safety.lists import CONCEPTS
from engine.safety.normalise import variants, words

__all__ = [
    "DIMENSION",
    "JUDGES_OF_A_CHILD",
    "MODEL_PATH",
    "Classifier",
    "asks_minors",
    "classifier_text",
    "feature_indices",
]

DIMENSION = 1 << 18
MODEL_PATH = Path(__file__).resolve().parent / "data" / "classifier.safetensors"
_CHAR_SIZES = (1, 2, 3, 4, 5)
_MASK = np.uint64(DIMENSION - 1)
_MULT = np.uint64(0x9E3779B97F4A7C15)
_ROLL = np.uint64(1_000_003)
# Concepts beside a child that keep the minors model asked (engine.safety.lists).
_CHILD_AT_RISK = frozenset({"undressing", "suggestive"})
# The models that judge a prompt with a child where the minors model is not asked; their
# refusal is reported as minors.
JUDGES_OF_A_CHILD = frozenset({"sexual", "violence", "self-harm"})
# Options other than the negative say nothing about content: `--ar 3:2`, `--seed 42`.
_NEGATIVE = re.compile(r"(?:^|\s)(?:--|\u2014|\u2013)no\b", re.IGNORECASE)
_OPTION = re.compile(r"(?:^|\s)(?:--|\u2014|\u2013)(?!no\b)[a-z]+(?:\s+[\w:.]+)?", re.IGNORECASE)


def classifier_text(prompt: str) -> str:
    """The text the classifier reads: the prompt without its options and negative.

    A negative prompt is the term rules' to judge ("--no clothes"); to the model, "--no
    nudity" would read like nudity."""
    return _OPTION.sub(" ", _NEGATIVE.split(prompt, maxsplit=1)[0])


def _mix(values: npt.NDArray[np.uint64], salt: int) -> npt.NDArray[np.uint64]:
    """A fixed 64-bit mix (splitmix-like), the same on every platform."""
    with np.errstate(over="ignore"):
        x = values ^ np.uint64(salt * 0x632BE59BD9B4E019 & 0xFFFFFFFFFFFFFFFF)
        x = (x ^ (x >> np.uint64(31))) * _MULT
        x = (x ^ (x >> np.uint64(29))) * np.uint64(0xBF58476D1CE4E5B9)
        return x ^ (x >> np.uint64(32))


def _char_grams(form: str) -> list[npt.NDArray[np.uint64]]:
    codes = np.frombuffer(f" {form} ".encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    out = []
    rolling = np.zeros(0, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for n in _CHAR_SIZES:
            if len(codes) < n:
                break
            rolling = codes.copy() if n == 1 else rolling[:-1] * _ROLL + codes[n - 1 :]
            out.append(_mix(rolling, n))
    return out


def _word_grams(form: str) -> list[npt.NDArray[np.uint64]]:
    tokens = words(form)
    if not tokens:
        return []
    ids = np.array(
        [int.from_bytes(t.encode("utf-8")[:8].ljust(8, b"\0"), "little") ^ len(t) for t in tokens],
        dtype=np.uint64,
    )
    ids = _mix(ids, 11)
    out = [_mix(ids, 12)]
    if len(ids) > 1:
        with np.errstate(over="ignore"):
            out.append(_mix(ids[:-1] * np.uint64(31) + ids[1:], 13))
    return out


def feature_indices(text: str) -> npt.NDArray[np.int64]:
    """The distinct hashed feature indices of `text` (before weighting)."""
    forms = variants(text)
    chosen = [forms[0]] if len(forms) == 1 else [forms[0], forms[-1]]
    parts: list[npt.NDArray[np.uint64]] = []
    for form in chosen:
        parts += _char_grams(form)
        parts += _word_grams(form)
    if not parts:
        parts = [_mix(np.zeros(1, dtype=np.uint64), 99)]
    return np.unique((np.concatenate(parts) & _MASK).astype(np.int64))


@dataclass(frozen=True)
class Prediction:
    category: str | None  # the refusing category with the highest margin, or None
    scores: dict[str, float]  # probability per category


class Classifier:
    """Inference over a saved model; no scikit-learn, no pickle."""

    def __init__(self, path: Path = MODEL_PATH) -> None:
        tensors = load_file(str(path))
        with open(path, "rb") as fh:
            header_size = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_size))
        meta = header.get("__metadata__", {})
        if int(meta.get("dimension", 0)) != DIMENSION:
            raise ValueError(f"{path}: model for {meta.get('dimension')} features, not {DIMENSION}")
        self.categories: tuple[str, ...] = tuple(json.loads(meta["categories"]))
        concepts = tuple(json.loads(meta.get("concepts", "[]")))
        self._concept_row = {c: DIMENSION + i for i, c in enumerate(concepts)}
        self.weight = tensors["weight"].astype(np.float32)
        self.bias = tensors["bias"].astype(np.float32)
        self.threshold = tensors["threshold"].astype(np.float32)
        self._with_child = np.array([c != "minors" for c in self.categories], dtype=np.float32)
        self.path = path

    def predict(self, text: str, concepts: frozenset[str] | set[str] = frozenset()) -> Prediction:
        index = feature_indices(text)
        logits = self.weight[index].sum(axis=0) / np.sqrt(len(index)) + self.bias
        rows = [self._concept_row[c] for c in concepts if c in self._concept_row]
        if rows:
            logits = logits + self.weight[rows].sum(axis=0)
        probs = 1.0 / (1.0 + np.exp(-logits))
        margin = probs / self.threshold
        if not asks_minors(concepts):
            margin = margin * self._with_child
        best = int(np.argmax(margin))
        category = self.categories[best] if margin[best] >= 1.0 else None
        return Prediction(category, dict(zip(self.categories, probs.tolist(), strict=True)))


def asks_minors(concepts: frozenset[str] | set[str]) -> bool:
    """Whether the minors model is asked for a prompt with these concepts: not where the
    rules found a child and nothing suggestive beside it."""
    return "minor" not in concepts or bool(concepts & _CHILD_AT_RISK)


def save_model(
    path: Path,
    categories: tuple[str, ...],
    weight: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    threshold: npt.NDArray[np.float32],
    info: dict[str, str],
) -> None:
    metadata = {
        "dimension": str(DIMENSION),
        "categories": json.dumps(list(categories)),
        "concepts": json.dumps(list(CONCEPTS)),
        **info,
    }
    save_file(
        {
            "weight": weight.astype(np.float16),
            "bias": bias.astype(np.float32),
            "threshold": threshold.astype(np.float32),
        },
        str(path),
        metadata=metadata,
    )
