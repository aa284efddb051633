"""Selfie uploads: each file judged alone (decoding, one face, quality, the image filter),
then as part of the user's set (duplicates, identity), and the accepted ones stored.

Refused files leave nothing behind; uploads the image filter refused go to review.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from bot.config import Config
from bot.core.types import Upload, Verdict
from engine.intake import (
    FaceAnalyzer,
    KnownPhoto,
    PhotoAnalysis,
    PhotoRefused,
    analyze_photo,
    encode_jpeg,
    encode_png,
    judge_set,
)
from engine.models.families import Family
from engine.safety import ImageFilter, ImageVerdict
from storage import BlobStore, NewPhoto, ports
from storage.records import PhotoRecord, User

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["BAD_NAME", "FILTER_REFUSED", "Analyzed", "Uploads"]

# Told (done, total) as each uploaded file has been analysed.
Analyzed = Callable[[int, int], None]

_log = logging.getLogger(__name__)

BAD_NAME = "file name not allowed (it holds a path or control characters): rename the file"
FILTER_REFUSED = "this photo was refused by the content filter: send an ordinary selfie"


class _FilterRefused(PhotoRefused):
    """An upload the image filter blocked: refused, and put in front of the admins."""

    def __init__(self, verdict: ImageVerdict, image: Image.Image) -> None:
        super().__init__(FILTER_REFUSED)
        self.verdict = verdict
        self.image = image


class Uploads:
    def __init__(
        self,
        config: Config,
        repo: ports.Repository,
        blobs: BlobStore,
        family: Family,
        analyzer: Callable[[], FaceAnalyzer],
        image_filter: ImageFilter | None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.blobs = blobs
        self.family = family
        self._analyzer = analyzer
        self.image_filter = image_filter

    @property
    def analyzer(self) -> FaceAnalyzer:
        return self._analyzer()

    async def judge_and_keep(
        self, user: User, files: Sequence[Upload], progress: Analyzed | None = None
    ) -> list[Verdict]:
        """A verdict for each file, in order; the accepted ones are stored.

        The caller holds the user's turn: each upload judges against the photos kept.
        """
        reasons: list[str | None] = [_name_problem(f.name) for f in files]
        todo = [i for i, reason in enumerate(reasons) if reason is None]
        results = await asyncio.to_thread(
            self._analyze_all, [files[i].data for i in todo], progress
        )
        analyses: list[PhotoAnalysis | None] = [None] * len(files)
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, PhotoRefused):
                reasons[i] = result.reason
            else:
                analyses[i] = result
        await self._flag_uploads(user, [r for r in results if isinstance(r, _FilterRefused)])

        known = [_known(p) for p in await self.repo.photos(user.id)]
        candidates = [
            KnownPhoto(a.sha256, a.dhash, a.descriptor) if a is not None else None for a in analyses
        ]
        for i, reason in enumerate(judge_set(candidates, known, self.config.intake)):
            if reason is not None:
                reasons[i], analyses[i] = reason, None

        accepted = [a for a in analyses if a is not None]
        if accepted:
            await self._store(user, accepted)
        return [
            Verdict(f.name, accepted=reason is None, reason=reason)
            for f, reason in zip(files, reasons, strict=True)
        ]

    def oversized(self, name: str, size: int, platform_limit: int | None = None) -> Verdict | None:
        """The refusal of a file by the size a platform announces, before downloading it.

        `platform_limit` is the platform's own limit for that place (bytes), if it has one.
        """
        limit = self.config.intake.max_file_bytes
        if platform_limit:
            limit = min(limit, platform_limit)
        if size <= limit:
            return None
        return Verdict(
            name,
            accepted=False,
            reason=f"file too large ({size / 1048576:.1f} MB): "
            f"send a photo of at most {limit / 1048576:.3g} MB",
        )

    def _analyze_all(
        self, blobs: list[bytes], progress: Analyzed | None
    ) -> list[PhotoAnalysis | PhotoRefused]:
        out: list[PhotoAnalysis | PhotoRefused] = []
        for data in blobs:
            try:
                out.append(
                    analyze_photo(
                        data,
                        self.config.intake,
                        self.family.resolution,
                        self.analyzer,
                        screen=self._screen_upload,
                    )
                )
            except PhotoRefused as refusal:
                out.append(refusal)
            if progress is not None:
                progress(len(out), len(blobs))
        return out

    def _screen_upload(self, image: Image.Image) -> None:
        if self.image_filter is not None:
            verdict = self.image_filter.check(image)
            if not verdict.allowed:
                raise _FilterRefused(verdict, image)

    async def _flag_uploads(self, user: User, refused: list[_FilterRefused]) -> None:
        """A review item for each upload the image filter refused; the photo only if kept."""
        for refusal in refused:
            blob = None
            if self.config.moderation.keep_blocked_images:
                blob = await self.blobs.put(await asyncio.to_thread(encode_jpeg, refusal.image))
            detail = {
                "source": "upload",
                "classes": list(refusal.verdict.blocked_by),
                "scores": refusal.verdict.scores(),
            }
            try:
                await self.repo.add_review_item("image", user.id, detail, blob=blob)
            except BaseException:
                if blob is not None and not await self.repo.blob_in_use(blob):
                    await self.blobs.delete(blob)
                raise
        if refused:
            _log.warning("user %d: %d upload(s) refused by the image filter", user.id, len(refused))

    async def _store(self, user: User, accepted: list[PhotoAnalysis]) -> None:
        encoded = await asyncio.to_thread(
            lambda: [(encode_jpeg(a.image), encode_png(a.crop)) for a in accepted]
        )
        written: list[str] = []
        try:
            rows = []
            for analysis, (image, crop) in zip(accepted, encoded, strict=True):
                image_key = await self.blobs.put(image)
                written.append(image_key)
                crop_key = await self.blobs.put(crop)
                written.append(crop_key)
                rows.append(
                    NewPhoto(
                        sha256=analysis.sha256,
                        image_blob=image_key,
                        crop_blob=crop_key,
                        descriptor=analysis.descriptor.astype("<f4").tobytes(),
                        dhash=f"{analysis.dhash:016x}",
                        face_box=analysis.face_box,
                        sharpness=analysis.sharpness,
                    )
                )
            await self.repo.add_photos(user.id, rows)
        except BaseException:
            for key in written:
                if not await self.repo.blob_in_use(key):
                    await self.blobs.delete(key)
            raise
        _log.info("user %d: %d photo(s) accepted", user.id, len(accepted))


def _name_problem(name: str) -> str | None:
    parts = name.replace("\\", "/").split("/")
    if (
        len(parts) > 1
        or name in {".", ".."}
        or any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in name)
    ):
        return BAD_NAME
    return None


def _known(photo: PhotoRecord) -> KnownPhoto:
    return KnownPhoto(
        sha256=photo.sha256,
        dhash=int(photo.dhash, 16),
        descriptor=np.frombuffer(photo.descriptor, dtype="<f4"),
    )
