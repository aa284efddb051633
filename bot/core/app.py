"""Start-up and shutdown of the core in one visible place."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.config import Config
from bot.core.booth import Booth
from engine.intake import FaceAnalyzer
from storage import Database, LocalBlobStore, Repository

__all__ = ["open_booth"]


@asynccontextmanager
async def open_booth(config: Config, analyzer: FaceAnalyzer | None = None) -> AsyncIterator[Booth]:
    """The database (migrated), the blob store and the core, closed in reverse order."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    async with Database(config.database_path) as db:
        yield Booth(config, Repository(db), LocalBlobStore(config.blob_dir), analyzer)
