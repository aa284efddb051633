"""Jobs in a Telegram chat: the progress message, re-attaching after a restart, the results.

Each job gets one message, edited in place as the core reports progress. The message is
recorded in `chat_messages` until the job's final answer is out, so a bot restarted while
a job waits or runs finds the message again and finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from typing import Any

from PIL import Image
from telegram import Bot, InputMediaDocument, InputMediaPhoto
from telegram.constants import ChatAction
from telegram.error import TelegramError

from bot.core import Booth, BoothError, Identity, JobOutcome, JobTicket, JobUpdate
from bot.core.captions import samples_caption
from bot.core.following import POSITION_POLL, Progress, follow_job
from bot.core.pacing import Pacer
from bot.core.tasks import TaskSet
from bot.telegram.keyboards import cancel_keyboard, results_keyboard
from bot.telegram.progress import LiveMessage, patiently
from bot.telegram.texts import final_text, progress_text, queued_text, results_hint
from storage.chat_messages import ChatMessage

# Telegram's limits on a photo (sendPhoto): its bytes, and its width plus height.
PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDES = 10_000

__all__ = ["PHOTO_MAX_BYTES", "PHOTO_MAX_SIDES", "PLATFORM", "JobDesk", "fits_as_photo"]

_log = logging.getLogger(__name__)

PLATFORM = "telegram"
SORRY_NOT_SENT = (
    "Sorry, I could not send the answer to job {job_id} just now. "
    "I will try again later; /status shows how it went."
)


def erased_text(job_id: int) -> str:
    return f"Job {job_id}: deleted with the rest of your data."


class JobDesk:
    def __init__(self, booth: Booth, bot: Bot, pacer: Pacer, tasks: TaskSet) -> None:
        self.booth = booth
        self.bot = bot
        self.pacer = pacer
        self.tasks = tasks
        self.store = booth.chats
        self.position_poll = POSITION_POLL
        # job id -> its progress message and the task following it
        self._following: dict[int, tuple[ChatMessage, asyncio.Task[Any]]] = {}

    # progress ------------------------------------------------------------------------

    async def post(self, who: Identity, chat_id: int, ticket: JobTicket) -> None:
        """Post a new job's progress message, and follow the job until it is answered."""
        text = queued_text(ticket.kind, ticket.job_id, ticket.position)
        keyboard = cancel_keyboard(ticket.job_id)
        message = await patiently(
            self.pacer,
            chat_id,
            lambda: self.bot.send_message(chat_id, text, reply_markup=keyboard),
            "progress message",
        )
        owed = ChatMessage(
            PLATFORM, str(chat_id), str(message.message_id), ticket.job_id, who.user_id, ticket.kind
        )
        if await self.store.track(owed.platform, owed.chat_id, owed.message_id, owed.job_id):
            self.follow(owed, shown=(text, keyboard))

    async def reattach(self) -> int:
        """Follow again every job whose answer a previous run of the bot still owed."""
        owed = await self.store.owed(PLATFORM)
        for item in owed:
            self.follow(item)
        if owed:
            _log.info("following %d job(s) again after a restart", len(owed))
        return len(owed)

    def follow(self, owed: ChatMessage, shown: tuple[str, Any] | None = None) -> None:
        task = self.tasks.spawn(self._follow(owed, shown), name=f"telegram-job-{owed.job_id}")
        self._following[owed.job_id] = (owed, task)
        task.add_done_callback(lambda _: self._following.pop(owed.job_id, None))

    async def erased(self, who: Identity) -> None:
        """The user's data is gone: stop following their jobs and say so in their messages.

        An erased job never reports an end (its rows are gone with the user), so its
        follower would wait for ever.
        """
        mine = [(o, t) for o, t in self._following.values() if o.platform_user_id == who.user_id]
        for owed, task in mine:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            text = erased_text(owed.job_id)
            with contextlib.suppress(TelegramError):
                await self.bot.edit_message_text(
                    text, chat_id=int(owed.chat_id), message_id=int(owed.message_id)
                )

    async def _follow(self, owed: ChatMessage, shown: tuple[str, Any] | None) -> None:
        who = Identity(PLATFORM, owed.platform_user_id)
        chat_id, job_id = int(owed.chat_id), owed.job_id
        live = LiveMessage(self.bot, self.pacer, chat_id, int(owed.message_id), shown=shown)
        try:
            try:
                kind = (await self.booth.job(who, job_id)).kind
            except BoothError:
                return  # erased meanwhile: its row went with it

            def show(progress: Progress) -> None:
                live.show(progress_text(progress), cancel_keyboard(job_id))

            async def preview(update: JobUpdate) -> None:
                if kind == "train" and update.preview is not None:
                    await self._send_preview(chat_id, job_id, update.step, update.preview)

            outcome = await follow_job(
                self.booth, who, job_id, kind, show, poll=self.position_poll, on_preview=preview
            )
            if outcome.state == "erased":
                await live.settle(erased_text(job_id))
                return
            try:
                await self._finish(who, chat_id, outcome, live)
            except Exception:
                # Its row stays: the next start of the bot tries to answer again.
                _log.exception("job %d: the answer could not be delivered", job_id)
                with contextlib.suppress(TelegramError):
                    await self.bot.send_message(chat_id, SORRY_NOT_SENT.format(job_id=job_id))
        finally:
            await live.close()

    async def _finish(
        self, who: Identity, chat_id: int, outcome: JobOutcome, live: LiveMessage
    ) -> None:
        text = final_text(outcome)
        if not await live.settle(text):
            await patiently(
                self.pacer, chat_id, lambda: self.bot.send_message(chat_id, text), "final text"
            )
        if outcome.state == "succeeded" and outcome.kind == "imagine":
            await self.send_pictures(chat_id, outcome)
        elif outcome.state == "succeeded" and outcome.pictures:
            await self._send_samples(chat_id, outcome)
        await self.store.answered(PLATFORM, outcome.job_id)

    async def _send_preview(self, chat_id: int, job_id: int, step: int, data: bytes) -> None:
        caption = f"AI-generated preview of your model (training job {job_id}, step {step})"
        with contextlib.suppress(TelegramError):
            await patiently(
                self.pacer,
                chat_id,
                lambda: self.bot.send_photo(chat_id, data, caption=caption, filename="preview.png"),
                "preview",
            )

    # results -------------------------------------------------------------------------

    async def send_pictures(self, chat_id: int, outcome: JobOutcome) -> None:
        """The pictures (an album when several), each captioned as AI-generated, and buttons."""
        job_id, images, caption = outcome.job_id, outcome.pictures, outcome.caption
        await self._action(chat_id, ChatAction.UPLOAD_PHOTO)
        if not images:
            text = f"No picture to show for job {job_id}.\n{caption}\nTry another prompt."
            await patiently(
                self.pacer, chat_id, lambda: self.bot.send_message(chat_id, text), "results"
            )
            return
        keyboard = results_keyboard(
            job_id, len(images), outcome.actions, await self.booth.style_names()
        )
        name = f"selfiebooth-{job_id}-{{}}.png"
        if not all(fits_as_photo(png) for png in images):
            # Telegram refuses such a photo; a document keeps every pixel.
            await self._send_documents(chat_id, job_id, images, caption)
            await patiently(
                self.pacer,
                chat_id,
                lambda: self.bot.send_message(
                    chat_id, f"Job {job_id}: too large for a photo, so sent as files.",
                    reply_markup=keyboard,
                ),
                "result buttons",
            )  # fmt: skip
            return
        if len(images) == 1:
            await patiently(
                self.pacer,
                chat_id,
                lambda: self.bot.send_photo(
                    chat_id,
                    images[0],
                    caption=caption,
                    reply_markup=keyboard,
                    filename=name.format(1),
                ),
                "results",
            )
            return
        media = [
            InputMediaPhoto(png, caption=caption, filename=name.format(n))
            for n, png in enumerate(images, start=1)
        ]
        await patiently(
            self.pacer, chat_id, lambda: self.bot.send_media_group(chat_id, media), "results"
        )
        text = f"Job {job_id}: {len(images)} pictures. " + results_hint(
            outcome.actions, len(images)
        )
        await patiently(
            self.pacer,
            chat_id,
            lambda: self.bot.send_message(chat_id, text, reply_markup=keyboard),
            "result buttons",
        )

    async def _send_samples(self, chat_id: int, outcome: JobOutcome) -> None:
        """A training's validation samples: what its likeness was measured on."""
        caption = samples_caption(outcome.job_id)
        media = [
            InputMediaPhoto(png, caption=caption if n == 1 else None, filename=f"sample-{n}.png")
            for n, png in enumerate(outcome.pictures, start=1)
        ]
        with contextlib.suppress(TelegramError):
            await patiently(
                self.pacer, chat_id, lambda: self.bot.send_media_group(chat_id, media), "samples"
            )

    async def send_files(self, who: Identity, chat_id: int, job_id: int) -> None:
        """The full-quality PNGs of a generation as documents (Telegram keeps their bytes)."""
        outcome = await self.booth.outcome(who, job_id)
        images, caption = outcome.pictures, outcome.caption
        if not images:
            raise BoothError(f"Job {job_id} has no pictures to send.")
        await self._send_documents(chat_id, job_id, images, caption)

    async def _send_documents(
        self, chat_id: int, job_id: int, images: tuple[bytes, ...], caption: str
    ) -> None:
        await self._action(chat_id, ChatAction.UPLOAD_DOCUMENT)
        name = f"selfiebooth-{job_id}-{{}}.png"
        if len(images) == 1:
            await patiently(
                self.pacer,
                chat_id,
                lambda: self.bot.send_document(
                    chat_id, images[0], caption=caption, filename=name.format(1)
                ),
                "files",
            )
            return
        media = [
            InputMediaDocument(png, caption=caption, filename=name.format(n))
            for n, png in enumerate(images, start=1)
        ]
        await patiently(
            self.pacer, chat_id, lambda: self.bot.send_media_group(chat_id, media), "files"
        )

    async def _action(self, chat_id: int, action: str) -> None:
        # Only a hint for the client ("sending a photo..."): never worth a retry or an error.
        with contextlib.suppress(TelegramError):
            await self.bot.send_chat_action(chat_id, action)


def fits_as_photo(png: bytes) -> bool:
    """Whether Telegram takes `png` as a photo (else it goes as a document)."""
    if len(png) > PHOTO_MAX_BYTES:
        return False
    with Image.open(io.BytesIO(png)) as image:  # reads the header only
        width, height = image.size
    return width + height <= PHOTO_MAX_SIDES
