"""The transport-agnostic core. It never imports a chat platform's library."""

from bot.core.app import open_booth
from bot.core.booth import Booth
from bot.core.consent import ConsentText
from bot.core.types import (
    FINAL_STATES,
    BoothError,
    ConsentRequired,
    Erasure,
    Identity,
    JobOutcome,
    JobTicket,
    JobUpdate,
    Upload,
    UserStatus,
    Verdict,
)
from engine.jobs import ImagineRequest

__all__ = [
    "FINAL_STATES",
    "Booth",
    "BoothError",
    "ConsentRequired",
    "ConsentText",
    "Erasure",
    "Identity",
    "ImagineRequest",
    "JobOutcome",
    "JobTicket",
    "JobUpdate",
    "Upload",
    "UserStatus",
    "Verdict",
    "open_booth",
]
