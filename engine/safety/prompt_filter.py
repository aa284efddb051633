"""The prompt filter: normalisation, term rules, a learned classifier, in that order.

How the layers combine (README, "Prompt safety"):
(a) normalisation (engine.safety.normalise) gives each prompt a few variants with the
    evasions undone; the later layers read those.
(b) term rules (engine.safety.lists, data in engine/safety/data/): the concepts found in
    the prompt are matched against rules.toml; the first rule that holds refuses. A
    negative prompt (`--no ...`, or `negative prompt: ...` written in the prompt) that
    takes clothes away refuses as sexual, as minors when the prompt has a child in it.
(c) the classifier (engine.safety.classifier) reads the prompts the rules let through
    (the prompt part only: a negative is the rules' to judge) and refuses when a
    category's probability passes its threshold. Its category is
    sharpened by the concepts found: a child in the prompt turns a sexual, violent or
    self-harm refusal into minors, a named public figure into public-figure.
(d) optionally, a text encoder compared with concept phrases (engine.safety.encoder's
    EncoderSignal, or any ConceptSignal), when a deployment passes one in.
A refusal records the category, the layer and the field (prompt or negative), never the
word that matched, so the filter cannot be probed term by term.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from engine.safety.classifier import (
    JUDGES_OF_A_CHILD,
    MODEL_PATH,
    Classifier,
    classifier_text,
)
from engine.safety.lists import (
    ANYWHERE,
    CONTEXTS,
    HARD_CONCEPTS,
    Rule,
    TermIndex,
    load_rules,
    load_terms,
    term_form,
)
from engine.safety.normalise import base_form, fold_confusables, read_spaced_words, variants
from engine.safety.terms import AGE_PATTERNS, BLOCKLIST_GROUPS, CATEGORIES

__all__ = ["LAYERS", "ConceptSignal", "PromptFilter", "PromptVerdict"]

LAYERS: tuple[str, ...] = ("rules", "classifier", "encoder")
# An admin's group name -> the concept it edits. `minors` terms refuse on their own.
_GROUP_CONCEPT = {group: group for group in BLOCKLIST_GROUPS} | {"minors": "minor-hard"}
# What a safe phrase cannot hide: the contexts that lift a rule, and the excuse that
# cancels them.
_NEVER_HIDDEN = CONTEXTS | {"pretext"}


@dataclass(frozen=True, slots=True)
class PromptVerdict:
    allowed: bool
    category: str | None = None
    field: str | None = None  # "prompt" or "negative"
    layer: str | None = None  # "rules", "classifier" or "encoder"

    @property
    def reason(self) -> str:
        if self.allowed:
            return "allowed"
        where = "negative prompt" if self.field == "negative" else "prompt"
        return f"This {where} was refused: it falls under {self.category}."


class ConceptSignal(Protocol):
    """A third opinion (a model's text encoder against concept phrases): a category or None."""

    def category(self, text: str) -> str | None: ...


_classifiers: dict[tuple[Path, float], Classifier] = {}
_classifiers_lock = threading.Lock()


def _load_classifier(path: Path) -> Classifier:
    """One loaded model per file version: the filter is rebuilt on every blocklist edit."""
    key = (path, path.stat().st_mtime)
    with _classifiers_lock:
        if key not in _classifiers:
            _classifiers.clear()
            _classifiers[key] = Classifier(path)
        return _classifiers[key]


@functools.cache
def _hard_index() -> TermIndex:
    terms = load_terms()
    return TermIndex({c: terms[c] for c in HARD_CONCEPTS})


class PromptFilter:
    def __init__(
        self,
        extra_terms: Mapping[str, Iterable[str]] | None = None,
        removed_terms: Iterable[str] = (),
        *,
        classifier: Path | None = MODEL_PATH,
        encoder: ConceptSignal | None = None,
    ) -> None:
        """`extra_terms`: group -> terms an admin added (groups: BLOCKLIST_GROUPS);
        `removed_terms`: shipped terms an admin took out (hard concepts keep theirs);
        `classifier`: the model file, or None for the term layer alone."""
        extra = {k: list(v) for k, v in (extra_terms or {}).items()}
        unknown = sorted(set(extra) - set(_GROUP_CONCEPT))
        if unknown:
            raise ValueError(
                f"unknown category {unknown[0]!r}; one of {', '.join(BLOCKLIST_GROUPS)}"
            )
        removed = {term_form(t) for t in removed_terms}
        terms = load_terms()
        for concept, listed in terms.items():
            if concept not in HARD_CONCEPTS:
                terms[concept] = [t for t in listed if term_form(t) not in removed]
        for group, added in extra.items():
            concept = _GROUP_CONCEPT[group]
            if concept == "safe":
                # A safe phrase is taken out before matching: none may hide a hard term.
                added = [t for t in added if not self.hides_hard_term(t)]
            terms[concept] = terms[concept] + added
        self._terms = {c: t for c, t in terms.items() if c != "safe"}
        self._index = TermIndex(self._terms)
        self._safe = _phrase_pattern(terms["safe"])
        self._holding: dict[str, TermIndex] = {}
        self._negative_start = _marker_pattern(terms["negative-marker"])
        self._rules: list[Rule] = load_rules()
        self._ages = [re.compile(fold_confusables(p)) for p in AGE_PATTERNS]
        self._classifier = _load_classifier(classifier) if classifier is not None else None
        self._encoder = encoder

    def split(self, prompt: str, negative: str = "") -> tuple[str, str]:
        """(prompt, negative) with a negative written inside the prompt moved over."""
        text = base_form(read_spaced_words(prompt))
        inline = self._negative_start.search(text)
        if inline:
            rest = text[inline.end() :]
            negative = f"{negative}, {rest}" if negative else rest
            text = text[: inline.start()]
        return text, negative

    def check(self, prompt: str, negative: str = "") -> PromptVerdict:
        text, negative = self.split(prompt, negative)
        found = self.concepts(text)
        # An excuse ("for a medical textbook") is not a context: with one, none lifts.
        lifting = set() if "pretext" in found else found
        for rule in self._rules:
            if rule.all <= found and not rule.unless & lifting:
                return PromptVerdict(False, rule.refuse, "prompt", "rules")
        if negative:
            taken_away = self._concepts_in(negative)
            if "undressing" in taken_away:
                stripped = "minors" if "minor" in found else "sexual"
                return PromptVerdict(False, stripped, "negative", "rules")
            if "hate" in taken_away:
                return PromptVerdict(False, "hate", "negative", "rules")
        for layer, category in self._learned(text, found):
            if category is None:
                continue
            if "minor" in found and category in JUDGES_OF_A_CHILD:
                category = "minors"
            elif "public-figure" in found:
                category = "public-figure"
            return PromptVerdict(False, category, "prompt", layer)
        return PromptVerdict(True)

    def concepts(self, text: str) -> set[str]:
        """The concepts whose terms occur in `text` (any variant), safe phrases aside."""
        found = self._concepts_in(text)
        base = base_form(text)
        if "minor" not in found and any(age.search(base) for age in self._ages):
            found.add("minor")
        return found

    def _concepts_in(self, text: str) -> set[str]:
        found: set[str] = set()
        for form in variants(text):
            matches = list(self._safe.finditer(form))
            if not matches:
                found |= self._index.concepts(form)
                continue
            kept, at = [], 0
            for match in matches:
                kept.append(form[at : match.start()])
                at = match.end()
            found |= self._index.concepts(" ".join([*kept, form[at:]]))
            # A safe phrase hides the words inside it that would refuse ("cum" in
            # "documentary"), never a context that lifts a rule ("documentary"), the
            # excuse that cancels one ("documentary ke liye", for a documentary), nor a
            # term that holds the phrase ("molotov cocktail"; Korean 아이유, the singer
            # IU, hides 아이, a child, but not herself).
            found |= self._index.concepts(form) & _NEVER_HIDDEN
            for match in matches:
                found |= self._holding_phrase(match.group()).concepts(form)
        return found

    def _holding_phrase(self, phrase: str) -> TermIndex:
        """The terms in which `phrase`, a safe phrase as found, occurs whole; found once
        per phrase, as few prompts hold one."""
        index = self._holding.get(phrase)
        if index is None:
            pattern = _phrase_pattern([phrase])
            index = TermIndex(
                {
                    concept: [t for t in listed if pattern.search(_form(t))]
                    for concept, listed in self._terms.items()
                }
            )
            self._holding[phrase] = index
        return index

    def _learned(self, text: str, found: set[str]) -> Iterable[tuple[str, str | None]]:
        """The learned layers' categories for the prompt (its negative left to the rules)."""
        if self._classifier is not None:
            yield "classifier", self._classifier.predict(classifier_text(text), found).category
        if self._encoder is not None:
            yield "encoder", self._encoder.category(text)

    @staticmethod
    def categories() -> tuple[str, ...]:
        return CATEGORIES

    @staticmethod
    def hides_hard_term(phrase: str) -> bool:
        """Whether `phrase` holds a shipped term of a hard concept: no safe phrase may."""
        return bool(_hard_index().concepts(base_form(phrase)))


@functools.cache
def _form(term: str) -> str:
    return term_form(term).rstrip("*").strip()


def _phrase_pattern(phrases: Iterable[str]) -> re.Pattern[str]:
    """Whole-word phrases (`=`, no endings, is what they are anyway); `*` at the end
    takes the rest of the word."""
    parts = []
    for raw in phrases:
        phrase = term_form(raw)
        star = phrase.endswith("*")
        phrase = phrase.rstrip("*").strip()
        if not phrase:
            continue
        body = re.escape(phrase).replace(r"\ ", r"\s+") + (r"\w*" if star else "")
        # Scripts without spaces between words take no word boundaries.
        parts.append(body if ANYWHERE.search(phrase) else rf"(?<!\w){body}(?!\w)")
    if not parts:
        return re.compile(r"(?!x)x")
    parts.sort(key=len, reverse=True)
    return re.compile("|".join(parts))


def _marker_pattern(markers: Iterable[str]) -> re.Pattern[str]:
    """`--no` (or a dash a phone made of it), or a marker followed by a colon."""
    named = sorted({re.escape(base_form(m)) for m in markers if m.strip()}, key=len, reverse=True)
    colon = r"(?:" + "|".join(named) + r")\s*[:=]" if named else r"(?!x)x"
    return re.compile(r"(?:(?<=\s)|^)(?:--|\u2014|\u2013)no\b|(?<!\w)" + colon)
