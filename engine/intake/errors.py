"""The one way intake says no: a refusal carrying a reason a person can act on."""

from __future__ import annotations

__all__ = ["PhotoRefused"]


class PhotoRefused(Exception):
    """A photo was refused; `reason` is short, polite and says what to do instead."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
