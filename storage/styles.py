"""The style library's queries: the admins' style LoRAs, by name.

A part of `Repository` (which inherits these methods), kept in a module of its own like
storage.moderation; the core reaches them through `storage.ports.StyleStore`.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from storage.database import Database
from storage.records import StyleRecord

__all__ = ["StyleQueries"]


class StyleQueries:
    db: Database

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
        """The new style; None when a style of that name is already in the library."""
        added_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        try:
            await self.db.conn.execute(
                "INSERT INTO styles (name, blob, sha256, weight, trigger, family, added_by,"
                " added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, blob, sha256, weight, trigger, family, added_by, added_at),
            )
        except sqlite3.IntegrityError:
            return None
        return await self.style(name)

    async def style(self, name: str) -> StyleRecord | None:
        async with self.db.conn.execute("SELECT * FROM styles WHERE name = ?", (name,)) as cur:
            row = await cur.fetchone()
        return StyleRecord(**dict(row)) if row else None

    async def styles(self) -> list[StyleRecord]:
        """The whole library, by name."""
        async with self.db.conn.execute("SELECT * FROM styles ORDER BY name") as cur:
            return [StyleRecord(**dict(row)) for row in await cur.fetchall()]

    async def remove_style(self, name: str) -> StyleRecord | None:
        """The style removed; None when there was none of that name."""
        found = await self.style(name)
        if found is not None:
            await self.db.conn.execute("DELETE FROM styles WHERE id = ?", (found.id,))
        return found
