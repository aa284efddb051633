"""Following a job on Discord: one message edited in place while the job waits and runs,
then the result delivered where the user can still be reached.

The interaction's own message shows the progress (with the queue position while the job
waits, and the latest preview), through the core's follower and pacer: `_edit` is the
only Discord part of it. An interaction token lives 15 minutes; work that outlives it is
delivered by a regular message in the channel, or by DM.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp
import discord

from bot.core import Identity, JobOutcome
from bot.core.captions import samples_caption
from bot.core.following import Progress, follow_job
from bot.core.pacing import EditFailed, LiveText, RetryLater, Unreachable
from bot.discord.answers import Answer
from bot.discord.buttons import progress_view, results_view
from bot.discord.context import DEFAULT_UPLOAD_LIMIT, DiscordContext
from bot.discord.texts import TOO_BIG, clip, progress_text, safe

__all__ = ["JobWatch", "Place"]

_log = logging.getLogger(__name__)

PLATFORM = "discord"
# How often a waiting job's queue position is looked at again.
POSITION_REFRESH = 5.0
# Seconds to wait after a 429 that discord.py gave up on without saying for how long.
RETRY_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class Place:
    """Where a job's answers go: its owner, the channel it was asked in, the upload limit."""

    owner_id: int
    channel_id: int | None
    size_limit: int = DEFAULT_UPLOAD_LIMIT

    @property
    def who(self) -> Identity:
        return Identity(PLATFORM, str(self.owner_id))


@dataclass(frozen=True, slots=True)
class Frame:
    """What the progress message shows: its text, its latest preview (`previews` counts
    them: a new one is a new frame) and, while the job runs, the Cancel button."""

    text: str
    previews: int = 0
    preview: bytes | None = field(default=None, compare=False, repr=False)
    final: bool = False  # the last words: no button, and a preview only if one is kept


class JobWatch:
    def __init__(
        self,
        context: DiscordContext,
        job_id: int,
        kind: str,
        place: Place,
        answer: Answer | None,
    ) -> None:
        self.context = context
        self.job_id = job_id
        self.kind = kind
        self.place = place
        # None after a restart: the old interaction token is gone with the old process.
        self.answer = answer
        self._live: LiveText[Frame] | None = None
        self._uploaded = 0  # the previews the message has had attached
        self._latest = Frame("")  # the latest progress shown, for its preview

    async def run(self) -> None:
        chats = self.context.chats
        if self.answer is not None:
            await chats.track(
                PLATFORM,
                str(self.place.channel_id or 0),
                str(self.answer.message_id or 0),
                self.job_id,
            )
            # Keyed by the interaction: its message is what is edited.
            self._live = self.context.pacer.live(
                ("discord", self.answer.interaction.id),
                self._edit,
                name=f"discord-progress-{self.job_id}",
            )
        try:
            final = await self._follow()
            await self._finish(final)
        finally:
            if self._live is not None:
                await self._live.close()
        # Only now: a stop before this point leaves the row, and a restart finishes the job.
        await chats.answered(PLATFORM, self.job_id)

    # while the job waits and runs --------------------------------------------------------

    async def _follow(self) -> JobOutcome:
        live = self._live

        def show(progress: Progress) -> None:
            self._latest = Frame(progress_text(progress), progress.previews, progress.preview)
            if live is not None:
                live.show(self._latest)

        try:
            return await follow_job(
                self.context.booth,
                self.place.who,
                self.job_id,
                self.kind,
                show,
                poll=POSITION_REFRESH,
            )
        except Exception:
            _log.exception("job %d: its updates stopped", self.job_id)
            return JobOutcome(self.job_id, self.kind, "failed", "an internal error")

    async def _edit(self, frame: Frame) -> None:
        """One edit of the progress message, Discord's errors translated for the pacer."""
        assert self.answer is not None  # a live message exists only with an answer
        # None keeps the attachments; the last words drop them unless a preview is kept.
        files: list[discord.File] | None = [] if frame.final and frame.preview is None else None
        if frame.preview is not None and frame.previews != self._uploaded:
            fitted = await asyncio.to_thread(
                self.context.booth.provenance.fit, frame.preview, self.place.size_limit
            )
            if fitted is not None:
                files = [discord.File(io.BytesIO(fitted.data), "preview.png")]
        view = None if frame.final else progress_view(self.job_id)
        try:
            shown = await self.answer.show(frame.text, files=files, view=view)
        except discord.HTTPException as exc:
            if exc.status == 429:  # discord.py waited out the ones it could
                raise RetryLater(_retry_after(exc)) from exc
            if exc.status >= 500:
                raise EditFailed(f"HTTP {exc.status}") from exc
            if frame.final:
                raise Unreachable(f"HTTP {exc.status}") from exc
            # Progress is a courtesy: a refused edit never stops the job's delivery.
            _log.warning("job %d: a progress edit was refused (%s)", self.job_id, exc.status)
            return
        except (aiohttp.ClientError, OSError) as exc:
            raise EditFailed(str(exc)) from exc
        if not shown:
            raise Unreachable("the interaction token is over")
        if files:
            self._uploaded = frame.previews

    async def _edit_final(self, text: str, *, keep_preview: bool = False) -> bool:
        """The progress message's last words (pacing kept); False once it is unreachable.
        `keep_preview` leaves the latest preview on it, sent now if the pacer skipped it."""
        if self._live is None or self.answer is None or not self.answer.fresh:
            return False
        latest = self._latest if keep_preview else Frame("")
        return await self._live.settle(Frame(text, latest.previews, latest.preview, final=True))

    # the end -----------------------------------------------------------------------------

    async def _finish(self, final: JobOutcome) -> None:
        what = "training" if self.kind == "train" else "picture job"
        if final.state == "succeeded" and self.kind == "imagine":
            await self._deliver_pictures(final)
        elif final.state == "succeeded":
            # A training's last sample is what its model makes: it stays on the message.
            text = f"Your model version {final.version} is ready: try `/imagine`."
            if final.likeness:
                text += f"\n{final.likeness}"
            if final.pictures:  # first: the ready message is the job's last word
                await self._send_samples(final)
            await self._tell(text, keep_preview=True)
        elif final.state == "failed":
            reason = safe(final.message or "no reason given")
            await self._tell(f"Sorry, your {what} (job {self.job_id}) failed: {reason}")
        else:
            # A user who cancelled, or erased their data, needs no message elsewhere.
            await self._edit_final(f"Your {what} (job {self.job_id}) was cancelled.")

    async def _send_samples(self, final: JobOutcome) -> None:
        """A training's validation samples, privately (they show the user's model)."""
        caption = samples_caption(self.job_id)

        def files() -> list[discord.File]:
            return [
                discord.File(io.BytesIO(png), f"sample-{n}.png")
                for n, png in enumerate(final.pictures, start=1)
            ]

        if self.answer is not None and await self.answer.send(caption, files=files()):
            return
        await self._direct(caption, files, None)

    async def _tell(self, text: str, *, keep_preview: bool = False) -> None:
        if not await self._edit_final(text, keep_preview=keep_preview):
            await self._direct(text, lambda: [], None)

    async def _deliver_pictures(self, final: JobOutcome) -> None:
        images = final.pictures
        if not images:
            await self._tell(
                f"All {final.withheld} picture(s) of job {self.job_id} were withheld by the "
                "safety filter. Try another prompt."
            )
            return
        shrink = self.context.booth.provenance.fit
        fitted = await asyncio.to_thread(
            lambda: [shrink(png, self.place.size_limit) for png in images]
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
        view = results_view(self.job_id, self.place.owner_id, len(images), final.actions)
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
        client = self.context.client
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
        client = self.context.client
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


def _retry_after(exc: discord.HTTPException) -> float:
    """A 429's wait, from its Retry-After header."""
    try:
        return float(exc.response.headers.get("Retry-After", RETRY_AFTER))
    except (TypeError, ValueError):
        return RETRY_AFTER
