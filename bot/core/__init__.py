"""The transport-agnostic core. It never imports a chat platform's library."""

from bot.core.app import open_booth
from bot.core.booth import Booth
from bot.core.consent import ConsentText
from bot.core.types import (
    BoothError,
    ConsentRequired,
    Erasure,
    Identity,
    ImagineOptions,
    JobTicket,
    JobUpdate,
    Upload,
    UserStatus,
    Verdict,
)

__all__ = [
    "Booth",
    "BoothError",
    "ConsentRequired",
    "ConsentText",
    "Erasure",
    "Identity",
    "ImagineOptions",
    "JobTicket",
    "JobUpdate",
    "Upload",
    "UserStatus",
    "Verdict",
    "open_booth",
]
