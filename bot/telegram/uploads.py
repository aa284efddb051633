"""Selfies sent in a private chat: photos, albums and image documents, one reply per batch.

An album arrives as separate updates sharing a `media_group_id`, possibly split across
`getUpdates` answers, and people often send several files one by one: a chat's photos
and documents are collected until none has come for `batch_delay` seconds, then judged
together and answered once, each file with its verdict. Consent is checked before
anything is downloaded, and files over the download limit are refused by their
announced size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from telegram import Bot, Message
from telegram.constants import ChatAction
from telegram.error import BadRequest, TelegramError

from bot.core import Booth, BoothError, ConsentRequired, Identity, Upload, Verdict
from bot.core.pacing import Pacer
from bot.core.tasks import TaskSet
from bot.telegram.keyboards import consent_keyboard
from bot.telegram.progress import patiently
from bot.telegram.texts import SORRY, verdicts_text

__all__ = ["TELEGRAM_DOWNLOAD_LIMIT", "Intake"]

_log = logging.getLogger(__name__)

# Telegram's cloud Bot API serves files of at most 20 MB to bots (getFile).
TELEGRAM_DOWNLOAD_LIMIT = 20 * 1024 * 1024
OFFICIAL_API = "https://api.telegram.org/"


@dataclass(slots=True)
class _Batch:
    messages: list[Message] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class _File:
    name: str
    file_id: str
    size: int | None
    compressed: bool


def platform_limit(api_base_url: str) -> int | None:
    """Telegram's 20 MB download limit, unless the bot uses its own Bot API server."""
    return TELEGRAM_DOWNLOAD_LIMIT if api_base_url.startswith(OFFICIAL_API) else None


class Intake:
    def __init__(
        self,
        booth: Booth,
        bot: Bot,
        pacer: Pacer,
        tasks: TaskSet,
        *,
        platform_limit: int | None,
        batch_delay: float,
    ) -> None:
        self.booth = booth
        self.bot = bot
        self.pacer = pacer
        self.tasks = tasks
        self.platform_limit = platform_limit
        self.limit = min(booth.config.intake.max_file_bytes, platform_limit or 2**62)
        self.batch_delay = batch_delay
        # chat id -> the photos and documents received and not yet judged
        self._batches: dict[int, _Batch] = {}
        self._judging: set[asyncio.Task[None]] = set()

    async def receive(self, message: Message) -> None:
        """One photo or document: it waits a moment for the rest of its batch or batch."""
        key = message.chat_id
        batch = self._batches.setdefault(key, _Batch())
        batch.messages.append(message)
        if batch.timer is not None:
            batch.timer.cancel()
        loop = asyncio.get_running_loop()
        batch.timer = loop.call_later(self.batch_delay, self._batch_due, key)

    def _batch_due(self, key: int) -> None:
        batch = self._batches.pop(key, None)
        if batch is not None:
            task = self.tasks.spawn(self._judge(batch.messages), name=f"selfies-{key}")
            self._judging.add(task)
            task.add_done_callback(self._judging.discard)

    async def flush(self) -> None:
        """Judge the batches still being collected now, and wait for those being judged: the
        bot is stopping, and their updates are confirmed to Telegram already."""
        batches, self._batches = list(self._batches.values()), {}
        for batch in batches:
            if batch.timer is not None:
                batch.timer.cancel()
            await self._judge(batch.messages)
        if self._judging:
            await asyncio.wait(set(self._judging))

    async def _judge(self, messages: list[Message]) -> None:
        messages = sorted(messages, key=lambda m: m.message_id)
        chat_id = messages[0].chat_id
        user = messages[0].from_user
        if user is None:
            return
        who = Identity("telegram", str(user.id))
        keyboard = None
        try:
            text = await self._verdicts(who, chat_id, messages)
        except ConsentRequired as exc:
            text = f"{exc}\n\n{self.booth.consent_text.text}"
            keyboard = consent_keyboard(self.booth.consent_text.version)
        except BoothError as exc:
            text = str(exc)
        except Exception:
            _log.exception("photos of a user could not be judged")
            text = SORRY
        try:
            await patiently(
                self.pacer,
                chat_id,
                lambda: self.bot.send_message(chat_id, text, reply_markup=keyboard),
                "verdicts",
            )
        except TelegramError as exc:
            _log.warning("verdicts could not be sent: %s", exc)

    async def _verdicts(self, who: Identity, chat_id: int, messages: list[Message]) -> str:
        # Nothing is downloaded for someone whose upload the core would refuse anyway. Each
        # call counts against the user's command rate, so a batch costs two.
        before = await self.booth.ready_to_upload(who)
        files = [_file_of(n, m) for n, m in enumerate(messages, start=1)]
        verdicts: list[Verdict | None] = [None] * len(files)
        uploads: list[tuple[int, Upload]] = []
        await self._action(chat_id)
        for i, item in enumerate(files):
            refusal = self._oversized(item.name, item.size)
            if refusal is not None:
                verdicts[i] = refusal
                continue
            data = await self._download(item)
            if isinstance(data, str):
                verdicts[i] = Verdict(item.name, False, data)
            else:
                uploads.append((i, Upload(item.name, data)))
        judged = await self.booth.upload(who, [u for _, u in uploads]) if uploads else []
        for (i, _), verdict in zip(uploads, judged, strict=True):
            verdicts[i] = verdict
        final = [v for v in verdicts if v is not None]
        photos = before.photos + sum(v.accepted for v in final)
        text = verdicts_text([f.name for f in files], final, photos, before.max_photos)
        needed = self.booth.config.training.min_photos
        if photos >= needed:
            text += "\nWhen you have sent all your selfies: /train"
        else:
            text += f"\nSend at least {needed - photos} more before /train."
        if any(f.compressed for f in files):
            text += (
                "\nTip: send selfies as files (uncompressed, 'File' in the attach menu): "
                "Telegram shrinks photos, and sharper selfies make a better model."
            )
        return text

    async def fetch(self, message: Message) -> bytes | str:
        """The photo or document of one message (an image for /admin trace), or why not."""
        item = _file_of(1, message)
        refusal = self._oversized(item.name, item.size)
        if refusal is not None:
            return refusal.reason or "file too large"
        return await self._download(item)

    def _oversized(self, name: str, size: int | None) -> Verdict | None:
        # Telegram does not always announce a size; then getFile's answer is checked.
        return None if size is None else self.booth.oversized(name, size, self.platform_limit)

    async def _download(self, item: _File) -> bytes | str:
        """The file's bytes, or why they could not be had."""
        # Downloads count against no chat's limits: pace them as "chat 0".
        try:
            remote = await patiently(
                self.pacer, 0, lambda: self.bot.get_file(item.file_id), "getFile"
            )
            refusal = self._oversized(item.name, remote.file_size)
            if refusal is not None:
                return refusal.reason or "file too large"
            data = await patiently(self.pacer, 0, remote.download_as_bytearray, "file download")
        except BadRequest as exc:
            _log.info("a file could not be fetched: %s", exc)
            if "too big" in exc.message.lower():  # no size was announced; getFile knew
                return f"file too large: send a photo of at most {self.limit / 1048576:.3g} MB"
            return "Telegram would not hand this file over: send it again"
        except TelegramError as exc:
            _log.info("a file could not be downloaded: %s", exc)
            return "the download from Telegram failed: send it again"
        # The core refuses anything over the limit; one byte more is enough for it to see.
        return bytes(data[: self.limit + 1])

    async def _action(self, chat_id: int) -> None:
        with contextlib.suppress(TelegramError):  # a hint only
            await self.bot.send_chat_action(chat_id, ChatAction.TYPING)


def _file_of(n: int, message: Message) -> _File:
    if message.photo:
        largest = max(message.photo, key=lambda p: p.width * p.height)
        return _File(f"Photo {n}", largest.file_id, largest.file_size, compressed=True)
    document = message.document
    if document is None:  # the handler's filter lets only photos and documents in
        raise ValueError("neither a photo nor a document")
    name = document.file_name or f"File {n}"
    return _File(name, document.file_id, document.file_size, compressed=False)
