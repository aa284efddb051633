"""The values that cross the boundary between the core and its front ends."""

from __future__ import annotations

from dataclasses import dataclass

from engine.jobs import JobResult
from storage.records import ConsentRecord, JobRecord, LoraRecord

__all__ = [
    "FINAL_STATES",
    "BoothError",
    "ConsentRequired",
    "Erasure",
    "Export",
    "Identity",
    "JobOutcome",
    "JobTicket",
    "JobUpdate",
    "MyData",
    "NotAuthorized",
    "RateLimited",
    "Suspended",
    "Upload",
    "UserStatus",
    "Verdict",
]


class BoothError(Exception):
    """A request the core declines; the message is meant for the person who made it."""


class ConsentRequired(BoothError):
    """The user has not accepted the current consent text."""


class RateLimited(BoothError):
    """Too many commands or jobs; `retry_after` says in how many seconds to try again."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Suspended(BoothError):
    """The user is banned or suspended: they may still see and erase their data."""


class NotAuthorized(BoothError):
    """An admin operation asked for by someone who is not an admin (the refusal is audited)."""


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


# A job's last state: after one of these, no more updates come. "erased": the job went
# with its user's data (/forget, withdrawal, a purge).
FINAL_STATES = ("succeeded", "failed", "cancelled", "erased")


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """How a job ended, ready to show its owner: what every front end posts at the end.

    `pictures` (PNG bytes) and `caption` are filled for the owner only, and the caption
    is made of the user's own words: it never shows their trigger word. A training's
    pictures are the validation samples its likeness was measured on.
    """

    job_id: int
    kind: str
    state: str  # one of FINAL_STATES
    message: str | None = None  # why it failed
    pictures: tuple[bytes, ...] = ()
    caption: str = ""
    withheld: int = 0  # pictures the safety filters kept back
    version: int | None = None  # the model version a training made
    likeness: str = ""  # a sentence: how much that model looks like its user ("": unmeasured)
    tool: str = "imagine"  # a picture job's engine.jobs.TOOLS

    @property
    def actions(self) -> tuple[str, ...]:
        """What the owner can do next with the pictures: the buttons under them.

        A picture job whose request read an attached picture cannot run again (the
        picture is not kept), so only text-to-image results can be rerolled, varied or
        restyled; any result but an upscaled one can be upscaled.
        """
        if self.state != "succeeded" or not self.pictures or self.kind != "imagine":
            return ()
        again = ("reroll", "vary", "style") if self.tool == "imagine" else ()
        bigger = ("upscale",) if self.tool != "upscale" else ()
        return (*again, *bigger, "file", "report")


@dataclass(frozen=True, slots=True)
class JobUpdate:
    """What a front end hears about a job: state changes, progress, previews, the end.

    States: running, progress, sample, checking (a training measuring its likeness),
    paused (a training making way for pictures), retrying (the engine died; it runs
    again), and the FINAL_STATES. From the core's
    `updates`, the final update carries the `outcome`.
    """

    job_id: int
    state: str
    step: int = 0
    total: int = 0
    loss: float | None = None
    eta: float | None = None
    preview: bytes | None = None  # a PNG, marked and screened like every picture
    message: str | None = None
    result: JobResult | None = None
    outcome: JobOutcome | None = None


@dataclass(frozen=True, slots=True)
class JobTicket:
    """A queued job: its id, and its place in the queue (1 runs next)."""

    job_id: int
    kind: str
    position: int | None


@dataclass(frozen=True, slots=True)
class Export:
    """A user's model as a file: LoRA weights in safetensors, in the kohya layout or in
    diffusers' (bot.core.exports)."""

    filename: str
    data: bytes
    version: int
    trigger_word: str
    format: str = "kohya"
    method: str = "lora"  # how it was trained (engine.jobs.TRAINING_METHODS)
    family_pipeline: str = "sd"  # engine.models.families.Family.pipeline of its base


@dataclass(frozen=True, slots=True)
class MyData:
    """Everything stored about a user, as counts and dates: what /mydata shows."""

    consent: ConsentRecord | None
    consent_current: bool
    photos: int
    loras: tuple[LoraRecord, ...]
    jobs: int
    images: int
    strikes: int
    banned_until: str | None
    ban_reason: str | None
    created_at: str | None
