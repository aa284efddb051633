"""Rates of the prompt filter on a labelled corpus, per language, category, kind and layer.

A corpus line is `expected<TAB>lang<TAB>kind<TAB>prompt` (the format of
engine/safety/data/corpus/ and tests/data/blind_prompts.tsv); `#` lines are comments.
Each prompt is read the way the chats read it: the core's option parser splits off
`--no ...` and the other options, and the filter checks the prompt and the negative. A
text the parser refuses (an unknown option, say) is checked as written.

Printed: harmful prompts refused (in any category, and in an expected one) and harmless
prompts refused, overall and per language, category and kind, and which layer refused.

Usage: python -m engine.safety.evaluate FILE.tsv [FILE.tsv ...] [--misses] [--rules-only]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Case", "Report", "evaluate", "load_cases", "split_options"]

ALLOW = "allow"
LABELS = frozenset({"sexual", "minors", "violence", "self-harm", "hate", "public-figure"})
KINDS = frozenset({"plain", "trap", "evasion", "context"})


@dataclass(frozen=True, slots=True)
class Case:
    source: str  # file:line
    expected: frozenset[str]  # empty: harmless
    lang: str
    kind: str
    prompt: str

    @property
    def harmful(self) -> bool:
        return bool(self.expected)


def load_cases(path: Path) -> list[Case]:
    """Parse a corpus strictly; a malformed line is an error naming the file and line."""
    cases = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        where = f"{path.name}:{number}"
        columns = raw.split("\t")
        if len(columns) != 4:
            raise ValueError(f"{where}: expected 4 tab-separated columns, got {len(columns)}")
        expected_text, lang, kind, prompt = columns
        expected = frozenset() if expected_text == ALLOW else frozenset(expected_text.split("|"))
        if not expected <= LABELS:
            raise ValueError(f"{where}: unknown label in {expected_text!r}")
        if kind not in KINDS:
            raise ValueError(f"{where}: unknown kind {kind!r}; one of {sorted(KINDS)}")
        if not prompt.strip():
            raise ValueError(f"{where}: empty prompt")
        cases.append(Case(where, expected, lang, kind, prompt))
    return cases


def split_options(text: str) -> tuple[str, str]:
    """(prompt, negative) as the chats parse `text`; the text itself if it does not parse."""
    from bot.core.options import parse_imagine

    try:
        request = parse_imagine(text)
    except Exception:
        return text, ""
    return request.prompt, request.negative


@dataclass
class Tally:
    total: int = 0
    refused: int = 0
    right_category: int = 0

    def rate(self) -> float:
        return self.refused / self.total if self.total else 0.0

    def text(self) -> str:
        return f"{self.refused}/{self.total} = {self.rate():6.1%}"


@dataclass
class Report:
    harmful: Tally = field(default_factory=Tally)
    harmless: Tally = field(default_factory=Tally)
    harmful_by: dict[str, dict[str, Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )
    harmless_by: dict[str, dict[str, Tally]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(Tally))
    )
    layers: Counter[str] = field(default_factory=Counter)
    misses: list[tuple[Case, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"harmful refused:  {self.harmful.text()}"
            f"   (in an expected category: {self.harmful.right_category})",
            f"harmless refused: {self.harmless.text()}",
        ]
        for axis in ("lang", "category", "kind"):
            out.append(f"-- by {axis}: harmful refused | harmless refused")
            keys = sorted(set(self.harmful_by[axis]) | set(self.harmless_by[axis]))
            for key in keys:
                bad = self.harmful_by[axis].get(key)
                good = self.harmless_by[axis].get(key)
                left = bad.text() if bad else "-"
                right = good.text() if good else "-"
                out.append(f"  {key:14} {left:>20} | {right:>20}")
        out.append("-- refusals by layer/category: " + ", ".join(
            f"{k}={n}" for k, n in sorted(self.layers.items())
        ))  # fmt: skip
        return out


def evaluate(check: Callable[[str, str], Any], cases: Iterable[Case]) -> Report:
    """Run `check(prompt, negative)` over `cases`; the verdict needs .allowed, .category."""
    report = Report()
    for case in cases:
        prompt, negative = split_options(case.prompt)
        verdict = check(prompt, negative)
        refused = not verdict.allowed
        category = verdict.category if refused else None
        if refused:
            report.layers[f"{getattr(verdict, 'layer', None) or 'rules'}/{category}"] += 1
        keys = {"lang": [case.lang], "kind": [case.kind]}
        if case.harmful:
            right = refused and category in case.expected
            keys["category"] = sorted(case.expected)
            for tally in [report.harmful] + [
                report.harmful_by[a][k] for a, ks in keys.items() for k in ks
            ]:
                tally.total += 1
                tally.refused += refused
                tally.right_category += right
            if not refused:
                report.misses.append((case, "allowed"))
        else:
            keys["category"] = ["allow"]
            for tally in [report.harmless] + [
                report.harmless_by[a][k] for a, ks in keys.items() for k in ks
            ]:
                tally.total += 1
                tally.refused += refused
            if refused:
                report.misses.append((case, f"refused as {category}"))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument(
        "--misses", action="store_true", help="list the prompts the filter got wrong"
    )
    parser.add_argument(
        "--rules-only", action="store_true", help="the term layer alone, without the classifier"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="a classifier file other than the shipped one"
    )
    args = parser.parse_args(argv)
    from engine.safety import PromptFilter

    cases = [case for path in args.files for case in load_cases(path)]
    if args.rules_only:
        prompt_filter = PromptFilter(classifier=None)
    elif args.model is not None:
        prompt_filter = PromptFilter(classifier=args.model)
    else:
        prompt_filter = PromptFilter()
    report = evaluate(prompt_filter.check, cases)
    print("\n".join(report.lines()))
    if args.misses:
        for case, what in report.misses:
            expected = "|".join(sorted(case.expected)) or ALLOW
            print(f"{case.source} [{case.lang}/{case.kind}] {expected}: {what}: {case.prompt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
