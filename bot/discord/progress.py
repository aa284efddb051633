"""Following a job on Discord: one message edited in place while the job waits and runs,
then the result delivered where the user can still be reached.

The interaction's own message shows the progress (throttled to the configured interval,
with the queue position while the job waits). An interaction token lives 15 minutes;
work that outlives it is delivered by a regular message in the channel, or by DM.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot.core import FINAL_STATES, BoothError, Identity, JobOutcome, JobUpdate
from bot.discord.answers import Answer
from bot.discord.buttons import progress_view, results_view
from bot.discord.files import fit_png
from bot.discord.texts import TOO_BIG, clip, progress_text, safe

if TYPE_CHECKING:
    from bot.discord.frontend import DiscordFrontEnd

__all__ = ["DEFAULT_UPLOAD_LIMIT", "JobWatch", "Place"]

_log = logging.getLogger(__name__)

PLATFORM = "discord"
# How often a waiting job's queue position is looked at again.
POSITION_REFRESH = 5.0
# Discord's upload limit where no interaction says otherwise (a server without boosts).
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Place:
    """Where a job's answers go: its owner, the channel it was asked in, the upload limit."""

    owner_id: int
    channel_id: int | None
    size_limit: int = DEFAULT_UPLOAD_LIMIT

    @property
    def who(self) -> Identity:
        return Identity(PLATFORM, str(self.owner_id))


class JobWatch:
    def __init__(
        self,
        front: DiscordFrontEnd,
        job_id: int,
        kind: str,
        place: Place,
        answer: Answer | None,
        *,
        position: int | None = None,
    ) -> None:
        self.front = front
        self.job_id = job_id
        self.kind = kind
        self.place = place
        # None after a restart: the old interaction token is gone with the old process.
        self.answer = answer
        self.position = position
        self._last_edit = -math.inf

    async def run(self) -> None:
        chats = self.front.chats
        if self.answer is not None:
            await chats.track(
                PLATFORM,
                str(self.place.channel_id or 0),
                str(self.answer.message_id or 0),
                self.job_id,
            )
        final = await self._follow()
        await self._finish(final)
        # Only now: a stop before this point leaves the row, and a restart finishes the job.
        await chats.answered(PLATFORM, self.job_id)

    # while the job waits and runs --------------------------------------------------------

    async def _follow(self) -> JobOutcome:
        updates: asyncio.Queue[JobUpdate] = asyncio.Queue()
        pump = asyncio.create_task(self._pump(updates), name=f"discord-updates-{self.job_id}")
        interval = self.front.config.discord.edit_interval
        current = JobUpdate(self.job_id, "queued")
        total = 0
        preview: bytes | None = None
        previews = shown_previews = 0
        shown: str | None = None
        next_look = time.monotonic() + POSITION_REFRESH
        try:
            while True:
                text = progress_text(
                    self.kind, dataclasses.replace(current, total=total), self.position
                )
                pending = text != shown or previews != shown_previews
                now = time.monotonic()
                if pending and now >= self._last_edit + interval:
                    new_preview = preview if previews != shown_previews else None
                    await self._edit(text, new_preview)
                    shown, shown_previews = text, previews
                    continue
                waits = [self._last_edit + interval - now] if pending else []
                if current.state == "queued":
                    waits.append(next_look - now)
                try:
                    update = await asyncio.wait_for(
                        updates.get(), max(0.0, min(waits)) if waits else None
                    )
                except TimeoutError:
                    if current.state == "queued" and time.monotonic() >= next_look:
                        self.position = await self.front.booth.queue_position(self.job_id)
                        next_look = time.monotonic() + POSITION_REFRESH
                    continue
                if update.state in FINAL_STATES:
                    return update.outcome or JobOutcome(
                        self.job_id, self.kind, update.state, update.message
                    )
                total = update.total or total
                if update.state == "sample":
                    preview = update.preview
                    previews += preview is not None
                    if current.state == "queued":
                        current = dataclasses.replace(update, state="running")
                    continue
                current = update
                if update.state != "paused":
                    self.position = None
        finally:
            pump.cancel()

    async def _pump(self, queue: asyncio.Queue[JobUpdate]) -> None:
        try:
            async for update in self.front.booth.updates(self.place.who, self.job_id):
                queue.put_nowait(update)
        except BoothError:
            queue.put_nowait(JobUpdate(self.job_id, "erased"))  # its rows went with its user
        except Exception:
            _log.exception("job %d: its updates stopped", self.job_id)
            queue.put_nowait(JobUpdate(self.job_id, "failed", message="an internal error"))

    async def _edit(self, text: str, preview: bytes | None) -> None:
        if self.answer is None:
            return
        files = None
        if preview is not None:
            fitted = await asyncio.to_thread(fit_png, preview, self.place.size_limit)
            if fitted is not None:
                files = [discord.File(io.BytesIO(fitted.data), "preview.png")]
        try:
            await self.answer.show(text, files=files, view=progress_view(self.job_id))
        except discord.HTTPException as exc:
            # Progress is a courtesy: a refused edit never stops the job's delivery.
            _log.warning("job %d: a progress edit was refused (%s)", self.job_id, exc.status)
        finally:
            # The interval counts from the edit's end: discord.py may have waited out a 429.
            self._last_edit = time.monotonic()

    async def _edit_final(self, text: str) -> bool:
        """The progress message's last words (throttle kept); False once it is unreachable."""
        if self.answer is None or not self.answer.fresh:
            return False
        wait = self._last_edit + self.front.config.discord.edit_interval - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            return await self.answer.show(text, files=[], view=None)
        except discord.HTTPException as exc:
            _log.warning("job %d: the last edit was refused (%s)", self.job_id, exc.status)
            return False
        finally:
            self._last_edit = time.monotonic()

    # the end -----------------------------------------------------------------------------

    async def _finish(self, final: JobOutcome) -> None:
        what = "training" if self.kind == "train" else "picture job"
        if final.state == "succeeded" and self.kind == "imagine":
            await self._deliver_pictures(final)
        elif final.state == "succeeded":
            await self._tell(f"Your model version {final.version} is ready: try `/imagine`.")
        elif final.state == "failed":
            reason = safe(final.message or "no reason given")
            await self._tell(f"Sorry, your {what} (job {self.job_id}) failed: {reason}")
        else:
            # A user who cancelled, or erased their data, needs no message elsewhere.
            await self._edit_final(f"Your {what} (job {self.job_id}) was cancelled.")

    async def _tell(self, text: str) -> None:
        if not await self._edit_final(text):
            await self._direct(text, lambda: [], None)

    async def _deliver_pictures(self, final: JobOutcome) -> None:
        images = final.pictures
        if not images:
            await self._tell(
                f"All {final.withheld} picture(s) of job {self.job_id} were withheld by the "
                "safety filter. Try another prompt."
            )
            return
        fitted = await asyncio.to_thread(
            lambda: [fit_png(png, self.place.size_limit) for png in images]
        )
        lines = [safe(final.caption)]
        kept: list[tuple[int, bytes]] = []
        for n, (png, fit) in enumerate(zip(images, fitted, strict=True), start=1):
            if fit is None:
                lines.append(f"Picture {n} is " + _too_big(len(png), self.place.size_limit) + ".")
            else:
                kept.append((n, fit.data))
                if fit.scale < 1:
                    lines.append(f"Picture {n} was made smaller to fit here: Send as file.")

        def files() -> list[discord.File]:
            return [
                discord.File(io.BytesIO(data), f"selfiebooth-{self.job_id}-{n}.png")
                for n, data in kept
            ]

        content = clip("\n".join(lines))
        view = results_view(self.job_id, self.place.owner_id, len(images))
        if self.answer is not None and self.answer.fresh:
            sent = await self.answer.send(content, files=files(), view=view, ephemeral=False)
            if sent is not None:
                await self._edit_final(f"Done: your pictures of job {self.job_id} are below.")
                return
        if await self._in_channel(content, files, view):
            await self._edit_final(f"Done: your pictures of job {self.job_id} are in the channel.")
            return
        if await self._direct(content, files, view):
            await self._edit_final(f"Done: I sent your pictures of job {self.job_id} by DM.")

    async def _in_channel(
        self,
        content: str,
        files: Callable[[], Sequence[discord.File]],
        view: discord.ui.View | None,
    ) -> bool:
        client = self.front.client
        if client is None or self.place.channel_id is None:
            return False
        channel = client.get_partial_messageable(self.place.channel_id)
        try:
            if view is None:
                await channel.send(content, files=list(files()))
            else:
                await channel.send(content, files=list(files()), view=view)
        except discord.HTTPException as exc:
            _log.info("job %d: the channel refused the result (%s)", self.job_id, exc.status)
            return False
        return True

    async def _direct(
        self,
        content: str,
        files: Callable[[], Sequence[discord.File]],
        view: discord.ui.View | None,
    ) -> bool:
        client = self.front.client
        if client is None:
            return False
        try:
            dm = await client.create_dm(discord.Object(self.place.owner_id))
            if view is None:
                await dm.send(content, files=list(files()))
            else:
                await dm.send(content, files=list(files()), view=view)
        except discord.HTTPException as exc:
            _log.warning("job %d: its owner cannot be reached by DM (%s)", self.job_id, exc.status)
            return False
        return True


def _too_big(size: int, limit: int) -> str:
    return TOO_BIG.format(size=size / 1048576, limit=limit / 1048576)
