"""Layer (b) of the prompt filter: term lists per concept and language, and the rules
that combine the concepts found into a refusal. Both are data (engine/safety/data/).

A concept is a named list of terms (`sexual`, `minor`, `sport`, ...). terms.tsv holds
`concept<TAB>lang<TAB>term`; a term is a word or phrase in normalised form, matching as
whole words with the common English endings, or any word it begins when it ends in `*`,
or only as written when it starts with `=` (Polish "=syn", a son, is not Swedish "synd").
Terms in scripts written without spaces (Chinese, Japanese, Korean, Arabic) and emoji
match anywhere in the text, unless the term starts with `=`: then it is matched as words
(Arabic "=علم", a flag, is not inside "أعلّم", I teach; Korean "=의사", a doctor, is not
inside "국회의사당", the National Assembly). rules.toml says which concepts together
refuse, in which category, and which contexts lift a rule; a hard rule has no lifting
context.

Matching tokenises each variant of the prompt and looks word n-grams up in dictionaries
(no large regular expressions), which keeps a check well under a millisecond. A word with
letters masked by `*` or `#` ("s*x", "p**n") is matched against the one-word terms of its
length, each mask standing for one letter.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.safety.normalise import base_form, words

__all__ = [
    "ANYWHERE",
    "CONCEPTS",
    "DATA",
    "HARD_CONCEPTS",
    "Rule",
    "TermIndex",
    "load_rules",
    "load_terms",
    "term_form",
]

DATA = Path(__file__).resolve().parent / "data"

# Every concept the data may use. Refusal categories are concepts too, except `minors`,
# whose terms are `minor-hard` (refused alone: "jailbait") and `minor` (a child, refused
# only together with sexual, violent or self-harm content).
# `ledge` (a bridge railing, a roof edge, the rails) and `farewell` (a last photo, a
# goodbye letter, ready to jump) are harmless alone and self-harm together; `hate-code`
# (88, 1488) and `hate-sign` (a shaved head, a bomber jacket, a tattoo, a banner) likewise
# make hate together, and so do `hate-group` (a people named by race, faith, origin,
# sexuality or disability, or by a slur) and `degrading` (drawn as vermin or garbage,
# chained, swept out, "sent back"): "me with my Roma neighbours" and "me as a pest
# controller" are both photos. `suggestive` (a seductive pose, a lifted skirt, kissing in bed) is
# refused with a child only. `pretext` ("for a medical textbook", "for an art class",
# "ignore your rules") is the excuse the policy names as an evasion: where it is found, no
# context lifts a rule.
CONCEPTS: tuple[str, ...] = (
    "sexual", "minor-hard", "minor", "violence", "self-harm", "hate", "public-figure",
    "violent-act", "target", "undressing", "sport", "fiction", "awareness", "medical",
    "history", "safe", "negative-marker", "ledge", "farewell", "hate-code", "hate-sign",
    "suggestive", "pretext", "hate-group", "degrading",
)  # fmt: skip
# Shipped terms of these concepts stay whatever an admin removes.
HARD_CONCEPTS: frozenset[str] = frozenset(
    {"sexual", "minor-hard", "minor", "undressing", "suggestive"}
)
# Contexts that may lift a rule; a hard rule takes none.
CONTEXTS: frozenset[str] = frozenset({"sport", "fiction", "awareness", "medical", "history"})

_ENDINGS = ("s", "es", "ed", "d", "ing", "er", "ers")
_MAX_WORDS = 7
# A word with letters masked by a star or a hash, each for one letter ("s*x", "p**n",
# "n#de"): letters on both sides of every mask, at most two masks, at least two letters.
_MASKED = re.compile(r"(?<![\w*#])[^\W\d_]+(?:[*#]{1,2}[^\W\d_]+)+(?![\w*#])")
_Lengths = dict[int, tuple[str, dict[str, set[str]]]]
# Scripts written without spaces between words, and symbols (emoji): matched anywhere.
ANYWHERE = re.compile(
    r"[\u0600-\u06ff\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\U0001f000-\U0001faff\u2600-\u27bf\u5350\u534d]"
)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    all: frozenset[str]
    unless: frozenset[str]
    refuse: str
    hard: bool


def load_terms(path: Path = DATA / "terms.tsv") -> dict[str, list[str]]:
    """concept -> terms, from `concept<TAB>lang<TAB>term` lines; `#` starts a comment."""
    terms: dict[str, list[str]] = {c: [] for c in CONCEPTS}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        columns = raw.split("\t")
        if len(columns) != 3:
            raise ValueError(f"{path.name}:{number}: expected concept<TAB>lang<TAB>term")
        concept, _lang, term = columns
        if concept not in terms:
            raise ValueError(f"{path.name}:{number}: unknown concept {concept!r}")
        terms[concept].append(term)
    return terms


def load_rules(path: Path = DATA / "rules.toml") -> list[Rule]:
    """The combination rules, checked: known concepts, and no context on a hard rule."""
    with path.open("rb") as fh:
        data = tomllib.load(fh)
    rules = []
    for entry in data.get("rule", []):
        rule = Rule(
            name=str(entry["name"]),
            all=frozenset(entry["all"]),
            unless=frozenset(entry.get("unless", ())),
            refuse=str(entry["refuse"]),
            hard=bool(entry.get("hard", False)),
        )
        unknown = (rule.all | rule.unless) - set(CONCEPTS)
        if unknown:
            raise ValueError(f"rule {rule.name!r}: unknown concept(s) {sorted(unknown)}")
        if rule.hard and rule.unless:
            raise ValueError(f"rule {rule.name!r}: a hard rule cannot be lifted by a context")
        if not rule.unless <= CONTEXTS:
            raise ValueError(f"rule {rule.name!r}: only {sorted(CONTEXTS)} can lift a rule")
        rules.append(rule)
    return rules


def term_form(raw: str) -> str:
    """A listed term as it is matched: normalised, without its `=` mark."""
    return base_form(raw.removeprefix("="))


class TermIndex:
    """Which concepts' terms occur in a normalised text."""

    def __init__(self, terms: Mapping[str, Iterable[str]]) -> None:
        self._exact: dict[str, set[str]] = {}
        self._whole: dict[str, set[str]] = {}  # `=` terms: no endings
        self._prefix: dict[str, set[str]] = {}
        self._anywhere: dict[str, set[str]] = {}
        for concept, listed in terms.items():
            for raw in listed:
                whole = raw.startswith("=")
                term = term_form(raw)
                star = term.endswith("*")
                term = term.rstrip("*").strip()
                if not term:
                    continue
                if ANYWHERE.search(term) and not whole:
                    self._anywhere.setdefault(term, set()).add(concept)
                    continue
                key = " ".join(words(term))
                if not key:
                    continue
                table = self._prefix if star else self._whole if whole else self._exact
                table.setdefault(key, set()).add(concept)
        # Built on the first masked word (few prompts have one).
        self._masked: tuple[_Lengths, _Lengths] | None = None
        self._lengths = sorted({len(t) for t in self._anywhere}, reverse=True)
        # The few found anywhere that start with a Latin letter ("av女優").
        self._latin_lengths = sorted(
            {len(t) for t in self._anywhere if t[0].isascii() and t[0].isalnum()}, reverse=True
        )

    def concepts(self, form: str) -> set[str]:
        found: set[str] = set()
        tokens = words(form)
        exact, whole, prefix = self._exact, self._whole, self._prefix
        for start in range(len(tokens)):
            for end in range(start + 1, min(start + _MAX_WORDS, len(tokens)) + 1):
                head = " ".join(tokens[start : end - 1])
                lead = f"{head} " if head else ""
                last = tokens[end - 1]
                hit = whole.get(lead + last)
                if hit:
                    found |= hit
                for stem in _stems(last):
                    hit = exact.get(lead + stem)
                    if hit:
                        found |= hit
                for cut in range(2, len(last) + 1):
                    hit = prefix.get(lead + last[:cut])
                    if hit:
                        found |= hit
        if "*" in form or "#" in form:
            for masked in _MASKED.finditer(form):
                found |= self._unmasked(masked[0])
        if self._anywhere:
            for i, ch in enumerate(form):
                # A term found anywhere starts at a CJK character, or at the first letter
                # of a Latin word ("av女優", "isisの旗"), never inside one.
                lengths = self._lengths
                if ch.isascii():
                    if not ch.isalnum() or (i and form[i - 1].isascii() and form[i - 1].isalnum()):
                        continue
                    lengths = self._latin_lengths
                for length in lengths:
                    hit = self._anywhere.get(form[i : i + length])
                    if hit:
                        found |= hit
        return found

    def _unmasked(self, word: str) -> set[str]:
        """The concepts of the one-word terms that `word`, with masked letters, could be:
        as written or with an English ending, or a `*` term it begins with."""
        masks = sum(ch in "*#" for ch in word)
        if masks > 2 or len(word) - masks < 2:
            return set()
        if self._masked is None:
            self._masked = (
                _by_length((self._exact, self._whole)),
                _by_length([self._prefix]),
            )
        words_by_length, prefixes_by_length = self._masked
        found: set[str] = set()
        # Shorter than four letters, a stem or a term's head is too easily another word.
        stems = [stem for stem in _stems(word) if stem == word or len(stem) >= 4]
        heads = [word[:cut] for cut in range(4, len(word) + 1)]
        for table, candidates in ((words_by_length, stems), (prefixes_by_length, heads)):
            for head in candidates:
                bucket = table.get(len(head))
                if bucket is None or not any(ch in "*#" for ch in head):
                    continue
                text, concepts = bucket
                pattern = "".join("." if ch in "*#" else re.escape(ch) for ch in head)
                for hit in re.finditer(f"^{pattern}$", text, re.MULTILINE):
                    found |= concepts[hit[0]]
        return found


def _by_length(tables: Iterable[dict[str, set[str]]]) -> _Lengths:
    """One-word keys by length, each length's keys also as one text to search."""
    grouped: dict[int, dict[str, set[str]]] = {}
    for table in tables:
        for key, concepts in table.items():
            if " " not in key:
                grouped.setdefault(len(key), {}).setdefault(key, set()).update(concepts)
    return {n: ("\n".join(keys), keys) for n, keys in grouped.items()}


def _stems(word: str) -> list[str]:
    stems = [word]
    for ending in _ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 2:
            stems.append(word[: -len(ending)])
    return stems
