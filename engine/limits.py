"""Limits of a generation request, shared by the core (which validates before queueing)
and the engine (which validates again); no torch here."""

from __future__ import annotations

__all__ = [
    "ASPECT_RATIOS",
    "MAX_GUIDANCE",
    "MAX_IMAGES",
    "MAX_PROMPT_CHARS",
    "MAX_STEPS",
]

# name -> (width part, height part)
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1": (1, 1),
    "4:5": (4, 5),
    "5:4": (5, 4),
    "3:4": (3, 4),
    "4:3": (4, 3),
    "2:3": (2, 3),
    "3:2": (3, 2),
    "9:16": (9, 16),
    "16:9": (16, 9),
}
MAX_IMAGES = 4
MAX_STEPS = 100
MAX_GUIDANCE = 20.0
MAX_PROMPT_CHARS = 1000
