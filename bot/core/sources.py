"""Pictures users attach to a job (image-to-image): screened before anything keeps them,
kept only while their job needs them.

A source goes through what a selfie goes through: the intake's safe decode (size, pixel
and shape limits from the header, bombs, disguised and damaged files refused with the
same reasons), which also drops every metadata chunk; then the image filter. Then the
likeness rule: every face in it must be the requester's own, that is within the identity
threshold of the mean of their accepted photos. The bot never edits a picture of someone
else; a picture with no face at all (a landscape, a pet) is allowed.

The kept picture is a fresh JPEG in the blob store, named only by the job's request.
`release` deletes it once no queued or running job reads it (the dispatcher calls it when
a job ends); an erasure finds it through the user's jobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import numpy as np
from PIL import Image

from bot.config import Config
from bot.core.types import BoothError
from engine.intake import FaceAnalyzer, PhotoRefused, decode_image, encode_jpeg
from engine.jobs import ImagineRequest, JobRequest, nearest_aspect
from engine.safety import ImageFilter
from engine.safety.likeness import face_descriptors
from storage import BlobStore, ports
from storage.records import User

__all__ = ["FILTER_REFUSED", "NOT_YOU", "Sources", "release_source"]

_log = logging.getLogger(__name__)

FILTER_REFUSED = (
    "Your picture was refused by the content filter, and nothing was queued: "
    "attach an ordinary picture."
)
NOT_YOU = (
    "Your picture shows a face that is not yours, and nothing was queued: the bot only "
    "edits pictures of you (or with no face at all), never a picture of someone else."
)


class Sources:
    def __init__(
        self,
        config: Config,
        repo: ports.Repository,
        blobs: BlobStore,
        analyzer: Callable[[], FaceAnalyzer],
        image_filter: ImageFilter | None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.blobs = blobs
        self._analyzer = analyzer
        self.image_filter = image_filter

    async def attach(
        self, user: User, request: ImagineRequest, data: bytes, *, keep_aspect: bool
    ) -> ImagineRequest:
        """`request` with `data` screened and kept as its source; BoothError if refused.

        The aspect ratio becomes the picture's nearest offered one, unless the user chose
        one (`keep_aspect`).
        """
        image = await self.screen(user, data)
        key = await self.blobs.put(await asyncio.to_thread(encode_jpeg, image))
        aspect = request.aspect_ratio if keep_aspect else nearest_aspect(image.width, image.height)
        return dataclasses.replace(request, source=key, aspect_ratio=aspect)

    async def screen(self, user: User, data: bytes) -> Image.Image:
        """The picture decoded, without metadata, once it passed every check."""
        try:
            image = await asyncio.to_thread(decode_image, data, self.config.intake)
        except PhotoRefused as refusal:
            raise BoothError(
                f"Your picture was refused ({refusal.reason}), and nothing was queued."
            ) from None
        if self.image_filter is not None:
            verdict = await asyncio.to_thread(self.image_filter.check, image)
            if not verdict.allowed:
                await self._review(user, image, list(verdict.blocked_by), verdict.scores())
                raise BoothError(FILTER_REFUSED)
        if not await self._only_the_requester(user, image):
            _log.info("user %d: an attached picture shows someone else; refused", user.id)
            raise BoothError(NOT_YOU)
        return image

    async def release(self, request: JobRequest | None) -> None:
        await release_source(self.repo, self.blobs, request)

    async def _only_the_requester(self, user: User, image: Image.Image) -> bool:
        settings = self.config.intake
        descriptors = await asyncio.to_thread(
            face_descriptors, image, self._analyzer(), settings.detection_max_side
        )
        if not len(descriptors):
            return True
        own = [
            np.frombuffer(p.descriptor, dtype="<f4")
            for p in await self.repo.photos(user.id)
            if p.verdict == "accepted"
        ]
        if not own:
            return False
        mean = np.mean(np.stack(own), axis=0)
        distances = np.linalg.norm(descriptors - mean, axis=1)
        return bool(np.all(distances <= settings.identity_threshold))

    async def _review(
        self, user: User, image: Image.Image, classes: list[str], scores: dict[str, float]
    ) -> None:
        blob = None
        if self.config.moderation.keep_blocked_images:
            blob = await self.blobs.put(await asyncio.to_thread(encode_jpeg, image))
        detail = {"source": "attachment", "classes": classes, "scores": scores}
        try:
            await self.repo.add_review_item("image", user.id, detail, blob=blob)
        except BaseException:
            if blob is not None and not await self.repo.blob_in_use(blob):
                await self.blobs.delete(blob)
            raise


async def release_source(
    repo: ports.Repository, blobs: BlobStore, request: JobRequest | None
) -> None:
    """Delete a finished job's attached pictures, unless a row or a waiting job still uses
    them (an upscale's source is a result: its row keeps it)."""
    if not isinstance(request, ImagineRequest):
        return
    for key in request.attachments:
        if not await repo.blob_in_use(key):
            await blobs.delete(key)
