"""Erasure: every row and file of a user, gone at once (/forget, a withdrawal, a purge);
and the pictures a review item is about, when an admin rejects it.

Only the fact that an erasure happened stays, in the audit log, with nothing that
points back to the person.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections import defaultdict

from bot.config import Config
from bot.core.dispatcher import Dispatcher
from bot.core.likeness import LikenessGuard
from bot.core.moderation import Moderation
from bot.core.types import Erasure
from storage import BlobStore, ports
from storage.records import ReviewItem, User

__all__ = ["Eraser"]

_log = logging.getLogger(__name__)


class Eraser:
    def __init__(
        self,
        config: Config,
        repo: ports.Repository,
        blobs: BlobStore,
        moderation: Moderation,
        likeness: LikenessGuard,
        dispatcher: Dispatcher | None,
        locks: defaultdict[int, asyncio.Lock],
    ) -> None:
        self.config = config
        self.repo = repo
        self.blobs = blobs
        self.moderation = moderation
        self.likeness = likeness
        self.dispatcher = dispatcher
        # The users' turns, shared with the rest of the core: an erasure waits for an upload.
        self._locks = locks

    async def erase(self, user: User, action: str) -> Erasure:
        """Delete every row and file of `user`; the audit log keeps only `action`."""
        async with self._locks[user.id]:
            if self.dispatcher is not None:
                await self.dispatcher.abandon_user(user.id)
            job_ids = [job.id for job in await self.repo.jobs(user.id)]
            keys = await self.repo.blob_keys_of(user.id)
            erasure = Erasure(
                photos=len(await self.repo.photos(user.id)),
                loras=len(await self.repo.loras(user.id)),
                jobs=len(job_ids),
            )
            await self.repo.delete_user(user.id)
            self.likeness.forget(user.id)  # their face leaves the in-memory index too
            for job_id in job_ids:
                shutil.rmtree(self.config.work_dir / f"job-{job_id}", ignore_errors=True)
            files = 0
            for key in keys:
                # Identical content sent by another user is stored once; keep it for them.
                if not await self.repo.blob_in_use(key):
                    await self.blobs.delete(key)
                    files += 1
            # No identifier of the user: the log keeps only that an erasure happened.
            await self.repo.audit(
                "user", action, {"platform": user.platform, "photos": erasure.photos}
            )
            await self.repo.checkpoint()
        self._locks.pop(user.id, None)
        self.moderation.buckets.forget(f"{user.platform}:{user.platform_user_id}")
        _log.info("an erasure removed %d photo(s) and %d file(s)", erasure.photos, files)
        return Erasure(erasure.photos, erasure.loras, erasure.jobs, files)

    async def withdraw_review_content(self, item: ReviewItem) -> int:
        """Remove what a review item is about: the job's pictures and any kept image."""
        keys = [item.blob] if item.blob else []
        if item.job_id is not None and item.kind in ("image", "report"):
            keys += await self.repo.delete_job_images(item.job_id)
        for key in keys:
            if not await self.repo.blob_in_use(key):
                await self.blobs.delete(key)
        return len(keys)
