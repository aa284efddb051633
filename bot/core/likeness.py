"""The likeness guard: pictures showing another user's face never reach the requester.

dlib looks at every generated picture (results, generation previews and training
samples) before the requester sees it. A face within the identity threshold of another
user's photos (engine.safety.likeness) withholds the picture exactly as the image filter
does: it counts as withheld, and a review item tells the admins which user it looks like.
The requester only hears that a picture was withheld by the safety filter, never whose
face it showed. The requester's own face passes, and so do faces of nobody known.

`check_picture` is the same check for pictures a user attaches to a job (img2img, edit,
edges: job kinds to come); those paths call it before they queue anything.

The index of users' faces lives in memory and follows the database: photos added since
the last look are read incrementally, and when the count of photos shows that some are
gone (an erasure, in this process or another), users are reconciled against the rows.
`forget` drops an erased user at once, and for good (ids are never reused).
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from engine.intake import FaceAnalyzer, IntakeSettings, PhotoRefused, decode_image
from engine.protocol import BlockedImage, Generated, OutputImage
from engine.safety.likeness import FaceIndex, Likeness, face_descriptors
from storage import ports

__all__ = ["ATTACHMENT_REFUSED", "LIKENESS_REASON", "LikenessGuard"]

_log = logging.getLogger(__name__)

# What the admins read on the review item. The requester hears only "withheld".
LIKENESS_REASON = "likeness of another user"
# What a user hears when an attached picture shows another user. It names nobody, and
# reads like any other safety refusal.
ATTACHMENT_REFUSED = (
    "this picture was refused by the safety filter: attach pictures of yourself only"
)


class LikenessGuard:
    def __init__(
        self,
        repo: ports.Repository,
        settings: IntakeSettings,
        analyzer: FaceAnalyzer | None = None,
        *,
        keep_blocked: bool = False,
    ) -> None:
        self.repo = repo
        self.settings = settings
        self.keep_blocked = keep_blocked
        self.index = FaceIndex(settings.identity_threshold)
        self._analyzer = analyzer
        self._newest = 0  # the newest photo id read
        self._rows: dict[int, int] = {}  # user id -> photo rows read (any verdict)
        self._loaded = False
        self._erased: set[int] = set()
        self._lock = asyncio.Lock()

    @property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            self._analyzer = FaceAnalyzer()
        return self._analyzer

    # keeping the index true to the database ----------------------------------------------

    async def refresh(self) -> None:
        """Read photos added since the last look; reconcile when some were deleted."""
        async with self._lock:
            if self.repo.busy_writing():
                # An upload is being stored on this connection: its rows are not accepted
                # yet (they may be rolled back), and reading them would count them.
                return
            count, newest = await self.repo.photo_stamp()
            if newest > self._newest:
                for row in await self.repo.photo_descriptors(after_id=self._newest):
                    self._newest = max(self._newest, row[0])
                    self._read(*row)
            if count != sum(self._rows.values()):
                await self._reconcile()
            self._loaded = True

    def forget(self, user_id: int) -> None:
        """An erased user leaves the index now, and is never read into it again."""
        self._erased.add(user_id)
        self._drop(user_id)

    async def _reconcile(self) -> None:
        """Some photos are gone: re-read the users whose counts changed."""
        counts = await self.repo.photo_counts()
        for user_id in self._rows.keys() - counts.keys():
            self._drop(user_id)
        for user_id, n in counts.items():
            if self._rows.get(user_id, 0) == n:
                continue
            self._drop(user_id)
            for row in await self.repo.photo_descriptors(user_id=user_id):
                self._read(*row)

    def _read(self, photo_id: int, user_id: int, accepted: bool, blob: bytes) -> None:
        """One photo row: counted (to notice deletions), and indexed if accepted."""
        if user_id in self._erased:
            return
        self._rows[user_id] = self._rows.get(user_id, 0) + 1
        if not accepted:
            return
        try:
            self.index.add(user_id, np.frombuffer(blob, dtype="<f4"))
        except ValueError:
            # A bug's row must not stop everybody's pictures; it is skipped, loudly.
            _log.warning("photo %d has a malformed face descriptor; left out", photo_id)

    def _drop(self, user_id: int) -> None:
        self._rows.pop(user_id, None)
        self.index.remove(user_id)

    # the checks ---------------------------------------------------------------------------

    async def likeness(self, user_id: int, image: Image.Image) -> Likeness | None:
        """The other user whose face `image` shows, or None. Uses the index as it is."""
        if len(self.index) <= (user_id in self.index):
            return None  # nobody else to look like: dlib need not run
        # In a worker thread, dlib's models included: loading them takes about a second.
        descriptors = await asyncio.to_thread(
            lambda: face_descriptors(image, self.analyzer, self.settings.detection_max_side)
        )
        for descriptor in descriptors:
            found = self.index.match(descriptor, user_id)
            if found is not None:
                return found
        return None

    async def check_picture(self, user_id: int, data: bytes) -> str | None:
        """A refusal for a picture `user_id` attaches to a job (img2img, edit, edges), or None.

        Decoded as safely as a selfie is (size limits before any pixel); a file that is
        not a picture is refused with the decoder's reason.
        """
        try:
            image = await asyncio.to_thread(decode_image, data, self.settings)
        except PhotoRefused as refusal:
            return refusal.reason
        await self.refresh()
        if await self.likeness(user_id, image) is not None:
            _log.info("user %d: an attached picture shows another user; refused", user_id)
            return ATTACHMENT_REFUSED
        return None

    async def allows_preview(self, user_id: int, png: bytes) -> bool:
        """Whether a preview or training sample (as the engine wrote it) may be shown."""
        if not self._loaded:
            await self.refresh()
        image = await asyncio.to_thread(_decoded, png)
        return await self.likeness(user_id, image) is None

    async def screen_result(self, user_id: int, result: Generated) -> Generated:
        """A generation's result with pictures of other users moved from "images" to
        "blocked", each with the review detail the admins will see."""
        await self.refresh()
        images: list[OutputImage] = []
        blocked: list[BlockedImage] = list(result["blocked"])
        for image in result["images"]:
            picture = await asyncio.to_thread(_read, Path(image["path"]))
            found = await self.likeness(user_id, picture)
            if found is None:
                images.append(image)
                continue
            entry: BlockedImage = {
                "seed": image["seed"],
                "classes": {},
                "review": {
                    "reason": LIKENESS_REASON,
                    "other_user": found.user_id,
                    "distance": found.distance,
                },
            }
            if self.keep_blocked:
                entry["path"] = image["path"]
            blocked.append(entry)
        withheld = len(result["images"]) - len(images)
        if withheld:
            _log.warning("user %d: %d picture(s) withheld: %s", user_id, withheld, LIKENESS_REASON)
        return {**result, "images": images, "blocked": blocked}


def _read(path: Path) -> Image.Image:
    return _decoded(path.read_bytes())


def _decoded(png: bytes) -> Image.Image:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB")
