"""Prompt normalisation before matching: the forms an evasion takes, undone.

NFKC folds fullwidth and mathematical letters, confusable Cyrillic and Greek letters
become Latin, accents go, and then each prompt yields a few variants: as written, with
leetspeak digits and symbols read as letters, with punctuation inside words dropped,
with spaced-out letters joined, and with stretched letters squeezed. A term found in
any variant counts.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["base_form", "variants"]

_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
        "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "һ": "h", "ӏ": "l",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l"}
)  # fmt: skip
_LEET_CHARS = "01345789@$!|+€£"
# A run of letters and leet characters that holds at least one letter and one leet one.
_LEET_WORD = re.compile(rf"[a-z{re.escape(_LEET_CHARS)}]*[a-z][a-z{re.escape(_LEET_CHARS)}]*")
_INNER_PUNCT = re.compile(r"(?<=[a-z0-9])[.\-_*'’`~^/\\,:;=#\"]+(?=[a-z0-9])")
# Three or more single characters in a row: "n u d e", "d e c 4 p 1 t a t e d".
_SPACED = re.compile(
    rf"(?<![^\s])[a-z{re.escape(_LEET_CHARS)}](?:\s+[a-z{re.escape(_LEET_CHARS)}](?![^\s])){{2,}}"
)
_STRETCHED = re.compile(r"([a-z])\1{2,}")
_SPACES = re.compile(r"\s+")


def base_form(text: str) -> str:
    """NFKC, case-folded, confusables to Latin, accents dropped, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLES)
    decomposed = unicodedata.normalize("NFD", text)
    # Mn: accents and combining marks; Cf: zero-width spaces and joiners, soft hyphens.
    text = "".join(ch for ch in decomposed if unicodedata.category(ch) not in ("Mn", "Cf"))
    return _SPACES.sub(" ", text).strip()


def variants(text: str) -> list[str]:
    """The forms of `text` to match terms in; the first is `base_form(text)`."""
    base = base_form(text)
    joined = _INNER_PUNCT.sub("", base)
    forms = [base, joined]
    for run in _SPACED.finditer(joined):
        letters = run[0].split()
        # "as a n a z i": the run may start with a real one-letter word.
        forms += ["".join(letters), "".join(letters[1:])]
    forms += [_unleet(form) for form in forms]
    forms += [_STRETCHED.sub(r"\1", form) for form in forms]
    return list(dict.fromkeys(forms))


def _unleet(form: str) -> str:
    return _LEET_WORD.sub(lambda m: m[0].translate(_LEET), form)
