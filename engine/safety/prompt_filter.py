"""The prompt filter: normalise, then match category terms and age patterns.

A refusal names the category, never the word that matched, so the filter cannot be
probed term by term. Hard categories (sexual, minors) keep their default terms whatever
an admin removes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from engine.safety.normalise import variants
from engine.safety.terms import (
    AGE_PATTERNS,
    CATEGORIES,
    DEFAULT_TERMS,
    HARD_CATEGORIES,
    SAFE_PHRASES,
    UNDRESSING,
)

__all__ = ["PromptFilter", "PromptVerdict"]

_ENDINGS = r"(?:s|es|ed|d|ing|er|ers)?"


@dataclass(frozen=True, slots=True)
class PromptVerdict:
    allowed: bool
    category: str | None = None
    field: str | None = None  # "prompt" or "negative"

    @property
    def reason(self) -> str:
        if self.allowed:
            return "allowed"
        where = "negative prompt" if self.field == "negative" else "prompt"
        return f"This {where} was refused: it falls under {self.category}."


class PromptFilter:
    def __init__(
        self,
        extra_terms: Mapping[str, Iterable[str]] | None = None,
        removed_terms: Iterable[str] = (),
    ) -> None:
        extra = {k: list(v) for k, v in (extra_terms or {}).items()}
        unknown = sorted(set(extra) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"unknown category {unknown[0]!r}; one of {', '.join(CATEGORIES)}")
        removed = {term.strip().casefold() for term in removed_terms}
        self._patterns: dict[str, re.Pattern[str]] = {}
        for category in CATEGORIES:
            terms = [
                t
                for t in DEFAULT_TERMS[category]
                if category in HARD_CATEGORIES or t not in removed
            ] + extra.get(category, [])
            self._patterns[category] = _compile(terms)
        self._ages = [re.compile(p) for p in AGE_PATTERNS]
        self._safe = re.compile("|".join(SAFE_PHRASES))
        self._undressing = _compile(UNDRESSING)

    def check(self, prompt: str, negative: str = "") -> PromptVerdict:
        category = self._category(prompt)
        if category is not None:
            return PromptVerdict(False, category, "prompt")
        if negative:
            forms = variants(negative)
            if any(self._undressing.search(f) for f in forms):
                return PromptVerdict(False, "sexual", "negative")
            if any(self._patterns["hate"].search(f) for f in forms):
                return PromptVerdict(False, "hate", "negative")
        return PromptVerdict(True)

    def _category(self, text: str) -> str | None:
        forms = [self._safe.sub(" ", form) for form in variants(text)]
        if any(age.search(forms[0]) for age in self._ages):
            return "minors"
        for category in CATEGORIES:
            if any(self._patterns[category].search(form) for form in forms):
                return category
        return None


def _compile(terms: Iterable[str]) -> re.Pattern[str]:
    parts = []
    for term in terms:
        term = term.strip().casefold()
        if not term:
            continue
        if term.endswith("*"):
            parts.append(re.escape(term[:-1]) + r"[a-z]*")
        else:
            parts.append(re.escape(term).replace(r"\ ", r"\s+") + _ENDINGS)
    return re.compile(r"(?<![a-z0-9])(?:" + "|".join(parts) + r")(?![a-z0-9])")
