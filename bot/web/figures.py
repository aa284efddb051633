"""The console's figures: the database's rows of the last day (hourly) or week (daily)
counted into buckets and drawn as SVG (bot.web.charts)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.web.charts import bars, lines
from storage.figures import FigureRows

__all__ = ["WINDOWS", "Window", "charts", "window"]


@dataclass(frozen=True, slots=True)
class Window:
    name: str  # "day" or "week"
    bucket: timedelta
    buckets: int
    label: str  # strftime of a bucket's start


WINDOWS = {
    "day": Window("day", timedelta(hours=1), 24, "%H:00"),
    "week": Window("week", timedelta(days=1), 7, "%a %d"),
}


def window(name: str, now: datetime | None = None) -> tuple[Window, datetime]:
    """The window called `name` (a day when unknown) and the start of its first bucket."""
    chosen = WINDOWS.get(name, WINDOWS["day"])
    now = now or datetime.now(UTC)
    if chosen.name == "day":
        end = now.replace(minute=0, second=0, microsecond=0)
    else:
        end = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return chosen, end - chosen.bucket * (chosen.buckets - 1)


def charts(rows: FigureRows, chosen: Window, start: datetime) -> dict[str, str]:
    """Title -> SVG (and legend) of each figure."""
    labels = [(start + chosen.bucket * i).strftime(chosen.label) for i in range(chosen.buckets)]

    def bucket(at: str) -> int | None:
        index = int((datetime.fromisoformat(at) - start) / chosen.bucket)
        return index if 0 <= index < chosen.buckets else None

    per_kind: dict[str, list[float]] = defaultdict(lambda: [0.0] * chosen.buckets)
    waits: list[list[float]] = [[] for _ in range(chosen.buckets)]
    runs: list[list[float]] = [[] for _ in range(chosen.buckets)]
    withheld = [0.0] * chosen.buckets
    for job in rows.jobs:
        i = bucket(job.created_at)
        if i is None:
            continue
        per_kind[job.kind][i] += 1
        withheld[i] += job.withheld
        if job.started_at:
            waits[i].append(_seconds(job.created_at, job.started_at))
            if job.finished_at:
                runs[i].append(_seconds(job.started_at, job.finished_at))
    restarts = [0.0] * chosen.buckets
    for at in rows.restarts:
        if (i := bucket(at)) is not None:
            restarts[i] += 1
    refusals = Counter(category for at, category in rows.refusals if bucket(at) is not None)
    per = "hour" if chosen.name == "day" else "day"
    return {
        f"Jobs per {per}, by kind": lines(
            labels, dict(sorted(per_kind.items())) or {"jobs": [0.0] * chosen.buckets}
        ),
        "Wait in the queue and run time (median, p95)": lines(
            labels,
            {
                "wait median": [_quantile(w, 0.5) for w in waits],
                "wait p95": [_quantile(w, 0.95) for w in waits],
                "run median": [_quantile(r, 0.5) for r in runs],
                "run p95": [_quantile(r, 0.95) for r in runs],
            },
            unit="s",
        ),
        "Refused prompts, by category": bars(dict(refusals)),
        f"Pictures withheld per {per}": lines(labels, {"withheld": withheld}),
        f"Engine restarts per {per}": lines(labels, {"restarts": restarts}),
    }


def _seconds(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _quantile(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank); 0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    if q == 0.5:
        return statistics.median(values)
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]
