"""The durable job queue: jobs are rows first, and the schedule is a query.

Order: generation before training (a 10-minute training must not block everyone's
/imagine), then round-robin across users (each user's oldest job first), then age. A
training queued longer than `training_wait` ranks with the pictures, so that a stream of
them cannot keep it waiting for ever.
A job interrupted by a crash of anything is queued again at start-up; `attempts` counts
the runs that began, so a job that keeps killing the engine fails instead of looping.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.jobs import JobRequest, JobResult, encode
from storage.database import Database
from storage.ports import FINAL_STATUSES
from storage.records import JobRecord
from storage.repository import utcnow

__all__ = ["ACTIVE", "JobQueue"]

ACTIVE = ("queued", "running")

_QUEUED = """
SELECT jobs.* FROM jobs JOIN (
    SELECT id, priority,
           ROW_NUMBER() OVER (PARTITION BY user_id, priority ORDER BY id) AS turn
    FROM (
        SELECT id, user_id,
               CASE WHEN kind = 'imagine' OR created_at <= :waited THEN 0 ELSE 1 END AS priority
        FROM jobs WHERE status = 'queued'
    )
) AS rank USING (id) ORDER BY rank.priority, rank.turn, rank.id
"""
TRAINING_WAIT = 900.0  # seconds


class JobQueue:
    """The queue in SQLite; storage.ports.JobQueue says what it guarantees."""

    def __init__(self, db: Database, *, training_wait: float = TRAINING_WAIT) -> None:
        self.db = db
        self.training_wait = training_wait

    def waited_long(self, job: JobRecord) -> bool:
        """Whether the job was queued `training_wait` seconds ago or more."""
        return job.created_at <= _ago(self.training_wait)

    async def enqueue(self, user_id: int, request: JobRequest) -> JobRecord:
        now = utcnow()
        cur = await self.db.conn.execute(
            "INSERT INTO jobs (user_id, kind, params, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (user_id, request.kind, encode(request), now, now),
        )
        job = await self.get(cur.lastrowid or 0)
        assert job is not None
        return job

    async def get(self, job_id: int) -> JobRecord | None:
        async with self.db.conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)) as cur:
            row = await cur.fetchone()
        return JobRecord(**dict(row)) if row else None

    async def active_count(self, user_id: int) -> int:
        async with self.db.conn.execute(
            "SELECT count(*) FROM jobs WHERE user_id = ? AND status IN ('queued', 'running')",
            (user_id,),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def schedule(self) -> list[int]:
        """Queued job ids in the order they will run."""
        return [job.id for job in await self.queued()]

    async def queued(self) -> list[JobRecord]:
        """The queued jobs in the order they will run (`schedule`'s, as rows)."""
        async with self.db.conn.execute(_QUEUED, {"waited": _ago(self.training_wait)}) as cur:
            return [JobRecord(**dict(row)) for row in await cur.fetchall()]

    async def running(self) -> list[JobRecord]:
        async with self.db.conn.execute(
            "SELECT * FROM jobs WHERE status = 'running' ORDER BY started_at, id"
        ) as cur:
            return [JobRecord(**dict(row)) for row in await cur.fetchall()]

    async def next_job(self) -> JobRecord | None:
        order = await self.schedule()
        return await self.get(order[0]) if order else None

    async def position(self, job_id: int) -> int | None:
        """1 for the next job to run; None when the job is not queued."""
        order = await self.schedule()
        return order.index(job_id) + 1 if job_id in order else None

    async def has_queued(self, kind: str) -> bool:
        async with self.db.conn.execute(
            "SELECT 1 FROM jobs WHERE status = 'queued' AND kind = ? LIMIT 1", (kind,)
        ) as cur:
            return await cur.fetchone() is not None

    async def depth(self) -> dict[str, int]:
        """Queued jobs by kind."""
        async with self.db.conn.execute(
            "SELECT kind, count(*) FROM jobs WHERE status = 'queued' GROUP BY kind"
        ) as cur:
            return {str(kind): int(n) for kind, n in await cur.fetchall()}

    async def mark_running(self, job_id: int) -> None:
        now = utcnow()
        await self.db.conn.execute(
            "UPDATE jobs SET status = 'running', attempts = attempts + 1,"
            " started_at = coalesce(started_at, ?), updated_at = ? WHERE id = ?",
            (now, now, job_id),
        )

    async def requeue(self, job_id: int, *, attempt_counts: bool) -> None:
        """Back in the queue; a training that yielded to generation has not used an attempt."""
        await self.db.conn.execute(
            "UPDATE jobs SET status = 'queued', updated_at = ?,"
            " attempts = attempts - ? WHERE id = ? AND status = 'running'",
            (utcnow(), 0 if attempt_counts else 1, job_id),
        )

    async def set_progress(self, job_id: int, progress: float) -> None:
        await self.db.conn.execute(
            "UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ?",
            (progress, utcnow(), job_id),
        )

    async def finish(
        self,
        job_id: int,
        status: str,
        *,
        result: JobResult | None = None,
        error: str | None = None,
    ) -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"not a final status: {status!r}")
        now = utcnow()
        await self.db.conn.execute(
            "UPDATE jobs SET status = ?, result = ?, error = ?, finished_at = ?, updated_at = ?,"
            " progress = CASE WHEN ? = 'succeeded' THEN 1 ELSE progress END"
            " WHERE id = ? AND status IN ('queued', 'running')",
            (
                status,
                encode(result) if result is not None else None,
                error,
                now,
                now,
                status,
                job_id,
            ),
        )

    async def request_cancel(self, job_id: int) -> None:
        await self.db.conn.execute(
            "UPDATE jobs SET cancel_requested = 1, updated_at = ? WHERE id = ?",
            (utcnow(), job_id),
        )

    async def cancel_requested(self, job_id: int) -> bool:
        async with self.db.conn.execute(
            "SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)
        ) as cur:
            row = await cur.fetchone()
        return bool(row and row[0])

    async def recover(self) -> int:
        """At start-up: jobs left running by a crash go back to the queue."""
        cur = await self.db.conn.execute(
            "UPDATE jobs SET status = 'queued', updated_at = ? WHERE status = 'running'",
            (utcnow(),),
        )
        return cur.rowcount


def _ago(seconds: float) -> str:
    """The time `seconds` ago, as the rows write times (storage.repository.utcnow)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
