"""Files in and out of Discord: selfies fetched only when their announced size fits, and
pictures made to fit the upload limit of the place they are sent to."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import discord
from PIL import Image, PngImagePlugin

from bot.core import Booth, Upload, Verdict

__all__ = ["FittedImage", "fetch_uploads", "fit_png"]

_log = logging.getLogger(__name__)

# Pictures are never shrunk below this side: smaller is no longer worth sending.
_MIN_SIDE = 32
_SHRINK = 0.8


@dataclass(frozen=True, slots=True)
class Fetched:
    """What became of each attachment: the files to judge, and refusals made before download."""

    uploads: list[Upload]
    # Position in the user's list -> the refusal, for files never downloaded.
    refused: dict[int, Verdict]

    def merge(self, verdicts: Sequence[Verdict]) -> list[Verdict]:
        """The core's verdicts and the early refusals, back in the order the user sent them."""
        judged = iter(verdicts)
        total = len(self.uploads) + len(self.refused)
        return [self.refused[i] if i in self.refused else next(judged) for i in range(total)]


async def fetch_uploads(
    booth: Booth, attachments: Sequence[discord.Attachment], platform_limit: int
) -> Fetched:
    """Download the attachments whose announced size is allowed, all at once."""
    refused: dict[int, Verdict] = {}
    wanted: list[tuple[int, discord.Attachment]] = []
    for i, attachment in enumerate(attachments):
        verdict = booth.oversized(attachment.filename, attachment.size, platform_limit)
        if verdict is not None:
            refused[i] = verdict
        else:
            wanted.append((i, attachment))
    datas = await asyncio.gather(*(_read(a) for _, a in wanted))
    uploads = []
    for (i, attachment), data in zip(wanted, datas, strict=True):
        if data is None:
            refused[i] = Verdict(attachment.filename, False, "the download failed: send it again")
        else:
            uploads.append(Upload(attachment.filename, data))
    return Fetched(uploads, refused)


async def _read(attachment: discord.Attachment) -> bytes | None:
    try:
        return await attachment.read()
    except (discord.HTTPException, discord.NotFound):
        _log.warning("attachment %s could not be downloaded", attachment.id)
        return None


@dataclass(frozen=True, slots=True)
class FittedImage:
    data: bytes
    # Pixels kept on each side, as a fraction of the original (1.0: untouched).
    scale: float


def fit_png(png: bytes, limit: int) -> FittedImage | None:
    """The PNG as it is if it fits in `limit` bytes, else smaller PNGs until one fits.

    Shrunk copies keep the PNG text chunks (the provenance statement); None if even the
    smallest copy does not fit.
    """
    if len(png) <= limit:
        return FittedImage(png, 1.0)
    with Image.open(io.BytesIO(png)) as img:
        img.load()
        info = PngImagePlugin.PngInfo()
        for key, value in getattr(img, "text", {}).items():
            info.add_text(key, value)
        width, height = img.size
        scale = 1.0
        while min(width, height) * scale * _SHRINK >= _MIN_SIDE:
            scale *= _SHRINK
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            out = io.BytesIO()
            img.resize(size, Image.Resampling.LANCZOS).save(
                out, format="PNG", optimize=True, pnginfo=info
            )
            if out.tell() <= limit:
                return FittedImage(out.getvalue(), scale)
    return None
