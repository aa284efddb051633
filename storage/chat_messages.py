"""Progress messages a chat front end still owes an answer for (table chat_messages).

A front end records the message that shows a job's progress when it posts it, and removes
the row once the job's final answer is delivered. After a restart, the rows left are the
jobs to re-attach to. Shared by the Telegram and Discord adapters; ids are kept as text.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.repository import utcnow

__all__ = ["ChatMessage", "ChatMessages"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    platform: str
    chat_id: str
    message_id: str
    job_id: int
    # The owner's id on the platform (from users), so the front end can act as them.
    platform_user_id: str
    kind: str  # the job's kind ("train", "imagine"): how its answer is shown


class ChatMessages:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def track(self, platform: str, chat_id: str, message_id: str, job_id: int) -> bool:
        """Remember the progress message of `job_id`; False if the job is gone (erased)."""
        cur = await self.db.conn.execute(
            "INSERT OR REPLACE INTO chat_messages"
            " (platform, chat_id, message_id, job_id, user_id, created_at)"
            " SELECT ?, ?, ?, id, user_id, ? FROM jobs WHERE id = ?",
            (platform, chat_id, message_id, utcnow(), job_id),
        )
        return cur.rowcount > 0

    async def answered(self, platform: str, job_id: int) -> None:
        await self.db.conn.execute(
            "DELETE FROM chat_messages WHERE platform = ? AND job_id = ?", (platform, job_id)
        )

    async def owed(self, platform: str) -> list[ChatMessage]:
        """Every message of `platform` whose job has not been answered yet, oldest first."""
        async with self.db.conn.execute(
            "SELECT m.platform, m.chat_id, m.message_id, m.job_id, u.platform_user_id, j.kind"
            " FROM chat_messages m JOIN users u ON u.id = m.user_id JOIN jobs j ON j.id = m.job_id"
            " WHERE m.platform = ? ORDER BY m.id",
            (platform,),
        ) as cur:
            rows = await cur.fetchall()
        return [
            ChatMessage(r[0], str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5])) for r in rows
        ]
