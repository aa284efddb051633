"""Files into Discord's bot: selfies fetched only when their announced size fits (the
pictures sent are made to fit by the core: bot.core.provenance)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import discord

from bot.core import Booth, Upload, Verdict

__all__ = ["fetch_uploads"]

_log = logging.getLogger(__name__)


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
