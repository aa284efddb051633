"""Pictures users attach to a job (image-to-image, `/edit`, edge control): screened
before anything keeps them, kept only while their job needs them.

A source goes through what a selfie goes through: the intake's safe decode (size, pixel
and shape limits from the header, bombs, disguised and damaged files refused with the
same reasons), which also drops every metadata chunk; then the image filter. Then the
likeness rule: every face in it must be the requester's own, that is within the identity
threshold of the mean of their accepted photos. The bot never edits a picture of someone
else; a picture with no face at all (a landscape, a pet) is allowed.

A mask for `/edit` is either made here from the faces found (bot.core.masks) or drawn
by the user; a drawn one is decoded as safely, and kept as black and white only.

The kept picture is a fresh JPEG in the blob store (a mask: a PNG), named only by the
job's request (engine.jobs.ATTACHMENTS). `release` deletes it once no queued or running
job reads it (the dispatcher calls it when a job ends); an erasure finds it through the
user's jobs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable

import numpy as np
from PIL import Image

from bot.config import Config
from bot.core.masks import drawn_mask, region_mask
from bot.core.types import BoothError
from engine.intake import FaceAnalyzer, PhotoRefused, decode_image, encode_jpeg
from engine.intake.decode import encode_png
from engine.intake.faces import Face
from engine.jobs import ImagineRequest, JobRequest, nearest_aspect
from engine.safety import ImageFilter
from engine.safety.likeness import found_faces
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
        self,
        user: User,
        request: ImagineRequest,
        data: bytes,
        *,
        keep_aspect: bool,
        as_edges: bool = False,
    ) -> ImagineRequest:
        """`request` with `data` screened and kept as its source (or, `as_edges`, as the
        picture whose edges it follows); BoothError if refused.

        The aspect ratio becomes the picture's nearest offered one, unless the user chose
        one (`keep_aspect`).
        """
        image, _ = await self.screen(user, data)
        key = await self.blobs.put(await asyncio.to_thread(encode_jpeg, image))
        aspect = request.aspect_ratio if keep_aspect else nearest_aspect(image.width, image.height)
        if as_edges:
            return dataclasses.replace(request, edges=key, aspect_ratio=aspect)
        return dataclasses.replace(request, source=key, aspect_ratio=aspect)

    async def attach_edit(
        self,
        user: User,
        request: ImagineRequest,
        data: bytes,
        *,
        region: str | None,
        mask: bytes | None,
        keep_aspect: bool,
    ) -> ImagineRequest:
        """`request` with `data` kept as the picture to edit and a mask of what to repaint:
        `region` (bot.core.masks.REGIONS) found from its faces, or the user's `mask`."""
        if (region is None) == (mask is None):
            raise BoothError(
                "Say what to repaint: background or face, or attach a mask (white where to "
                "repaint); one of them, not both."
            )
        image, faces = await self.screen(user, data)
        if mask is not None:
            drawn = await self._decode(mask, "mask")
            shape = await asyncio.to_thread(drawn_mask, drawn.resize(image.size))
        else:
            assert region is not None
            shape = region_mask(image.size, faces, region)
        source = await self.blobs.put(await asyncio.to_thread(encode_jpeg, image))
        try:
            key = await self.blobs.put(await asyncio.to_thread(encode_png, shape))
        except BaseException:
            await self.blobs.delete(source)
            raise
        aspect = request.aspect_ratio if keep_aspect else nearest_aspect(image.width, image.height)
        return dataclasses.replace(request, source=source, mask=key, aspect_ratio=aspect)

    async def screen(self, user: User, data: bytes) -> tuple[Image.Image, list[Face]]:
        """The picture decoded, without metadata, once it passed every check; with the
        faces in it (all of them the user's)."""
        image = await self._decode(data, "picture")
        if self.image_filter is not None:
            verdict = await asyncio.to_thread(self.image_filter.check, image)
            if not verdict.allowed:
                await self._review(user, image, list(verdict.blocked_by), verdict.scores())
                raise BoothError(FILTER_REFUSED)
        faces = await self._faces_of_the_requester(user, image)
        if faces is None:
            _log.info("user %d: an attached picture shows someone else; refused", user.id)
            raise BoothError(NOT_YOU)
        return image, faces

    async def _decode(self, data: bytes, what: str) -> Image.Image:
        try:
            return await asyncio.to_thread(decode_image, data, self.config.intake)
        except PhotoRefused as refusal:
            raise BoothError(
                f"Your {what} was refused ({refusal.reason}), and nothing was queued."
            ) from None

    async def release(self, request: JobRequest | None) -> None:
        await release_source(self.repo, self.blobs, request)

    async def _faces_of_the_requester(self, user: User, image: Image.Image) -> list[Face] | None:
        """The faces in `image` (boxes in its own pixels), or None when one of them is not
        the user's: further than the identity threshold from their accepted photos."""
        settings = self.config.intake
        faces, descriptors = await asyncio.to_thread(
            found_faces, image, self._analyzer(), settings.detection_max_side
        )
        if not faces:
            return []
        own = [
            np.frombuffer(p.descriptor, dtype="<f4")
            for p in await self.repo.photos(user.id)
            if p.verdict == "accepted"
        ]
        if not own:
            return None
        mean = np.mean(np.stack(own), axis=0)
        distances = np.linalg.norm(descriptors - mean, axis=1)
        return faces if bool(np.all(distances <= settings.identity_threshold)) else None

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
