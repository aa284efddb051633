"""Safety: the prompt filter and the image filter (provenance marks: engine.provenance)."""

from engine.safety.image_filter import NUDENET_LABELS, ImageFilter, ImageVerdict
from engine.safety.prompt_filter import PromptFilter, PromptVerdict
from engine.safety.terms import BLOCKLIST_GROUPS, CATEGORIES, HARD_CATEGORIES

__all__ = [
    "BLOCKLIST_GROUPS",
    "CATEGORIES",
    "HARD_CATEGORIES",
    "NUDENET_LABELS",
    "ImageFilter",
    "ImageVerdict",
    "PromptFilter",
    "PromptVerdict",
]
