"""Names shared by the prompt filter's layers: the refusal categories, the hard ones,
the groups admins may edit, and the age patterns that mark a child.

The term lists themselves are data: engine/safety/data/terms.tsv and rules.toml.
"""

from __future__ import annotations

__all__ = [
    "AGE_PATTERNS",
    "BLOCKLIST_GROUPS",
    "CATEGORIES",
    "CONTEXT_GROUPS",
    "HARD_CATEGORIES",
]

# Refusal categories, in the order the term rules report them.
CATEGORIES: tuple[str, ...] = (
    "minors", "sexual", "self-harm", "violence", "hate", "public-figure",
)  # fmt: skip
# With a personal likeness in every picture, these are never allowed, whatever the
# settings say: no nudity or sex, and no child with sexual, violent or self-harm content.
HARD_CATEGORIES: frozenset[str] = frozenset({"sexual", "minors"})
# Lists an admin may extend besides the categories: `minor` (a child: refused only with
# sexual, violent or self-harm content), the contexts that lift violence, self-harm and
# hate, `safe` (innocent phrases taken out before matching) and `undressing` (what a
# negative prompt may not take away).
CONTEXT_GROUPS: tuple[str, ...] = (
    "minor", "sport", "fiction", "awareness", "medical", "history", "safe", "undressing",
)  # fmt: skip
BLOCKLIST_GROUPS: tuple[str, ...] = CATEGORIES + CONTEXT_GROUPS

# A child's age: "15 years old", "15yo", "16-year-old", "age 12", "14 jahre", "13 ans",
# "12 лет", "14歳". Matched in the base form (engine.safety.normalise.base_form), so
# written without accents; the filter folds their Cyrillic letters the same way.
# "an" and "ar" alone are ages only after a space: Indonesian "17-an" is the 17 August
# fair. Swedish "7 är" ("7 is") has the same base form as "7 år" (7 years), so "ar" is
# an age where no word follows it ("jag är 15 år", "15 år, ...") or "gammal"/"gammel".
AGE_PATTERNS: tuple[str, ...] = (
    r"(?<!\d)(?:1[0-7]|[1-9])\s*-?\s*(?:years?|yrs?|yo|y o|year old|jahre?|jahrig\w*"
    r"|ans|anos?|anni|jaar|lat|лет|год\w*|yas\w*|tuoi|tahun|saal|arig\w*|aring\w*)\b",
    r"(?<!\d)(?:1[0-7]|[1-9])\s+(?:an\b|ar(?!\s*\w)|ar\s+gam+[ae]l)",
    r"(?<!\d)(?:1[0-7]|[1-9])\s*(?:歳|岁|세|살)",
    r"\b(?:age|aged|alter|age de|edad|eta|idade|leeftijd|wiek|возраст)\s*(?:of\s*)?"
    r"(?:1[0-7]|[1-9])(?!\d)",
    r"\b(?:i'?m|i am|look(?:s|ing)?\s+like\s+(?:i'?m\s+|a\s+)?)\s*(?:1[0-7]|[1-9])(?!\d)"
    r"(?!\s*(?:am|pm|o'?clock|%|feet|foot|ft|meters?|m\b))",
)
