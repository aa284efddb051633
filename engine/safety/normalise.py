"""Prompt normalisation before matching: the forms an evasion takes, undone.

NFKC folds fullwidth and mathematical letters, confusable Cyrillic and Greek letters
become Latin, accents go, Arabic letter forms are unified, and then each prompt yields
a few variants: as written, with leetspeak digits and symbols read as letters, with
punctuation (or emoji) inside words dropped, with spaced-out letters joined, with
stretched letters squeezed, and with emoji read as words. A prompt spaced out letter by
letter, its words apart by wider gaps, is read word by word before all that. A term
found in any variant counts.

Term lists go through `base_form` too, so a Russian term and a Russian prompt meet in
the same (partly Latin-looking) spelling. Indic vowel signs are kept: dropping them
would merge unrelated Hindi words.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["EMOJI_WORDS", "base_form", "fold_confusables", "read_spaced_words", "variants", "words"]

_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
        "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "ɡ": "g", "һ": "h", "ӏ": "l",
        # Greek
        "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
        "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s",
        # The Turkish dotless i (U+0131), written "i" on keyboards without it.
        "ı": "i",
    }
)  # fmt: skip
# Arabic: one form for the letters people write interchangeably; the tatweel goes.
_ARABIC = str.maketrans({"ة": "ه", "ى": "ي", "ـ": None, "ک": "ك", "ی": "ي"})
# Emoji people use as words; read as words in a variant of their own.
EMOJI_WORDS: dict[str, str] = {
    "🍆": "eggplant", "🍑": "peach", "💦": "splash", "👅": "tongue", "🔞": "nsfw",
    "👙": "bikini", "🩲": "briefs", "🍒": "cherries", "🥵": "hot", "🫦": "lips",
    "🔪": "knife", "🗡": "dagger", "🔫": "gun", "💣": "bomb", "🩸": "blood",
    "💀": "skull", "☠": "skull", "⚰": "coffin", "🪦": "grave", "🧨": "dynamite",
    "🪢": "noose", "💊": "pills", "✂": "scissors", "🚫": "no", "❌": "no",
    "👶": "baby", "🧒": "child", "👧": "girl", "👦": "boy", "🍼": "baby bottle",
    "卐": "swastika", "卍": "swastika", "⚡⚡": "ss",
}  # fmt: skip
_EMOJI = re.compile("|".join(re.escape(e) for e in sorted(EMOJI_WORDS, key=len, reverse=True)))
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
     "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l"}
)  # fmt: skip
_LEET_CHARS = "01345789@$!|+€£"
# A run of letters and leet characters that holds at least one letter and one leet one.
_LEET_WORD = re.compile(rf"[a-z{re.escape(_LEET_CHARS)}]*[a-z][a-z{re.escape(_LEET_CHARS)}]*")
# Punctuation between two letters or digits of any script: "n.a.k.e.d", "س.ك.س".
_INNER_PUNCT = re.compile(r"(?<=[^\W_])[.\-_*'’`~^/\\,:;=#\"•·]+(?=[^\W_])")
# Three or more single characters in a row: "n u d e", "d e c 4 p 1 t a t e d", and
# the same in any script (spaced-out Arabic letters), quotes or a full stop around them.
_ONE = rf"(?:[^\W_]|[{re.escape(_LEET_CHARS)}])"
_SPACED = re.compile(rf"(?<!{_ONE}){_ONE}(?:\s+{_ONE}(?!{_ONE})){{2,}}")
_STRETCHED = re.compile(r"([a-z])\1{2,}")
# Emoji and symbols between two letters of a script written with spaces: "n🔥a🔥k🔥e🔥d".
_LETTER = r"[a-z\u0400-\u04ff]"
_INNER_SYMBOL = re.compile(
    rf"(?<={_LETTER})[\u2600-\u27bf\U0001f000-\U0001faff\ufe0f\u200d]+(?={_LETTER})"
)
# A whole prompt spaced out letter by letter, its words apart by wider gaps:
# "m e   n a k e d   o n   t h e   b e a c h".
_WIDE_GAP = re.compile(r"\s{2,}")
_SPACES = re.compile(r"\s+")


# Indic vowel signs and the kana voicing marks carry meaning; other marks are accents.
def _KEPT_MARK(ch: str) -> bool:
    return "\u0900" <= ch <= "\u0dff" or ch in "\u3099\u309a"


# Letters, digits and marks of every script, Indic vowel signs included (\w stops at them).
_WORD = re.compile(r"[\w\u0900-\u0dff]+")


# Hangul written as separate letters ("ㅈㅏㅅㅏㄹ") is put back together: NFKC turns them
# into conjoining jamo, and a leading consonant after a vowel, with no vowel of its own
# after it, is that syllable's final consonant; NFC then composes the syllables.
_FINAL = dict(zip("ᄀᄁᄂᄃᄅᄆᄇᄉᄊᄋᄌᄎᄏᄐᄑᄒ", "ᆨᆩᆫᆮᆯᆷᆸᆺᆻᆼᆽᆾᆿᇀᇁᇂ", strict=True))
_TRAILING_LEAD = re.compile(r"(?<=[\u1161-\u1175])([\u1100-\u1112])(?![\u1161-\u1175])")


def _hangul(decomposed: str) -> str:
    return _TRAILING_LEAD.sub(lambda m: _FINAL.get(m[1], m[1]), decomposed)


def base_form(text: str) -> str:
    """NFKC, case-folded, confusables to Latin, accents dropped, Hangul letters joined
    into syllables, spaces collapsed."""
    text = unicodedata.normalize("NFKC", text).casefold().translate(_CONFUSABLES)
    decomposed = unicodedata.normalize("NFD", text)
    # Mn: accents and combining marks (Indic ones kept); Cf: zero-width characters and
    # soft hyphens. NFD also splits Arabic hamza forms, so they fall back to the letter.
    text = "".join(
        ch
        for ch in decomposed
        if not (
            (unicodedata.category(ch) == "Mn" and not _KEPT_MARK(ch))
            or unicodedata.category(ch) == "Cf"
        )
    )
    text = unicodedata.normalize("NFC", _hangul(text)).translate(_ARABIC)
    return _SPACES.sub(" ", text).strip()


def fold_confusables(text: str) -> str:
    """Cyrillic and Greek letters as base_form writes them (for patterns over base forms)."""
    return text.translate(_CONFUSABLES)


def words(form: str) -> list[str]:
    """The words of a normalised form, in order."""
    return _WORD.findall(form)


def read_spaced_words(text: str) -> str:
    """`text` with each wide-gapped group of single letters read as a word ("m e   n a k e d"
    is "me naked"); base_form collapses the gaps that mark the words, so this goes first."""
    groups = _WIDE_GAP.split(text.strip())
    read = [
        "".join(g.split()) if len(g) > 2 and all(len(c) == 1 for c in g.split()) else g
        for g in groups
    ]
    return " ".join(read) if len(groups) > 1 and read != groups else text


def variants(text: str) -> list[str]:
    """The forms of `text` to match terms in; the first is `base_form(text)`."""
    base = base_form(text)
    joined = _INNER_PUNCT.sub("", base)
    forms = [base, joined, _INNER_SYMBOL.sub("", joined)]
    runs = list(_SPACED.finditer(joined))
    for run in runs:
        letters = run[0].split()
        # "as a n a z i", "b o m b i ...", Russian "ya g o l a ya v": a real one-letter word
        # may start or end the run, or both.
        edges = ("".join(letters[1:]), "".join(letters[:-1]), "".join(letters[1:-1]))
        for joined_run in ("".join(letters), *edges):
            forms.append(unicodedata.normalize("NFC", _hangul(joined_run)))
    forms += [_unleet(form) for form in forms]
    forms += [_STRETCHED.sub(r"\1", form) for form in forms]
    if _EMOJI.search(base):
        forms.append(_EMOJI.sub(lambda m: f" {EMOJI_WORDS[m[0]]} ", joined))
    forms = list(dict.fromkeys(forms))
    if not runs:
        return forms
    # A group named in spaced letters next to a scene ("c y g a n a ... kradnę kurę")
    # refuses as a pair only in the prompt read whole: every run read back where it stood,
    # in four forms whatever the number of runs (each more would cost a whole prompt's
    # matching). They go second: the classifier reads the first and the last form, as it
    # was trained.
    in_place = [_SPACED.sub(reading, joined) for reading in _READINGS]
    in_place += [_unleet(form) for form in in_place]
    extra = [form for form in dict.fromkeys(in_place) if form not in forms]
    return [forms[0], *extra, *forms[1:]]


def _read(run: re.Match[str], first_apart: bool, last_apart: bool) -> str:
    letters = run[0].split()
    head = f"{letters[0]} " if first_apart else letters[0]
    tail = f" {letters[-1]}" if last_apart else letters[-1]
    return unicodedata.normalize("NFC", _hangul(head + "".join(letters[1:-1]) + tail))


# A spaced run read whole, or with a real one-letter word at its start, end, or both.
_READINGS = [
    functools.partial(_read, first_apart=first, last_apart=last)
    for first in (False, True)
    for last in (False, True)
]


def _unleet(form: str) -> str:
    return _LEET_WORD.sub(lambda m: m[0].translate(_LEET), form)
