"""Rows as frozen dataclasses: what the rest of the program sees of the database."""

from __future__ import annotations

from dataclasses import dataclass

from engine.jobs import JobRequest, JobResult, decode_request, decode_result

__all__ = [
    "AuditEntry",
    "BlocklistTerm",
    "ConsentRecord",
    "ImageRecord",
    "JobRecord",
    "LoraRecord",
    "PhotoRecord",
    "ReviewItem",
    "ServiceStats",
    "StyleRecord",
    "User",
]


@dataclass(frozen=True, slots=True)
class User:
    id: int
    platform: str
    platform_user_id: str
    trigger_word: str | None
    created_at: str
    banned_until: str | None = None
    ban_reason: str | None = None
    images_per_day: int | None = None
    trainings_per_week: int | None = None


@dataclass(frozen=True, slots=True)
class ConsentRecord:
    id: int
    user_id: int
    version: str
    text_sha256: str
    platform: str
    accepted_at: str
    withdrawn_at: str | None


@dataclass(frozen=True, slots=True)
class PhotoRecord:
    id: int
    user_id: int
    sha256: str
    image_blob: str
    crop_blob: str
    descriptor: bytes
    dhash: str
    face_box: str
    sharpness: float
    verdict: str
    reason: str | None
    created_at: str


@dataclass(frozen=True, slots=True)
class LoraRecord:
    id: int
    user_id: int
    version: int
    base_model: str
    family: str
    trigger_word: str
    blob: str
    sha256: str
    recipe: str
    active: int
    created_at: str
    job_id: int | None = None
    likeness: str | None = None  # JSON (migration 0006), None: not measured
    method: str = "lora"  # how it was trained (engine.jobs.TRAINING_METHODS)


@dataclass(frozen=True, slots=True)
class StyleRecord:
    """A style LoRA of the admins' library; `weight` is used when a user names none."""

    id: int
    name: str
    blob: str
    sha256: str
    weight: float
    trigger: str
    family: str
    added_by: str
    added_at: str


@dataclass(frozen=True, slots=True)
class JobRecord:
    id: int
    user_id: int
    kind: str
    params: str
    status: str
    progress: float
    attempts: int
    error: str | None
    result: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    updated_at: str
    cancel_requested: int = 0

    def request(self) -> JobRequest:
        """The request, typed; JobFormatError when this version cannot read it."""
        return decode_request(self.kind, self.params)

    def outcome(self) -> JobResult | None:
        """The result of a job that succeeded, typed; None before then."""
        return decode_result(self.kind, self.result) if self.result is not None else None


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: int
    job_id: int
    user_id: int
    blob: str
    seed: int
    width: int
    height: int
    created_at: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: str
    actor: str
    action: str
    detail: str


@dataclass(frozen=True, slots=True)
class ReviewItem:
    id: int
    kind: str
    user_id: int
    reporter_id: int | None
    job_id: int | None
    blob: str | None
    detail: str
    status: str
    created_at: str
    resolved_at: str | None
    resolved_by: str | None


@dataclass(frozen=True, slots=True)
class BlocklistTerm:
    """An admin's edit of the prompt filter's lists: `term` added to, or removed from,
    `category`."""

    term: str
    category: str
    removed: bool


@dataclass(frozen=True, slots=True)
class ServiceStats:
    queued: int
    running: int
    finished_last_hour: int
    failed_last_day: int
    average_seconds: dict[str, float]
    users: int
    open_reviews: int
