"""Queries over the database, one method per question the core asks.

Everything a user owns hangs off `users` with ON DELETE CASCADE, so erasing a user is a
single DELETE; the blob keys they referenced are collected first so their files can go too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from engine.jobs import ATTACHMENTS
from storage.database import Database
from storage.figures import FigureRows, figure_rows
from storage.moderation import ModerationQueries
from storage.records import (
    AuditEntry,
    ConsentRecord,
    ImageRecord,
    JobRecord,
    LoraRecord,
    PhotoRecord,
    ReviewItem,
    User,
)
from storage.styles import StyleQueries

__all__ = ["BLOB_COLUMNS", "NewPhoto", "Repository", "utcnow"]

T = TypeVar("T")

# Every column that holds a blob key: a blob may be deleted once none of these names it.
BLOB_COLUMNS: tuple[tuple[str, str], ...] = (
    ("photos", "image_blob"),
    ("photos", "crop_blob"),
    ("loras", "blob"),
    ("images", "blob"),
    ("review_items", "blob"),
)
# Blob columns of rows no user owns (the style library): in use, but no user's to erase.
SHARED_BLOB_COLUMNS: tuple[tuple[str, str], ...] = (("styles", "blob"),)


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class NewPhoto:
    sha256: str
    image_blob: str
    crop_blob: str
    descriptor: bytes
    dhash: str
    face_box: tuple[int, int, int, int]
    sharpness: float


class Repository(ModerationQueries, StyleQueries):
    """The SQLite repository (moderation's and the style library's queries are inherited
    from storage.moderation and storage.styles)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def busy_writing(self) -> bool:
        """True while a write of several rows (an upload's photos) is under way here: its
        rows may still be rolled back, so a reader should not count them yet."""
        return self.db.conn.in_transaction

    async def checkpoint(self) -> None:
        """Leave no copy of deleted rows behind in the write-ahead log (after an erasure)."""
        await self.db.checkpoint()

    # users ---------------------------------------------------------------------------

    async def find_user(self, platform: str, platform_user_id: str) -> User | None:
        return await self._one(
            User,
            "SELECT * FROM users WHERE platform = ? AND platform_user_id = ?",
            (platform, platform_user_id),
        )

    async def find_user_by_trigger(self, trigger_word: str) -> User | None:
        return await self._one(User, "SELECT * FROM users WHERE trigger_word = ?", (trigger_word,))

    async def get_or_create_user(self, platform: str, platform_user_id: str) -> User:
        await self.db.conn.execute(
            "INSERT OR IGNORE INTO users (platform, platform_user_id, created_at) VALUES (?, ?, ?)",
            (platform, platform_user_id, utcnow()),
        )
        user = await self.find_user(platform, platform_user_id)
        assert user is not None  # just inserted or already there
        return user

    async def delete_user(self, user_id: int) -> None:
        await self.db.conn.execute("DELETE FROM users WHERE id = ?", (user_id,))
        # Another user's withheld picture may name this user as the face it showed.
        await self.db.conn.execute(
            "UPDATE review_items SET detail = json_remove(detail, '$.other_user')"
            " WHERE json_extract(detail, '$.other_user') = ?",
            (user_id,),
        )

    # consent -------------------------------------------------------------------------

    async def active_consent(self, user_id: int) -> ConsentRecord | None:
        return await self._one(
            ConsentRecord,
            "SELECT * FROM consents WHERE user_id = ? AND withdrawn_at IS NULL "
            "ORDER BY id DESC LIMIT 1",
            (user_id,),
        )

    async def add_consent(
        self, user_id: int, version: str, text_sha256: str, platform: str
    ) -> ConsentRecord:
        cur = await self.db.conn.execute(
            "INSERT INTO consents (user_id, version, text_sha256, platform, accepted_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (user_id, version, text_sha256, platform, utcnow()),
        )
        record = await self._one(
            ConsentRecord, "SELECT * FROM consents WHERE id = ?", (cur.lastrowid,)
        )
        assert record is not None
        return record

    # photos --------------------------------------------------------------------------

    async def photos(self, user_id: int) -> list[PhotoRecord]:
        return await self._all(
            PhotoRecord, "SELECT * FROM photos WHERE user_id = ? ORDER BY id", (user_id,)
        )

    async def add_photos(self, user_id: int, photos: Sequence[NewPhoto]) -> list[int]:
        conn = self.db.conn
        ids = []
        await conn.execute("BEGIN")
        try:
            for p in photos:
                cur = await conn.execute(
                    "INSERT INTO photos (user_id, sha256, image_blob, crop_blob, descriptor, dhash,"
                    " face_box, sharpness, verdict, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'accepted', ?)",
                    (
                        user_id,
                        p.sha256,
                        p.image_blob,
                        p.crop_blob,
                        p.descriptor,
                        p.dhash,
                        json.dumps(list(p.face_box)),
                        p.sharpness,
                        utcnow(),
                    ),
                )
                assert cur.lastrowid is not None
                ids.append(cur.lastrowid)
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        return ids

    async def photo_stamp(self) -> tuple[int, int]:
        """How many photo rows there are, and the newest one's id (0 when none).

        Ids only grow (AUTOINCREMENT), so a new id means photos were added, and a count
        below what was read since means some were deleted (an erasure). Two queries, as
        each alone is answered from a b-tree without reading rows (a millisecond at
        200k photos; together, a scan).
        """
        async with self.db.conn.execute("SELECT count(*) FROM photos") as cur:
            count = await cur.fetchone()
        async with self.db.conn.execute("SELECT coalesce(max(id), 0) FROM photos") as cur:
            newest = await cur.fetchone()
        return (int(count[0]) if count else 0, int(newest[0]) if newest else 0)

    async def photo_descriptors(
        self, *, after_id: int = 0, user_id: int | None = None
    ) -> list[tuple[int, int, bool, bytes]]:
        """(photo id, user id, accepted, descriptor) of photos newer than `after_id`."""
        sql = "SELECT id, user_id, verdict, descriptor FROM photos WHERE id > ?"
        params: list[Any] = [after_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        async with self.db.conn.execute(sql + " ORDER BY id", params) as cur:
            rows = await cur.fetchall()
        return [(int(r[0]), int(r[1]), r[2] == "accepted", bytes(r[3])) for r in rows]

    async def photo_counts(self) -> dict[int, int]:
        """User id -> how many photo rows they have (users without any are absent)."""
        async with self.db.conn.execute(
            "SELECT user_id, count(*) FROM photos GROUP BY user_id"
        ) as cur:
            rows = await cur.fetchall()
        return {int(r[0]): int(r[1]) for r in rows}

    # LoRAs and jobs --------------------------------------------------------------------

    async def loras(self, user_id: int) -> list[LoraRecord]:
        return await self._all(
            LoraRecord, "SELECT * FROM loras WHERE user_id = ? ORDER BY version", (user_id,)
        )

    async def active_lora(self, user_id: int) -> LoraRecord | None:
        return await self._one(
            LoraRecord,
            "SELECT * FROM loras WHERE user_id = ? AND active = 1 ORDER BY version DESC LIMIT 1",
            (user_id,),
        )

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
        """A new version, made the active one: each retrain adds, nothing is overwritten.

        With `job_id`, a second call for the same job returns the first call's version.
        """
        if job_id is not None:
            done = await self._one(LoraRecord, "SELECT * FROM loras WHERE job_id = ?", (job_id,))
            if done is not None:
                return done
        conn = self.db.conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            await conn.execute("UPDATE loras SET active = 0 WHERE user_id = ?", (user_id,))
            cur = await conn.execute(
                "INSERT INTO loras (user_id, version, base_model, family, trigger_word, blob,"
                " sha256, recipe, active, created_at, job_id, likeness, method)"
                " SELECT ?, coalesce(max(version), 0) + 1, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?"
                " FROM loras WHERE user_id = ?",
                (
                    user_id,
                    base_model,
                    family,
                    trigger_word,
                    blob,
                    sha256,
                    json.dumps(dict(recipe), sort_keys=True),
                    utcnow(),
                    job_id,
                    json.dumps(dict(likeness), sort_keys=True) if likeness is not None else None,
                    method,
                    user_id,
                ),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        lora = await self._one(LoraRecord, "SELECT * FROM loras WHERE id = ?", (cur.lastrowid,))
        assert lora is not None
        return lora

    async def set_active_lora(self, user_id: int, version: int) -> bool:
        """Make `version` the active one; False when the user has no such version."""
        conn = self.db.conn
        await conn.execute("BEGIN IMMEDIATE")
        try:
            cur = await conn.execute(
                "UPDATE loras SET active = (version = ?) WHERE user_id = ?"
                " AND EXISTS (SELECT 1 FROM loras WHERE user_id = ? AND version = ?)",
                (version, user_id, user_id, version),
            )
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
        return cur.rowcount > 0

    async def set_trigger_word(self, user_id: int, word: str) -> None:
        await self.db.conn.execute(
            "UPDATE users SET trigger_word = ? WHERE id = ?", (word, user_id)
        )

    async def add_image(
        self, job_id: int, user_id: int, *, blob: str, seed: int, width: int, height: int
    ) -> None:
        await self.db.conn.execute(
            "INSERT OR IGNORE INTO images (job_id, user_id, blob, seed, width, height, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (job_id, user_id, blob, seed, width, height, utcnow()),
        )

    async def delete_job_images(self, job_id: int) -> list[str]:
        """Delete a job's pictures; their blob keys, for the files to go too."""
        images = await self.images_of_job(job_id)
        await self.db.conn.execute("DELETE FROM images WHERE job_id = ?", (job_id,))
        return [i.blob for i in images]

    async def images_of_job(self, job_id: int) -> list[ImageRecord]:
        return await self._all(
            ImageRecord, "SELECT * FROM images WHERE job_id = ? ORDER BY id", (job_id,)
        )

    async def image_count(self, user_id: int) -> int:
        async with self.db.conn.execute(
            "SELECT count(*) FROM images WHERE user_id = ?", (user_id,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def jobs(self, user_id: int) -> list[JobRecord]:
        return await self._all(
            JobRecord, "SELECT * FROM jobs WHERE user_id = ? ORDER BY id", (user_id,)
        )

    # review queue --------------------------------------------------------------------

    async def add_review_item(
        self,
        kind: str,
        user_id: int,
        detail: Mapping[str, Any],
        *,
        job_id: int | None = None,
        blob: str | None = None,
        reporter_id: int | None = None,
    ) -> int:
        """Put something in front of the admins: a refused prompt, a blocked image, a report."""
        cur = await self.db.conn.execute(
            "INSERT INTO review_items (kind, user_id, reporter_id, job_id, blob, detail,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kind, user_id, reporter_id, job_id, blob, json.dumps(dict(detail)), utcnow()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def review_items(self, status: str = "open", limit: int = 50) -> list[ReviewItem]:
        return await self._all(
            ReviewItem,
            "SELECT * FROM review_items WHERE status = ? ORDER BY id LIMIT ?",
            (status, limit),
        )

    async def review_item(self, item_id: int) -> ReviewItem | None:
        return await self._one(ReviewItem, "SELECT * FROM review_items WHERE id = ?", (item_id,))

    async def resolve_review_item(self, item_id: int, status: str, by: str) -> bool:
        cur = await self.db.conn.execute(
            "UPDATE review_items SET status = ?, resolved_at = ?, resolved_by = ?"
            " WHERE id = ? AND status = 'open'",
            (status, utcnow(), by, item_id),
        )
        return cur.rowcount > 0

    # settings ------------------------------------------------------------------------

    async def setting(self, key: str) -> str | None:
        async with self.db.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def set_setting(self, key: str, value: str | None) -> None:
        """Set a service-wide setting; None removes it."""
        if value is None:
            await self.db.conn.execute("DELETE FROM settings WHERE key = ?", (key,))
        else:
            await self.db.conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # blobs ---------------------------------------------------------------------------

    async def blob_keys_of(self, user_id: int) -> set[str]:
        keys: set[str] = set()
        for table, column in BLOB_COLUMNS:
            async with self.db.conn.execute(
                f"SELECT {column} FROM {table} WHERE user_id = ?",  # noqa: S608 - constants
                (user_id,),
            ) as cur:
                keys.update(row[0] for row in await cur.fetchall() if row[0])
        keys.update(await self._likeness_pictures("l.user_id = ?", (user_id,)))
        # Pictures attached to picture jobs are named in the job's request only.
        for name in ATTACHMENTS:
            async with self.db.conn.execute(
                "SELECT json_extract(params, ?) FROM jobs WHERE user_id = ?",
                (f"$.{name}", user_id),
            ) as cur:
                keys.update(row[0] for row in await cur.fetchall() if row[0])
        return keys

    async def blob_in_use(self, key: str) -> bool:
        for table, column in BLOB_COLUMNS + SHARED_BLOB_COLUMNS:
            async with self.db.conn.execute(
                f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1",  # noqa: S608 - constants
                (key,),
            ) as cur:
                if await cur.fetchone() is not None:
                    return True
        if await self._likeness_pictures("p.value = ?", (key,)):
            return True
        # An attached picture is needed while a job that will read it is queued or running.
        for name in ATTACHMENTS:
            async with self.db.conn.execute(
                "SELECT 1 FROM jobs WHERE status IN ('queued', 'running')"
                " AND json_extract(params, ?) = ? LIMIT 1",
                (f"$.{name}", key),
            ) as cur:
                if await cur.fetchone() is not None:
                    return True
        return False

    async def _likeness_pictures(self, where: str, args: tuple[object, ...]) -> set[str]:
        """The validation pictures a version's likeness is based on (migration 0006)."""
        query = (
            "SELECT p.value FROM loras AS l, json_each(l.likeness, '$.pictures') AS p"  # noqa: S608 - constants
            f" WHERE l.likeness IS NOT NULL AND {where}"
        )
        async with self.db.conn.execute(query, args) as cur:
            return {row[0] for row in await cur.fetchall() if row[0]}

    # audit ---------------------------------------------------------------------------

    async def audit(self, actor: str, action: str, detail: Mapping[str, Any] | None = None) -> None:
        await self.db.conn.execute(
            "INSERT INTO audit_log (at, actor, action, detail) VALUES (?, ?, ?, ?)",
            (utcnow(), actor, action, json.dumps(dict(detail or {}), sort_keys=True)),
        )

    async def add_engine_restart(self, at: str) -> None:
        await self.db.conn.execute("INSERT INTO engine_restarts (at) VALUES (?)", (at,))

    async def figure_rows(self, since: str) -> FigureRows:
        return await figure_rows(self.db, since)

    async def audit_entries(
        self,
        limit: int = 100,
        *,
        before: int | None = None,
        actor: str = "",
        action: str = "",
        user: int | None = None,
    ) -> list[AuditEntry]:
        return await self._all(
            AuditEntry,
            "SELECT * FROM audit_log WHERE (? IS NULL OR id < ?) AND (? = '' OR actor = ?)"
            " AND (? = '' OR substr(action, 1, length(?)) = ?)"
            " AND (? IS NULL OR json_extract(detail, '$.user') = ?)"
            " ORDER BY id DESC LIMIT ?",
            (before, before, actor, actor, action, action, action, user, user, limit),
        )

    # helpers -------------------------------------------------------------------------

    async def _one(self, cls: type[T], sql: str, params: Sequence[Any]) -> T | None:
        async with self.db.conn.execute(sql, params) as cur:
            row = await cur.fetchone()
        return cls(**dict(row)) if row is not None else None

    async def _all(self, cls: type[T], sql: str, params: Sequence[Any]) -> list[T]:
        async with self.db.conn.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [cls(**dict(row)) for row in rows]
