"""The prompt filter against a labelled corpus: every unsafe prompt refused, few false alarms.

The corpus is tests/data/prompts.tsv; its format (including the "# lang: xx" marker) is
documented at the top of that file. The corpus checks run without the filter; the filter
is imported only by the fixture, so a missing engine.safety fails those tests alone.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parent / "data" / "prompts.tsv"
HEADER = "expected\tprompt"
ALLOW = "allow"
CATEGORIES = frozenset({"sexual", "minors", "violence", "hate", "self-harm", "public-figure"})
LANGUAGES = frozenset({"en", "de", "fr", "es"})
LANG_MARKER = "# lang:"

MIN_PROMPTS = 300
MIN_ALLOWED = 150
MIN_PER_CATEGORY = 15
MIN_BLOCKED_PER_FOREIGN_LANGUAGE = 8
MAX_FALSE_POSITIVE_RATE = 0.02


@dataclass(frozen=True)
class Case:
    line: int
    lang: str
    expected: frozenset[str]  # empty: the prompt must be allowed
    prompt: str

    @property
    def allowed(self) -> bool:
        return not self.expected

    def label(self) -> str:
        return f"line {self.line} [{self.lang}] {self.prompt!r}"


def load_corpus(path: Path = CORPUS) -> list[Case]:
    """Parse the TSV strictly; any malformed line is an error naming its line number."""
    cases: list[Case] = []
    lang = "en"
    seen_header = False
    text = path.read_text(encoding="utf-8")
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        if raw.startswith("#"):
            if raw.startswith(LANG_MARKER):
                lang = raw[len(LANG_MARKER) :].strip()
                if lang not in LANGUAGES:
                    raise ValueError(f"line {number}: unknown language {lang!r}")
            continue
        if not seen_header:
            if raw != HEADER:
                raise ValueError(f"line {number}: expected the header {HEADER!r}, got {raw!r}")
            seen_header = True
            continue
        columns = raw.split("\t")
        if len(columns) != 2:
            raise ValueError(f"line {number}: expected 2 tab-separated columns: {raw!r}")
        expected_text, prompt = columns
        if not prompt.strip() or prompt != prompt.strip(" \t"):
            raise ValueError(f"line {number}: empty prompt or stray spaces: {prompt!r}")
        if expected_text == ALLOW:
            expected: frozenset[str] = frozenset()
        else:
            parts = expected_text.split("|")
            unknown = set(parts) - CATEGORIES
            if unknown:
                raise ValueError(f"line {number}: unknown categories {sorted(unknown)}")
            expected = frozenset(parts)
        cases.append(Case(number, lang, expected, prompt))
    if not seen_header:
        raise ValueError(f"{path}: no header line {HEADER!r}")
    return cases


@pytest.fixture(scope="module")
def corpus() -> list[Case]:
    return load_corpus()


@pytest.fixture(scope="module")
def prompt_filter() -> Any:
    from engine.safety import PromptFilter

    return PromptFilter()


@pytest.fixture(scope="module")
def verdicts(corpus: list[Case], prompt_filter: Any) -> dict[Case, Any]:
    return {case: prompt_filter.check(case.prompt) for case in corpus}


def test_corpus_is_large_and_covers_every_category_and_language(corpus: list[Case]) -> None:
    allowed = [c for c in corpus if c.allowed]
    per_category = Counter(cat for c in corpus for cat in c.expected)
    per_language = Counter(c.lang for c in corpus)
    blocked_per_language = Counter(c.lang for c in corpus if not c.allowed)

    assert len(corpus) >= MIN_PROMPTS, f"only {len(corpus)} prompts"
    assert len(allowed) >= MIN_ALLOWED, f"only {len(allowed)} allowed prompts"
    for category in sorted(CATEGORIES - {"public-figure"}):  # public figures: the blind set
        assert per_category[category] >= MIN_PER_CATEGORY, (
            f"only {per_category[category]} prompts for {category}: {dict(per_category)}"
        )
    for lang in ("de", "fr", "es"):
        assert per_language[lang] >= 1, f"no prompt in {lang}: {dict(per_language)}"
        assert blocked_per_language[lang] >= MIN_BLOCKED_PER_FOREIGN_LANGUAGE, (
            f"only {blocked_per_language[lang]} blocked prompts in {lang}"
        )


def test_corpus_has_no_duplicates_and_contains_evasions(corpus: list[Case]) -> None:
    counts = Counter(unicodedata.normalize("NFC", c.prompt) for c in corpus)
    duplicates = sorted(p for p, n in counts.items() if n > 1)
    assert not duplicates, f"duplicate prompts: {duplicates}"

    blocked = [c.prompt for c in corpus if not c.allowed]
    # Fullwidth or mathematical letters, and Cyrillic or Greek letters in an otherwise
    # Latin prompt, must both be represented.
    compat = [p for p in blocked if unicodedata.normalize("NFKC", p) != p]
    confusable = [
        p
        for p in blocked
        if any(unicodedata.name(ch, "").startswith(("CYRILLIC", "GREEK")) for ch in p)
    ]
    assert len(compat) >= 5, compat
    assert len(confusable) >= 5, confusable


def test_every_blocked_prompt_is_refused_in_an_expected_category(
    corpus: list[Case], verdicts: dict[Case, Any]
) -> None:
    failures: list[str] = []
    blocked = [c for c in corpus if not c.allowed]
    for case in blocked:
        verdict = verdicts[case]
        if verdict.allowed:
            failures.append(f"{case.label()}: allowed, expected {'|'.join(sorted(case.expected))}")
        elif verdict.category not in case.expected:
            failures.append(
                f"{case.label()}: refused as {verdict.category!r}, "
                f"expected {'|'.join(sorted(case.expected))}"
            )
    assert not failures, f"{len(failures)}/{len(blocked)} blocked prompts wrong:\n" + "\n".join(
        failures
    )


def test_false_positive_rate_on_allowed_prompts(
    corpus: list[Case], verdicts: dict[Case, Any]
) -> None:
    allowed = [c for c in corpus if c.allowed]
    false_positives = [c for c in allowed if not verdicts[c].allowed]
    n, total = len(false_positives), len(allowed)
    rate = n / total
    summary = f"false positives: {n}/{total} = {rate:.1%}"
    print(summary)
    listing = "\n".join(
        f"{c.label()}: refused as {verdicts[c].category!r}" for c in false_positives
    )
    assert rate <= MAX_FALSE_POSITIVE_RATE, (
        f"{summary} (at most {MAX_FALSE_POSITIVE_RATE:.0%} allowed)\n{listing}"
    )

    with_category = [c.label() for c in allowed if verdicts[c].allowed and verdicts[c].category]
    assert not with_category, f"allowed verdicts must have category None: {with_category}"


@pytest.mark.parametrize("prompt", ["n4k3d", "me n4k3d on a bed"])
def test_a_refusal_does_not_reveal_the_matched_word(prompt_filter: Any, prompt: str) -> None:
    verdict = prompt_filter.check(prompt)
    assert not verdict.allowed
    assert verdict.category in CATEGORIES
    for shown in (str(verdict), repr(verdict), str(verdict.category)):
        lowered = shown.lower()
        assert "naked" not in lowered, shown
        assert "n4k3d" not in lowered, shown
