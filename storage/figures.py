"""The rows the web console's figures are drawn from: jobs, refused prompts (strikes)
and engine restarts since a moment (bot.web.figures aggregates and draws them)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database

__all__ = ["FigureRows", "JobTimes", "figure_rows"]


@dataclass(frozen=True, slots=True)
class JobTimes:
    kind: str
    created_at: str
    started_at: str | None
    finished_at: str | None
    withheld: int  # pictures the safety filters kept back (generations)


@dataclass(frozen=True, slots=True)
class FigureRows:
    jobs: list[JobTimes]
    refusals: list[tuple[str, str]]  # (at, category)
    restarts: list[str]  # at


async def figure_rows(db: Database, since: str) -> FigureRows:
    """Jobs queued, prompts refused and engine restarts at or after `since`."""
    async with db.conn.execute(
        "SELECT kind, created_at, started_at, finished_at,"
        " COALESCE(json_extract(result, '$.withheld'), 0)"
        " FROM jobs WHERE created_at >= ? ORDER BY created_at",
        (since,),
    ) as cur:
        jobs = [JobTimes(str(r[0]), str(r[1]), r[2], r[3], int(r[4])) for r in await cur.fetchall()]
    async with db.conn.execute(
        "SELECT at, category FROM strikes WHERE at >= ? ORDER BY at", (since,)
    ) as cur:
        refusals = [(str(r[0]), str(r[1])) for r in await cur.fetchall()]
    async with db.conn.execute(
        "SELECT at FROM engine_restarts WHERE at >= ? ORDER BY at", (since,)
    ) as cur:
        restarts = [str(r[0]) for r in await cur.fetchall()]
    return FigureRows(jobs, refusals, restarts)
