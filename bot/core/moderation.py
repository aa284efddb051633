"""Moderation rules the core applies to every request: bans, strikes, quotas, rate limits.

The admin console (bot.core.admin) changes this state; Booth consults it before it
does anything for a user. Everything here is stored in the database except the command
rate buckets, which only need to live as long as the process.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import ModerationConfig
from bot.core.telemetry import REFUSALS
from bot.core.types import RateLimited, Suspended
from engine.jobs import ImagineRequest
from engine.safety import PromptFilter, PromptVerdict
from engine.safety.classifier import MODEL_PATH
from storage import ports
from storage.records import User
from storage.repository import utcnow

__all__ = ["Moderation", "TokenBuckets", "format_wait", "parse_duration"]

_log = logging.getLogger(__name__)

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
    def __init__(self, repo: ports.Repository, config: ModerationConfig) -> None:
        self.repo = repo
        self.config = config
        self.buckets = TokenBuckets(config.commands_per_minute / 60, config.command_burst)
        self.prompt_filter = PromptFilter(classifier=self._classifier())
        self._filter_loaded = False

    def _classifier(self) -> Path:
        """The deployment's classifier file, or the packaged one until `admin
        retrain-filter` first writes it."""
        path = self.config.classifier_path()
        if path.exists():
            return path
        _log.warning(
            "moderation.classifier_file %s does not exist yet: using the packaged one", path
        )
        return MODEL_PATH

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
        await self.repo.set_ban(user_id, reason, until)
        return until

    async def unban(self, user_id: int) -> bool:
        return await self.repo.lift_ban(user_id)

    # strikes -----------------------------------------------------------------------------

    async def strike(self, user: User, verdict: PromptVerdict, prompt: str, negative: str) -> bool:
        """Record a refused prompt for review; True when it suspended the user."""
        REFUSALS.labels(verdict.category or "unknown").inc()
        await self.repo.add_strike(user.id, verdict.category or "unknown", utcnow())
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
        strikes = await self.repo.strike_count(user.id, since)
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
        return await self.repo.strike_count(user_id)

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
        await self.repo.set_quotas(user_id, images_per_day, trainings_per_week)

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
        jobs = await self.repo.productive_jobs_since(user_id, kind, since)
        used = 0
        for job in jobs:
            request = job.request()
            used += request.count if isinstance(request, ImagineRequest) else 1
        return used, (jobs[0].created_at if jobs else None)

    # blocklist ---------------------------------------------------------------------------

    async def reload_filter(self) -> PromptFilter:
        """The prompt filter with the admins' additions and removals applied."""
        extra: dict[str, list[str]] = {}
        removed: list[str] = []
        for edit in await self.repo.blocklist_terms():
            if edit.removed:
                removed.append(edit.term)
            else:
                extra.setdefault(edit.category, []).append(edit.term)
        self.prompt_filter = PromptFilter(extra, removed, classifier=self._classifier())
        self._filter_loaded = True
        return self.prompt_filter

    async def current_filter(self) -> PromptFilter:
        """The prompt filter with the admins' edits, read from storage the first time."""
        if not self._filter_loaded:
            await self.reload_filter()
        return self.prompt_filter

    async def set_term(self, term: str, category: str, *, removed: bool, by: str) -> None:
        await self.repo.set_blocklist_term(term, category, removed=removed, by=by, at=utcnow())
        await self.reload_filter()

    async def terms(self) -> list[tuple[str, str, bool]]:
        """(term, category, removed) of every edit, by category and term."""
        edits = sorted(await self.repo.blocklist_terms(), key=lambda e: (e.category, e.term))
        return [(e.term, e.category, e.removed) for e in edits]


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
