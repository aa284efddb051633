"""The core of selfiebooth: consent, selfie upload, status and erasure.

Every front end (command line, Telegram, Discord) calls these methods and only
translates their results; no rule of the service lives in an adapter.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from bot.config import Config
from bot.core.consent import ConsentText, load_consent_text
from bot.core.types import (
    ConsentRequired,
    Erasure,
    Identity,
    Upload,
    UserStatus,
    Verdict,
)
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
from engine.models.families import resolve_family
from storage import BlobStore, NewPhoto, Repository
from storage.records import PhotoRecord, User

__all__ = ["Booth"]

_log = logging.getLogger(__name__)

BAD_NAME = "file name not allowed (it holds a path or control characters): rename the file"


class Booth:
    def __init__(
        self,
        config: Config,
        repo: Repository,
        blobs: BlobStore,
        analyzer: FaceAnalyzer | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.blobs = blobs
        self.consent_text: ConsentText = load_consent_text(config.consent)
        self.family = resolve_family(config.model.base, config.model.family)
        self._analyzer = analyzer
        # One operation at a time per user: uploads judge against the photos already kept.
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    @property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            self._analyzer = FaceAnalyzer()
        return self._analyzer

    # consent -------------------------------------------------------------------------

    async def accept_consent(self, who: Identity) -> None:
        user = await self.repo.get_or_create_user(who.platform, who.user_id)
        async with self._locks[user.id]:
            if await self._consent_is_current(user):
                return
            await self.repo.add_consent(
                user.id, self.consent_text.version, self.consent_text.sha256, who.platform
            )

    async def withdraw_consent(self, who: Identity) -> Erasure:
        """Withdrawal erases everything, as fast as consenting was."""
        return await self._erase(who, action="consent.withdrawn")

    async def forget(self, who: Identity) -> Erasure:
        return await self._erase(who, action="user.forgotten")

    # photos --------------------------------------------------------------------------

    async def upload(self, who: Identity, files: Sequence[Upload]) -> list[Verdict]:
        """A verdict for each file, in order. Refused files leave nothing behind."""
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None or not await self._consent_is_current(user):
            raise ConsentRequired(self._consent_prompt(user))
        async with self._locks[user.id]:
            return await self._upload(user, files)

    async def _upload(self, user: User, files: Sequence[Upload]) -> list[Verdict]:
        reasons: list[str | None] = [_name_problem(f.name) for f in files]
        todo = [i for i, reason in enumerate(reasons) if reason is None]
        results = await asyncio.to_thread(self._analyze_all, [files[i].data for i in todo])
        analyses: list[PhotoAnalysis | None] = [None] * len(files)
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, PhotoRefused):
                reasons[i] = result.reason
            else:
                analyses[i] = result

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

    def _analyze_all(self, blobs: list[bytes]) -> list[PhotoAnalysis | PhotoRefused]:
        out: list[PhotoAnalysis | PhotoRefused] = []
        for data in blobs:
            try:
                out.append(
                    analyze_photo(data, self.config.intake, self.family.resolution, self.analyzer)
                )
            except PhotoRefused as refusal:
                out.append(refusal)
        return out

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

    # status and erasure ----------------------------------------------------------------

    async def status(self, who: Identity) -> UserStatus:
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None:
            return UserStatus(None, False, 0, self.config.intake.max_photos, (), ())
        consent = await self.repo.active_consent(user.id)
        return UserStatus(
            consent=consent,
            consent_current=consent is not None and consent.version == self.consent_text.version,
            photos=len(await self.repo.photos(user.id)),
            max_photos=self.config.intake.max_photos,
            loras=tuple(await self.repo.loras(user.id)),
            jobs=tuple(await self.repo.jobs(user.id)),
        )

    async def _erase(self, who: Identity, action: str) -> Erasure:
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None:
            return Erasure()
        async with self._locks[user.id]:
            keys = await self.repo.blob_keys_of(user.id)
            erasure = Erasure(
                photos=len(await self.repo.photos(user.id)),
                loras=len(await self.repo.loras(user.id)),
                jobs=len(await self.repo.jobs(user.id)),
            )
            await self.repo.delete_user(user.id)
            files = 0
            for key in keys:
                # Identical content sent by another user is stored once; keep it for them.
                if not await self.repo.blob_in_use(key):
                    await self.blobs.delete(key)
                    files += 1
            # No identifier of the user: the log keeps only that an erasure happened.
            await self.repo.audit(
                "user", action, {"platform": who.platform, "photos": erasure.photos}
            )
            await self.repo.db.checkpoint()
        self._locks.pop(user.id, None)
        _log.info("an erasure removed %d photo(s) and %d file(s)", erasure.photos, files)
        return Erasure(erasure.photos, erasure.loras, erasure.jobs, files)

    # helpers -------------------------------------------------------------------------

    async def _consent_is_current(self, user: User) -> bool:
        consent = await self.repo.active_consent(user.id)
        return consent is not None and consent.version == self.consent_text.version

    def _consent_prompt(self, user: User | None) -> str:
        if user is not None:
            return "The consent text has changed: read it and accept it again before uploading."
        return "Please read and accept the consent text before sending photos."


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
