"""The interfaces the core and the dispatcher use storage through: the repository and the
job queue, as protocols any backend can implement.

SQLite implements them today (`storage.repository.Repository`, `storage.jobs.JobQueue`);
tests/test_repository_contract.py and tests/test_job_queue_contract.py hold what every
backend must do, the job queue's crash-safety guarantees included. The core is typed
against these, not against SQLite.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from engine.jobs import JobRequest, JobResult
from storage.figures import FigureRows
from storage.records import (
    AuditEntry,
    BlocklistTerm,
    ConsentRecord,
    ImageRecord,
    JobRecord,
    LoraRecord,
    PhotoRecord,
    ReviewItem,
    ServiceStats,
    StyleRecord,
    User,
)
from storage.repository import NewPhoto

__all__ = ["FINAL_STATUSES", "JobQueue", "ModerationStore", "Repository", "StyleStore"]

# What `JobQueue.finish` accepts; a job in one of these never changes again.
FINAL_STATUSES = ("succeeded", "failed", "cancelled")


class ModerationStore(Protocol):
    """Bans, quotas, strikes, the admins' blocklist edits and the service's figures."""

    async def get_user(self, user_id: int) -> User | None: ...

    async def set_ban(self, user_id: int, reason: str, until: str | None) -> None: ...

    async def lift_ban(self, user_id: int) -> bool:
        """False when the user was not banned."""
        ...

    async def set_quotas(
        self, user_id: int, images_per_day: int | None, trainings_per_week: int | None
    ) -> None: ...

    async def productive_jobs_since(
        self, user_id: int, kind: str, since: str
    ) -> list[JobRecord]: ...

    async def add_strike(self, user_id: int, category: str, at: str) -> None: ...

    async def strike_count(self, user_id: int, since: str | None = None) -> int: ...

    async def has_open_review(self, user_id: int, kind: str) -> bool: ...

    async def blocklist_terms(self) -> list[BlocklistTerm]: ...

    async def set_blocklist_term(
        self, term: str, category: str, *, removed: bool, by: str, at: str
    ) -> None: ...

    async def service_stats(self) -> ServiceStats: ...


class StyleStore(Protocol):
    """The admins' library of style LoRAs, one per name (not owned by any user)."""

    async def add_style(
        self,
        name: str,
        *,
        blob: str,
        sha256: str,
        weight: float,
        trigger: str,
        family: str,
        added_by: str,
    ) -> StyleRecord | None:
        """The new style; None (and nothing changed) when the name is taken."""
        ...

    async def style(self, name: str) -> StyleRecord | None: ...

    async def styles(self) -> list[StyleRecord]:
        """The whole library, by name."""
        ...

    async def remove_style(self, name: str) -> StyleRecord | None:
        """The style removed; None when there was none of that name."""
        ...


class Repository(ModerationStore, StyleStore, Protocol):
    """Users and everything they own, the style library, the review queue, settings, the
    audit log.

    Erasing a user (`delete_user`) removes every row that names them.
    """

    # users and consent
    async def find_user(self, platform: str, platform_user_id: str) -> User | None: ...

    async def find_user_by_trigger(self, trigger_word: str) -> User | None: ...

    async def get_or_create_user(self, platform: str, platform_user_id: str) -> User: ...

    async def delete_user(self, user_id: int) -> None: ...

    async def set_trigger_word(self, user_id: int, word: str) -> None: ...

    async def active_consent(self, user_id: int) -> ConsentRecord | None: ...

    async def add_consent(
        self, user_id: int, version: str, text_sha256: str, platform: str
    ) -> ConsentRecord: ...

    # photos
    async def photos(self, user_id: int) -> list[PhotoRecord]: ...

    async def add_photos(self, user_id: int, photos: Sequence[NewPhoto]) -> list[int]:
        """All or none."""
        ...

    async def photo_stamp(self) -> tuple[int, int]: ...

    async def photo_descriptors(
        self, *, after_id: int = 0, user_id: int | None = None
    ) -> list[tuple[int, int, bool, bytes]]: ...

    async def photo_counts(self) -> dict[int, int]: ...

    def busy_writing(self) -> bool: ...

    # models, pictures and a user's jobs
    async def loras(self, user_id: int) -> list[LoraRecord]: ...

    async def active_lora(self, user_id: int) -> LoraRecord | None: ...

    async def add_lora(
        self,
        user_id: int,
        *,
        base_model: str,
        family: str,
        trigger_word: str,
        blob: str,
        sha256: str,
        recipe: Mapping[str, Any],
        job_id: int | None = None,
        likeness: Mapping[str, Any] | None = None,
        method: str = "lora",
    ) -> LoraRecord:
        """A new active version; called again for the same job, the first one.
        `likeness`: how much it looks like its user (engine.training.likeness)."""
        ...

    async def set_active_lora(self, user_id: int, version: int) -> bool: ...

    async def add_image(
        self, job_id: int, user_id: int, *, blob: str, seed: int, width: int, height: int
    ) -> None:
        """Once per job and blob, however often it is called."""
        ...

    async def delete_job_images(self, job_id: int) -> list[str]: ...

    async def images_of_job(self, job_id: int) -> list[ImageRecord]: ...

    async def image_count(self, user_id: int) -> int: ...

    async def jobs(self, user_id: int) -> list[JobRecord]: ...

    # the review queue, settings, blobs, the audit log
    async def add_review_item(
        self,
        kind: str,
        user_id: int,
        detail: Mapping[str, Any],
        *,
        job_id: int | None = None,
        blob: str | None = None,
        reporter_id: int | None = None,
    ) -> int: ...

    async def review_items(self, status: str = "open", limit: int = 50) -> list[ReviewItem]: ...

    async def review_item(self, item_id: int) -> ReviewItem | None: ...

    async def resolve_review_item(self, item_id: int, status: str, by: str) -> bool:
        """False when the item is not open (any more)."""
        ...

    async def setting(self, key: str) -> str | None: ...

    async def set_setting(self, key: str, value: str | None) -> None: ...

    async def blob_keys_of(self, user_id: int) -> set[str]:
        """Every blob the user's rows name, pictures attached to their jobs included."""
        ...

    async def blob_in_use(self, key: str) -> bool:
        """Whether a row names `key` (a user's, or the style library's), or a queued or
        running job reads it as its source."""
        ...

    async def audit(
        self, actor: str, action: str, detail: Mapping[str, Any] | None = None
    ) -> None: ...

    async def add_engine_restart(self, at: str) -> None:
        """The engine process was started again after it ended unexpectedly."""
        ...

    async def figure_rows(self, since: str) -> FigureRows:
        """What the console's figures are drawn from, at or after `since`."""
        ...

    async def audit_entries(
        self,
        limit: int = 100,
        *,
        before: int | None = None,
        actor: str = "",
        action: str = "",
        user: int | None = None,
    ) -> list[AuditEntry]:
        """Newest first; older than entry `before`, by `actor`, with an action starting
        with `action`, about user #`user` (its detail's "user"), where given."""
        ...

    async def checkpoint(self) -> None: ...


class JobQueue(Protocol):
    """The durable job queue.

    Order: generation before training (unless the training has waited long), then users in
    turn (each one's oldest job first), then age. Guarantees: a job left running when its
    worker died is queued again once (`recover`, `requeue`), and `attempts` counts the
    runs that began, so a job that kills its worker can be failed instead of looping; a
    finished job never changes again.
    """

    async def enqueue(self, user_id: int, request: JobRequest) -> JobRecord: ...

    async def get(self, job_id: int) -> JobRecord | None: ...

    async def active_count(self, user_id: int) -> int:
        """The user's queued and running jobs."""
        ...

    async def schedule(self) -> list[int]:
        """Queued job ids in the order they will run."""
        ...

    async def queued(self) -> list[JobRecord]:
        """The queued jobs in the order they will run (`schedule`'s, as rows)."""
        ...

    def waited_long(self, job: JobRecord) -> bool:
        """Whether a training has waited long enough to rank with the pictures, and to
        make way for them no more."""
        ...

    async def running(self) -> list[JobRecord]:
        """The running jobs, the longest-running first."""
        ...

    async def next_job(self) -> JobRecord | None: ...

    async def position(self, job_id: int) -> int | None:
        """1 for the next job to run; None when the job is not queued."""
        ...

    async def has_queued(self, kind: str) -> bool: ...

    async def depth(self) -> dict[str, int]:
        """Queued jobs by kind (kinds with none are left out)."""
        ...

    async def mark_running(self, job_id: int) -> None:
        """A run begins: it counts as an attempt."""
        ...

    async def requeue(self, job_id: int, *, attempt_counts: bool) -> None:
        """A running job back in the queue; without `attempt_counts` its run is not counted."""
        ...

    async def set_progress(self, job_id: int, progress: float) -> None: ...

    async def finish(
        self,
        job_id: int,
        status: str,
        *,
        result: JobResult | None = None,
        error: str | None = None,
    ) -> None:
        """End a queued or running job; a job already finished keeps how it ended.
        ValueError for a status that is not one of FINAL_STATUSES."""
        ...

    async def request_cancel(self, job_id: int) -> None: ...

    async def cancel_requested(self, job_id: int) -> bool: ...

    async def recover(self) -> int:
        """At start-up: jobs left running go back to the queue; how many did."""
        ...
