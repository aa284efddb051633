"""Model families: what the rest of the program may know about a base model.

Nothing outside this module assumes a particular family; intake asks it for the
training resolution of the configured base model.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FAMILIES", "FAMILY_NAMES", "Family", "resolve_family"]


@dataclass(frozen=True, slots=True)
class Family:
    name: str
    # Square training resolution in pixels: face crops are stored at this size.
    resolution: int


FAMILIES: dict[str, Family] = {
    # Random weights built from configs; 64 px keeps training and generation to seconds on a CPU.
    "tiny": Family("tiny", 64),
    "sd15": Family("sd15", 512),
    "sdxl": Family("sdxl", 1024),
}
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


def resolve_family(base: str, family: str = "auto") -> Family:
    """The family named in config, or, for "auto", the one `base` most likely is."""
    if family != "auto":
        return FAMILIES[family]
    if base == "tiny":
        return FAMILIES["tiny"]
    if "xl" in base.lower():
        return FAMILIES["sdxl"]
    return FAMILIES["sd15"]
