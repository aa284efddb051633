"""The storage backends the contract suites run over (today SQLite only).

A new backend adds its name to BACKENDS and a branch in `open_backend`; the suites in
test_repository_contract.py and test_job_queue_contract.py then hold it to the contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from storage import Database, Repository, ports
from storage.jobs import JobQueue

BACKENDS = ["sqlite"]


@dataclass
class Backend:
    repo: ports.Repository
    queue: ports.JobQueue
    # A fresh queue over the same stored jobs: what a restarted process sees.
    reopen_queue: Callable[[], Awaitable[ports.JobQueue]]


@asynccontextmanager
async def open_backend(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    assert name == "sqlite", f"unknown backend {name!r}"
    async with Database(tmp_path / "contract.sqlite3") as db:

        async def reopen() -> ports.JobQueue:
            return JobQueue(db)

        yield Backend(Repository(db), JobQueue(db), reopen)
