"""Train the prompt classifier (layer c) on the repository's corpus, and save it.

    python -m engine.safety.train [--extra FILE.tsv ...] [--out PATH] [--held-out 0.25]

Reads every engine/safety/data/corpus/*.tsv (`expected<TAB>lang<TAB>kind<TAB>prompt`)
plus the `--extra` files (the review queue's decisions, written by `selfiebooth admin
retrain-filter`), and fits one L2-regularised logistic model per refusal category on
hashed n-gram features and the term layer's concepts (engine.safety.classifier), with
L-BFGS from SciPy. The refusal threshold is the lowest at which the classifier refuses
at most `--max-false` of the harmless prompts the term rules let through, on a held-out
share of the corpus. The blind
test set (tests/data/blind_prompts.tsv) is never read here.

Prints the cross-validated rates and writes the safetensors model (float16 weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.safety.classifier import (
    DIMENSION,
    JUDGES_OF_A_CHILD,
    MODEL_PATH,
    asks_minors,
    classifier_text,
    feature_indices,
    save_model,
)
from engine.safety.evaluate import Case, load_cases
from engine.safety.lists import CONCEPTS

__all__ = ["CATEGORIES", "CORPUS_DIR", "main", "train"]

CORPUS_DIR = Path(__file__).resolve().parent / "data" / "corpus"
CATEGORIES: tuple[str, ...] = (
    "sexual", "minors", "violence", "self-harm", "hate", "public-figure",
)  # fmt: skip
# The weight penalty (1/C): strong enough to keep rare n-grams from deciding alone.
_L2 = 0.01
# Room for L-BFGS to near its optimum: at 120 it stopped short, and retrains that differed
# in a few terms moved blind prompts either way. 300 take about 10 minutes on 2 cores.
_ITERATIONS = 300
_MINORS = CATEGORIES.index("minors")
_CONTENT = [CATEGORIES.index(c) for c in sorted(JUDGES_OF_A_CHILD)]
# Halves of a pair that refuses only together (rules.toml's self-harm-ledge). Alone they
# are harmless ("me on a bridge at night", "last photo before moving"), but nearly every
# corpus prompt that holds one is harmful, so as features each alone tipped the model to
# self-harm. Their words still reach it as n-grams.
_PAIR_HALVES = frozenset({"ledge", "farewell"})


def _matrix(
    cases: Sequence[Case],
) -> tuple[Any, npt.NDArray[np.float64], npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Features and labels of the cases the classifier reads, which of those the term
    rules refuse already, and for which the minors model is asked (asks_minors)."""
    from scipy import sparse

    from engine.safety.prompt_filter import PromptFilter

    terms = PromptFilter(classifier=None)
    concept_column = {c: DIMENSION + i for i, c in enumerate(CONCEPTS)}
    rows, cols, vals = [], [], []
    kept, by_rules, minors_asked = [], [], []
    for case in cases:
        # What the term rules refuse for its negative prompt ("--no clothes") says
        # nothing about its prompt part, which is all the classifier reads.
        verdict = terms.check(case.prompt)
        if verdict.field != "negative":
            kept.append(case)
            by_rules.append(not verdict.allowed)
    cases = kept
    for i, case in enumerate(cases):
        text = terms.split(case.prompt)[0]
        index = feature_indices(classifier_text(text))
        rows.append(np.full(len(index), i))
        cols.append(index)
        vals.append(np.full(len(index), 1.0 / np.sqrt(len(index))))
        concepts = terms.concepts(text)
        minors_asked.append(asks_minors(concepts))
        found = sorted(concept_column[c] for c in concepts - _PAIR_HALVES)
        rows.append(np.full(len(found), i))
        cols.append(np.array(found, dtype=np.int64))
        vals.append(np.ones(len(found)))
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(vals)
    x = sparse.csr_matrix((v, (r, c)), shape=(len(cases), DIMENSION + len(CONCEPTS)))
    y = np.array([[1.0 if cat in case.expected else 0.0 for cat in CATEGORIES] for case in cases])
    return x, y, np.array(by_rules, dtype=bool), np.array(minors_asked, dtype=bool)


def _fit(
    x: Any, y: npt.NDArray[np.float64], l2: float = _L2
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    from scipy import optimize, sparse

    assert isinstance(x, sparse.csr_matrix)
    n, k = y.shape
    # Only the hashed features that occur are fitted; the others stay at zero.
    x_all_columns = x.shape[1]
    used = np.unique(x.indices)
    x = x[:, used]
    # Each category's positives weigh as much as its negatives, within limits.
    pos = y.sum(axis=0)
    w_pos = np.clip((n - pos) / np.maximum(pos, 1.0), 1.0, 10.0)
    sample_w = np.where(y > 0, w_pos, 1.0)
    # With a child, the sexual, violence and self-harm models judge the prompt
    # (engine.safety.classifier). A prompt labelled minors alone ("me at 12, naked") does
    # not say which of them it is, so it is no example, either way, for any of the three.
    minors_only = (y[:, _MINORS] > 0) & (y[:, _CONTENT].sum(axis=1) == 0)
    sample_w[np.ix_(minors_only, _CONTENT)] = 0.0
    xt = x.T.tocsr()
    d = len(used)

    def loss(theta: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        w = theta[: d * k].reshape(d, k)
        b = theta[d * k :]
        z = x @ w + b
        p = 1.0 / (1.0 + np.exp(-z))
        value = -float(np.sum(sample_w * (y * _log(p) + (1 - y) * _log(1 - p))))
        value += 0.5 * l2 * float(np.sum(w * w))
        g = sample_w * (p - y)
        grad_w = xt @ g + l2 * w
        return value, np.concatenate([np.asarray(grad_w).ravel(), g.sum(axis=0)])

    d = len(used)
    theta0 = np.zeros(d * k + k)
    result = optimize.minimize(
        loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": _ITERATIONS, "gtol": 1e-6}
    )
    weight = np.zeros((x_all_columns, k))
    weight[used] = result.x[: d * k].reshape(d, k)
    return weight, result.x[d * k :]


def _log(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return np.log(np.clip(p, 1e-12, 1.0))


def _probs(
    x: Any, w: npt.NDArray[np.float64], b: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    z = x @ w + b
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _top(
    probs: npt.NDArray[np.float64], minors_asked: npt.NDArray[np.bool_]
) -> npt.NDArray[np.float64]:
    """Each prompt's highest probability as Classifier.predict weighs it: the minors
    model's only where it is asked."""
    asked = np.where(minors_asked[:, None], True, [c != "minors" for c in CATEGORIES])
    return np.asarray(np.where(asked, probs, 0.0).max(axis=1))


def _threshold(
    top: npt.NDArray[np.float64],
    harmful: npt.NDArray[np.bool_],
    by_rules: npt.NDArray[np.bool_],
    max_false: float,
) -> float:
    """The lowest threshold at which the classifier refuses at most max_false of the
    harmless prompts that the rules let through.

    The rules' own mistakes are not charged to the classifier: on a corpus rich in traps
    they alone can exceed the budget, and the classifier would then be held back to
    where it adds almost nothing."""
    passed = ~harmful & ~by_rules
    budget = int(np.floor(max_false * int(passed.sum())))
    left = np.sort(top[passed])[::-1]
    if budget >= len(left):
        return 0.05
    return float(min(max(left[budget] + 1e-6, 0.05), 0.95))


def train(
    cases: Sequence[Case],
    held_out: float = 0.25,
    max_false: float = 0.015,
    seed: int = 0,
    l2: float = _L2,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float, dict[str, float]]:
    """Weights, bias and threshold fitted on `cases`, and the rates on a held-out part.

    The threshold comes from a model fitted without a random `held_out` share of the
    corpus, on that share, with the term rules' refusals counted in; the model saved is
    then fitted on everything. (The rules' lists were written with this corpus in view,
    so the held-out rates flatter them.)"""
    x, y, by_rules, minors_asked = _matrix(cases)
    harmful = y.sum(axis=1) > 0
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * held_out)
    held, kept = order[:cut], order[cut:]
    w, b = _fit(x[kept], y[kept], l2)
    top = _top(_probs(x[held], w, b), minors_asked[held])
    threshold = _threshold(top, harmful[held], by_rules[held], max_false)
    refused = by_rules[held] | (top >= threshold)
    bad = harmful[held]
    rates = {
        "held_out_harmful_refused": float(refused[bad].mean()),
        "held_out_harmless_refused": float(refused[~bad].mean()),
        "held_out_harmful_refused_by_rules": float(by_rules[held][bad].mean()),
    }
    w, b = _fit(x, y, l2)
    return w, b, threshold, rates


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="folder of *.tsv")
    parser.add_argument("--extra", type=Path, action="append", default=[], metavar="TSV")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--l2", type=float, default=_L2, help="weight penalty (%(default)s)")
    parser.add_argument("--held-out", type=float, default=0.25, help="share for the threshold")
    parser.add_argument("--max-false", type=float, default=0.015, help="harmless refused, held out")
    args = parser.parse_args(argv)
    files = sorted(args.corpus.glob("*.tsv")) + list(args.extra)
    if not files:
        print(f"no corpus files in {args.corpus}", file=sys.stderr)
        return 2
    blind = [f for f in files if "blind" in f.name]
    if blind:
        print(f"refusing to train on a blind evaluation set: {blind[0]}", file=sys.stderr)
        return 2
    cases = [case for path in files for case in load_cases(path)]
    started = time.perf_counter()
    w, b, threshold, rates = train(
        cases, held_out=args.held_out, max_false=args.max_false, l2=args.l2
    )
    harmful = sum(1 for c in cases if c.harmful)
    print(
        f"{len(cases)} prompts ({harmful} harmful) from {len(files)} files; "
        f"held out {args.held_out:.0%}, rules and classifier: harmful refused "
        f"{rates['held_out_harmful_refused']:.1%} (rules alone "
        f"{rates['held_out_harmful_refused_by_rules']:.1%}), harmless refused "
        f"{rates['held_out_harmless_refused']:.1%}; threshold {threshold:.3f}; "
        f"{time.perf_counter() - started:.0f} s"
    )
    k = len(CATEGORIES)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_model(
        args.out,
        CATEGORIES,
        w.astype(np.float32),
        b.astype(np.float32),
        np.full(k, threshold, dtype=np.float32),
        {
            "prompts": str(len(cases)),
            **{key: f"{value:.4f}" for key, value in rates.items()},
        },
    )
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
