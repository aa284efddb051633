"""The values that cross the boundary between the core and its front ends."""

from __future__ import annotations

from dataclasses import dataclass

from storage.records import ConsentRecord, JobRecord, LoraRecord

__all__ = [
    "BoothError",
    "ConsentRequired",
    "Erasure",
    "Identity",
    "Upload",
    "UserStatus",
    "Verdict",
]


class BoothError(Exception):
    """A request the core declines; the message is meant for the person who made it."""


class ConsentRequired(BoothError):
    """The user has not accepted the current consent text."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking: the platform ("cli", "telegram", "discord") and its user id."""

    platform: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Upload:
    # Shown back to the user only: never used to name a file.
    name: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Verdict:
    name: str
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class UserStatus:
    consent: ConsentRecord | None
    consent_current: bool
    photos: int
    max_photos: int
    loras: tuple[LoraRecord, ...]
    jobs: tuple[JobRecord, ...]


@dataclass(frozen=True, slots=True)
class Erasure:
    """What an erasure removed; all zeros when there was nothing to remove."""

    photos: int = 0
    loras: int = 0
    jobs: int = 0
    files: int = 0
