"""The admin web console's sign-in links and sessions (tables web_links, web_sessions).

Tokens and session ids arrive here already hashed (bot.core.signin); times are ISO 8601
UTC strings, which compare as text in time order.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database

__all__ = ["WebSession", "WebSessions"]


@dataclass(frozen=True, slots=True)
class WebSession:
    admin: str
    csrf: str
    last_seen: str


class WebSessions:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_link(self, token_hash: str, admin: str, now: str, expires_at: str) -> None:
        await self.db.conn.execute(
            "INSERT INTO web_links (token_hash, admin, created_at, expires_at) VALUES (?, ?, ?, ?)",
            (token_hash, admin, now, expires_at),
        )

    async def use_link(self, token_hash: str, now: str) -> str | None:
        """The admin of an unused, unexpired link, marked used in the same statement (a
        link opened twice at once signs in once); None for any other link."""
        async with self.db.conn.execute(
            "UPDATE web_links SET used_at = ?"
            " WHERE token_hash = ? AND used_at IS NULL AND expires_at > ? RETURNING admin",
            (now, token_hash, now),
        ) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def open(self, id_hash: str, admin: str, csrf: str, now: str) -> None:
        await self.db.conn.execute(
            "INSERT INTO web_sessions (id_hash, admin, csrf, created_at, last_seen)"
            " VALUES (?, ?, ?, ?, ?)",
            (id_hash, admin, csrf, now, now),
        )

    async def get(self, id_hash: str) -> WebSession | None:
        async with self.db.conn.execute(
            "SELECT admin, csrf, last_seen FROM web_sessions WHERE id_hash = ?", (id_hash,)
        ) as cur:
            row = await cur.fetchone()
        return WebSession(str(row[0]), str(row[1]), str(row[2])) if row else None

    async def touch(self, id_hash: str, now: str) -> None:
        await self.db.conn.execute(
            "UPDATE web_sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash)
        )

    async def close(self, id_hash: str) -> None:
        await self.db.conn.execute("DELETE FROM web_sessions WHERE id_hash = ?", (id_hash,))

    async def close_all(self, admin: str) -> int:
        cur = await self.db.conn.execute("DELETE FROM web_sessions WHERE admin = ?", (admin,))
        return cur.rowcount

    async def forget_before(self, now: str, idle_before: str) -> None:
        """Drop links past their expiry and sessions idle since before `idle_before`."""
        await self.db.conn.execute("DELETE FROM web_links WHERE expires_at <= ?", (now,))
        await self.db.conn.execute("DELETE FROM web_sessions WHERE last_seen < ?", (idle_before,))
