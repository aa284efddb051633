"""Moderation rules the core applies to every request: bans, strikes, quotas, rate limits.

The admin console (bot.core.admin) changes this state; Booth consults it before it
does anything for a user. Everything here is stored in the database except the command
rate buckets, which only need to live as long as the process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.config import ModerationConfig
from bot.core.types import RateLimited, Suspended
from engine.jobs import ImagineRequest, decode_request
from engine.safety import PromptFilter, PromptVerdict
from storage import Repository
from storage.records import User
from storage.repository import utcnow

__all__ = ["Moderation", "TokenBuckets", "format_wait", "parse_duration"]

_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenBuckets:
    """One token bucket per key: `rate` tokens a second, at most `burst` saved up."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """Take a token: 0 when there was one, else the seconds until there will be."""
        now = self._clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


@dataclass(frozen=True, slots=True)
class Quotas:
    images_per_day: int
    trainings_per_week: int


class Moderation:
    def __init__(self, repo: Repository, config: ModerationConfig) -> None:
        self.repo = repo
        self.config = config
        self.buckets = TokenBuckets(config.commands_per_minute / 60, config.command_burst)
        self.prompt_filter = PromptFilter()

    # command rate ------------------------------------------------------------------------

    def take_command(self, key: str) -> None:
        wait = self.buckets.take(key)
        if wait > 0:
            raise RateLimited(
                f"You are sending commands too fast: try again in {format_wait(wait)}.", wait
            )

    # bans and suspensions ----------------------------------------------------------------

    @staticmethod
    def ban_in_force(user: User) -> bool:
        if user.ban_reason is None:
            return False
        return user.banned_until is None or user.banned_until > utcnow()

    def check_not_banned(self, user: User) -> None:
        if not self.ban_in_force(user):
            return
        until = (
            f" until {user.banned_until[:16].replace('T', ' ')} UTC"
            if user.banned_until
            else " until an admin reviews it"
        )
        raise Suspended(
            f"Your account is suspended{until} ({user.ban_reason}). "
            "You can still see your data with /mydata and erase it with /forget."
        )

    async def ban(self, user_id: int, reason: str, duration: timedelta | None) -> str | None:
        until = (datetime.now(UTC) + duration).isoformat(timespec="seconds") if duration else None
        await self.repo.db.conn.execute(
            "UPDATE users SET banned_until = ?, ban_reason = ? WHERE id = ?",
            (until, reason, user_id),
        )
        return until

    async def unban(self, user_id: int) -> bool:
        cur = await self.repo.db.conn.execute(
            "UPDATE users SET banned_until = NULL, ban_reason = NULL"
            " WHERE id = ? AND ban_reason IS NOT NULL",
            (user_id,),
        )
        return cur.rowcount > 0

    # strikes -----------------------------------------------------------------------------

    async def strike(self, user: User, verdict: PromptVerdict, prompt: str, negative: str) -> bool:
        """Record a refused prompt for review; True when it suspended the user."""
        conn = self.repo.db.conn
        await conn.execute(
            "INSERT INTO strikes (user_id, category, at) VALUES (?, ?, ?)",
            (user.id, verdict.category, utcnow()),
        )
        await self.repo.add_review_item(
            "prompt",
            user.id,
            {
                "prompt": prompt,
                "negative": negative,
                "category": verdict.category,
                "field": verdict.field,
            },
        )
        since = (datetime.now(UTC) - timedelta(hours=self.config.strike_window_hours)).isoformat(
            timespec="milliseconds"
        )
        async with conn.execute(
            "SELECT count(*) FROM strikes WHERE user_id = ? AND at >= ?", (user.id, since)
        ) as cur:
            row = await cur.fetchone()
        strikes = int(row[0]) if row else 0
        if strikes < self.config.strikes_to_suspend or self.ban_in_force(user):
            return False
        reason = (
            f"automatic: {strikes} refused prompts within "
            f"{self.config.strike_window_hours:g} hours, pending review"
        )
        await self.ban(user.id, reason, None)
        await self.repo.audit("system", "user.suspended", {"user": user.id, "reason": reason})
        return True

    async def strike_count(self, user_id: int) -> int:
        async with self.repo.db.conn.execute(
            "SELECT count(*) FROM strikes WHERE user_id = ?", (user_id,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    # quotas ------------------------------------------------------------------------------

    def quotas(self, user: User) -> Quotas:
        return Quotas(
            images_per_day=(
                self.config.images_per_day if user.images_per_day is None else user.images_per_day
            ),
            trainings_per_week=(
                self.config.trainings_per_week
                if user.trainings_per_week is None
                else user.trainings_per_week
            ),
        )

    async def set_quotas(
        self, user_id: int, images_per_day: int | None, trainings_per_week: int | None
    ) -> None:
        conn = self.repo.db.conn
        if images_per_day is not None:
            await conn.execute(
                "UPDATE users SET images_per_day = ? WHERE id = ?", (images_per_day, user_id)
            )
        if trainings_per_week is not None:
            await conn.execute(
                "UPDATE users SET trainings_per_week = ? WHERE id = ?",
                (trainings_per_week, user_id),
            )

    async def check_images_quota(self, user: User, count: int) -> None:
        limit = self.quotas(user).images_per_day
        used, oldest = await self._usage(user.id, "imagine", timedelta(days=1))
        if used + count <= limit:
            return
        wait = _until_window_frees(oldest, timedelta(days=1))
        left = max(0, limit - used)
        raise RateLimited(
            f"Your quota is {limit} images a day and {left} are left today: "
            f"try again in {format_wait(wait)}, or ask for fewer.",
            wait,
        )

    async def check_trainings_quota(self, user: User) -> None:
        limit = self.quotas(user).trainings_per_week
        used, oldest = await self._usage(user.id, "train", timedelta(days=7))
        if used < limit:
            return
        wait = _until_window_frees(oldest, timedelta(days=7))
        raise RateLimited(
            f"Your quota is {limit} training(s) a week: try again in {format_wait(wait)}.", wait
        )

    async def _usage(self, user_id: int, kind: str, window: timedelta) -> tuple[int, str | None]:
        """What the user's jobs of `kind` in the window used, and when the oldest was made.

        Cancelled and failed jobs made nothing, so they do not count.
        """
        since = (datetime.now(UTC) - window).isoformat(timespec="milliseconds")
        async with self.repo.db.conn.execute(
            "SELECT params, created_at FROM jobs WHERE user_id = ? AND kind = ?"
            " AND created_at >= ? AND status NOT IN ('cancelled', 'failed') ORDER BY id",
            (user_id, kind, since),
        ) as cur:
            rows = list(await cur.fetchall())
        if kind == "imagine":
            used = 0
            for row in rows:
                request = decode_request(kind, row["params"])
                used += request.count if isinstance(request, ImagineRequest) else 1
        else:
            used = len(rows)
        return used, (rows[0]["created_at"] if rows else None)

    # blocklist ---------------------------------------------------------------------------

    async def reload_filter(self) -> PromptFilter:
        """The prompt filter with the admins' additions and removals applied."""
        extra: dict[str, list[str]] = {}
        removed: list[str] = []
        async with self.repo.db.conn.execute(
            "SELECT term, category, removed FROM blocklist_terms ORDER BY id"
        ) as cur:
            for row in await cur.fetchall():
                if row["removed"]:
                    removed.append(row["term"])
                else:
                    extra.setdefault(row["category"], []).append(row["term"])
        self.prompt_filter = PromptFilter(extra, removed)
        return self.prompt_filter

    async def set_term(self, term: str, category: str, *, removed: bool, by: str) -> None:
        await self.repo.db.conn.execute(
            "INSERT INTO blocklist_terms (term, category, removed, added_by, created_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (term, category)"
            " DO UPDATE SET removed = excluded.removed, added_by = excluded.added_by",
            (term, category, int(removed), by, utcnow()),
        )
        await self.reload_filter()

    async def terms(self) -> list[tuple[str, str, bool]]:
        async with self.repo.db.conn.execute(
            "SELECT term, category, removed FROM blocklist_terms ORDER BY category, term"
        ) as cur:
            return [(r["term"], r["category"], bool(r["removed"])) for r in await cur.fetchall()]


def _until_window_frees(oldest: str | None, window: timedelta) -> float:
    if oldest is None:
        return window.total_seconds()
    frees = datetime.fromisoformat(oldest) + window
    return max(1.0, (frees - datetime.now(UTC)).total_seconds())


def format_wait(seconds: float) -> str:
    """ "3 s", "2 min", "4 h 10 min", "2 d 3 h": short and rounded up."""
    seconds = math.ceil(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def parse_duration(text: str) -> timedelta:
    """ "30m", "12h", "7d", "2w" -> a timedelta; ValueError with the accepted forms."""
    text = text.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:]) if text else None
    number = text[:-1]
    if unit is None or not number.isdigit() or int(number) == 0:
        raise ValueError(f"duration {text!r}: use a number and m, h, d or w, e.g. 12h or 7d")
    return timedelta(seconds=int(number) * unit)
