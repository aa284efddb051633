"""The moderation queries: bans, quotas, strikes, the admins' blocklist edits, service stats.

A part of `Repository` (which inherits these methods) kept in a module of its own so the
repository stays small; the core reaches them through `storage.ports.ModerationStore`.
"""

from __future__ import annotations

from storage.database import Database
from storage.records import BlocklistTerm, JobRecord, ServiceStats, User

__all__ = ["ModerationQueries"]


class ModerationQueries:
    db: Database

    async def get_user(self, user_id: int) -> User | None:
        """The user with internal number `user_id` (what admins and the review queue show)."""
        async with self.db.conn.execute("SELECT * FROM users WHERE id = ?", (user_id,)) as cur:
            row = await cur.fetchone()
        return User(**dict(row)) if row else None

    # bans and quotas -----------------------------------------------------------------------

    async def set_ban(self, user_id: int, reason: str, until: str | None) -> None:
        """Ban `user_id` for `reason` until the ISO time `until`, or until lifted (None)."""
        await self.db.conn.execute(
            "UPDATE users SET banned_until = ?, ban_reason = ? WHERE id = ?",
            (until, reason, user_id),
        )

    async def lift_ban(self, user_id: int) -> bool:
        """Lift a ban or suspension; False when the user was not banned."""
        cur = await self.db.conn.execute(
            "UPDATE users SET banned_until = NULL, ban_reason = NULL"
            " WHERE id = ? AND ban_reason IS NOT NULL",
            (user_id,),
        )
        return cur.rowcount > 0

    async def set_quotas(
        self, user_id: int, images_per_day: int | None, trainings_per_week: int | None
    ) -> None:
        """The user's own quotas; None leaves that one as it is."""
        if images_per_day is not None:
            await self.db.conn.execute(
                "UPDATE users SET images_per_day = ? WHERE id = ?", (images_per_day, user_id)
            )
        if trainings_per_week is not None:
            await self.db.conn.execute(
                "UPDATE users SET trainings_per_week = ? WHERE id = ?",
                (trainings_per_week, user_id),
            )

    async def productive_jobs_since(self, user_id: int, kind: str, since: str) -> list[JobRecord]:
        """The user's jobs of `kind` created at or after `since` that made (or may still
        make) something: cancelled and failed ones are left out. Oldest first."""
        async with self.db.conn.execute(
            "SELECT * FROM jobs WHERE user_id = ? AND kind = ? AND created_at >= ?"
            " AND status NOT IN ('cancelled', 'failed') ORDER BY id",
            (user_id, kind, since),
        ) as cur:
            return [JobRecord(**dict(row)) for row in await cur.fetchall()]

    # strikes -------------------------------------------------------------------------------

    async def add_strike(self, user_id: int, category: str, at: str) -> None:
        await self.db.conn.execute(
            "INSERT INTO strikes (user_id, category, at) VALUES (?, ?, ?)",
            (user_id, category, at),
        )

    async def strike_count(self, user_id: int, since: str | None = None) -> int:
        """The user's strikes, all of them or those at or after `since` (an ISO time)."""
        async with self.db.conn.execute(
            "SELECT count(*) FROM strikes WHERE user_id = ? AND at >= ?",
            (user_id, since or ""),
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def has_open_review(self, user_id: int, kind: str) -> bool:
        """Whether an open review item of `kind` about the user is left."""
        async with self.db.conn.execute(
            "SELECT 1 FROM review_items WHERE user_id = ? AND kind = ? AND status = 'open' LIMIT 1",
            (user_id, kind),
        ) as cur:
            return await cur.fetchone() is not None

    # the admins' blocklist edits -----------------------------------------------------------

    async def blocklist_terms(self) -> list[BlocklistTerm]:
        """Every edit, in the order they were first made."""
        async with self.db.conn.execute(
            "SELECT term, category, removed FROM blocklist_terms ORDER BY id"
        ) as cur:
            return [
                BlocklistTerm(str(r["term"]), str(r["category"]), bool(r["removed"]))
                for r in await cur.fetchall()
            ]

    async def set_blocklist_term(
        self, term: str, category: str, *, removed: bool, by: str, at: str
    ) -> None:
        """Add `term` to `category` (or, `removed`, take it out); the last edit wins."""
        await self.db.conn.execute(
            "INSERT INTO blocklist_terms (term, category, removed, added_by, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (term, category)"
            " DO UPDATE SET removed = excluded.removed, added_by = excluded.added_by",
            (term, category, int(removed), by, at),
        )

    # stats ---------------------------------------------------------------------------------

    async def service_stats(self) -> ServiceStats:
        """Queue, throughput and failures, for the admins' `stats`.

        Times are compared as julian days: the stored ISO form ("...T18:00:00+00:00") and
        SQLite's datetime() ("... 18:00:00") do not compare as text.
        """
        averages = {}
        async with self.db.conn.execute(
            "SELECT kind, avg((julianday(finished_at) - julianday(started_at)) * 86400)"
            " FROM jobs WHERE status = 'succeeded' AND started_at IS NOT NULL"
            " AND julianday(finished_at) >= julianday('now', '-1 day') GROUP BY kind"
        ) as cur:
            for row in await cur.fetchall():
                averages[str(row[0])] = round(float(row[1]), 1)
        one = self._count
        return ServiceStats(
            queued=await one("SELECT count(*) FROM jobs WHERE status = 'queued'"),
            running=await one("SELECT count(*) FROM jobs WHERE status = 'running'"),
            finished_last_hour=await one(
                "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'failed')"
                " AND julianday(finished_at) >= julianday('now', '-1 hour')"
            ),
            failed_last_day=await one(
                "SELECT count(*) FROM jobs WHERE status = 'failed'"
                " AND julianday(finished_at) >= julianday('now', '-1 day')"
            ),
            average_seconds=averages,
            users=await one("SELECT count(*) FROM users"),
            open_reviews=await one("SELECT count(*) FROM review_items WHERE status = 'open'"),
        )

    async def _count(self, sql: str) -> int:
        async with self.db.conn.execute(sql) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0
