"""Safety: the prompt filter (image filtering and provenance marks come next)."""

from engine.safety.prompt_filter import PromptFilter, PromptVerdict
from engine.safety.terms import CATEGORIES, HARD_CATEGORIES

__all__ = ["CATEGORIES", "HARD_CATEGORIES", "PromptFilter", "PromptVerdict"]
