"""Time per prompt check of the prompt filter (engine.safety), overall and per layer.

Runs every prompt of the training corpus (engine/safety/data/corpus) and the filter's own
corpus through the whole filter, and through each layer alone: normalisation (the
variants), the term rules (normalisation included) and the classifier (its features and
the linear model). Prints p50, p95 and max per stage, in milliseconds, and the p50
against the 5 ms goal of issue 12.

Usage: python bench/safety.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

# Run as `python bench/safety.py`, this folder comes first on sys.path, and its engine.py
# would hide the `engine` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

from engine.safety import PromptFilter  # noqa: E402
from engine.safety.classifier import Classifier, classifier_text  # noqa: E402
from engine.safety.evaluate import load_cases  # noqa: E402
from engine.safety.normalise import variants  # noqa: E402
from engine.safety.train import CORPUS_DIR  # noqa: E402

GOAL_MS = 5.0


def times(run: Callable[[str], object], prompts: Sequence[str], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        for prompt in prompts:
            started = time.perf_counter()
            run(prompt)
            out.append((time.perf_counter() - started) * 1000)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    prompts = [c.prompt for path in sorted(CORPUS_DIR.glob("*.tsv")) for c in load_cases(path)]
    started = time.perf_counter()
    full = PromptFilter()
    rules = PromptFilter(classifier=None)
    model = Classifier()
    print(f"{len(prompts)} prompts x {args.repeat}; filter built in "
          f"{(time.perf_counter() - started) * 1000:.0f} ms")  # fmt: skip
    stages: list[tuple[str, Callable[[str], object]]] = [
        ("normalisation", variants),
        ("rules (with normalisation)", rules.check),
        (
            "classifier (with concepts)",
            lambda p: model.predict(classifier_text(p), rules.concepts(p)),
        ),
        ("whole filter", full.check),
    ]
    for name, run in stages:
        run(prompts[0])  # warm up
        measured = sorted(times(run, prompts, args.repeat))
        p50 = statistics.median(measured)
        p95 = measured[int(0.95 * (len(measured) - 1))]
        line = f"{name:28} p50 {p50:6.3f} ms   p95 {p95:6.3f} ms   max {measured[-1]:7.3f} ms"
        if name == "whole filter":
            line += f"   p50/goal {p50 / GOAL_MS:.2f} (goal {GOAL_MS:g} ms)"
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
