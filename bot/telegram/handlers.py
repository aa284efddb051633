"""What the bot does with each command, button and message: call the core, say its answer.

Every rule lives in the core; a handler only reads the update, calls one core method and
turns the result (or the core's `BoothError`, whose message is for the user) into words.
Data-bearing commands answer only in private chats; in groups the bot takes /imagine,
/report, /cancel and /help, and asks for the rest privately.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

from telegram import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageEntity,
    Update,
)
from telegram.constants import ChatType
from telegram.error import TelegramError
from telegram.ext import ContextTypes

from bot.core import Booth, BoothError, Identity
from bot.core.captions import export_caption
from bot.core.options import EDIT_HELP, chosen_fields, parse_edit
from bot.core.pacing import Pacer
from bot.core.summaries import decline_text, erasure_text
from bot.telegram.jobs import PLATFORM, JobDesk
from bot.telegram.keyboards import Button, consent_keyboard, forget_keyboard, parse_button
from bot.telegram.options import parse_imagine
from bot.telegram.progress import patiently
from bot.telegram.texts import (
    GROUP_ONLY_PRIVATE,
    SORRY,
    chunks,
    help_text,
    intro,
    my_data_text,
    status_text,
)
from bot.telegram.uploads import Intake

__all__ = ["Handlers"]

_log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
Handler = Callable[["Handlers", Update, Context], Coroutine[Any, Any, None]]

# A /forget confirmation older than this is refused: the user is asked again.
# The official Bot API takes uploads of at most 50 MB; a local Bot API server 2000 MB.
UPLOAD_LIMIT_OFFICIAL = 50 * 1024 * 1024
UPLOAD_LIMIT_LOCAL = 2000 * 1024 * 1024

OTHER_MEDIA = {
    "sticker": "Stickers can't be used as selfies.",
    "voice": "I can't listen to voice notes.",
    "audio": "I can't use audio.",
    "video": "Videos can't be used: I need still photos.",
    "video_note": "Video messages can't be used: I need still photos.",
    "animation": "GIFs and animations can't be used: I need still photos.",
}


def answering(handler: Handler) -> Handler:
    """The core's refusals become the user's answer; anything else goes to the error handler."""

    @functools.wraps(handler)
    async def wrapped(self: Handlers, update: Update, context: Context) -> None:
        try:
            await handler(self, update, context)
        except BoothError as exc:
            if update.effective_chat is not None:
                await self.say(update.effective_chat.id, str(exc))

    return wrapped


def private_only(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(self: Handlers, update: Update, context: Context) -> None:
        chat = update.effective_chat
        if chat is None or chat.type != ChatType.PRIVATE:
            if chat is not None:
                await self.say(chat.id, GROUP_ONLY_PRIVATE, self.private_chat_button(context))
            return
        await handler(self, update, context)

    return wrapped


class Handlers:
    def __init__(
        self, booth: Booth, desk: JobDesk, intake: Intake, pacer: Pacer, upload_limit: int
    ) -> None:
        self.booth = booth
        self.desk = desk
        self.intake = intake
        self.pacer = pacer
        self.upload_limit = upload_limit
        # Commands a photo's caption can carry: the photo is what the command is about.
        self._captioned = {"/imagine": self.imagine, "/edit": self.edit, "/admin": self.admin}

    # helpers -------------------------------------------------------------------------

    async def say(
        self, chat_id: int, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> Message:
        """Send `text` (in pieces if long; the buttons under the last), waiting out 429s."""
        *first, last = chunks(text)
        send = self.desk.bot.send_message
        for piece in first:
            await patiently(self.pacer, chat_id, functools.partial(send, chat_id, piece), "reply")
        return await patiently(
            self.pacer,
            chat_id,
            functools.partial(send, chat_id, last, reply_markup=markup),
            "reply",
        )

    @staticmethod
    def who(update: Update) -> Identity:
        user = update.effective_user
        if user is None:
            raise BoothError("I can only answer people.")
        return Identity(PLATFORM, str(user.id))

    @staticmethod
    def private_chat_button(context: Context) -> InlineKeyboardMarkup:
        url = f"https://t.me/{context.bot.username}"
        return InlineKeyboardMarkup([[InlineKeyboardButton("Open a private chat", url=url)]])

    @staticmethod
    def command_text(message: Message) -> str:
        """What follows the command (/imagine@bot ...), spacing and line breaks kept."""
        text = message.text or message.caption or ""
        entities = message.entities or message.caption_entities
        first = entities[0] if entities else None
        if first is not None and first.type == MessageEntity.BOT_COMMAND and first.offset == 0:
            return text[first.length :].strip()
        return text.partition(" ")[2].strip()

    def consent_message(self) -> tuple[str, InlineKeyboardMarkup]:
        consent = self.booth.consent_text
        text = f"Consent (version {consent.version}):\n\n{consent.text}"
        return text, consent_keyboard(consent.version)

    # commands ------------------------------------------------------------------------

    @answering
    @private_only
    async def start(self, update: Update, context: Context) -> None:
        who, chat_id = self.who(update), _chat(update)
        status = await self.booth.status(who)
        consent, keyboard = self.consent_message()
        hello = intro(self.booth.config.training.min_photos, status.max_photos)
        if status.consent_current:
            await self.say(
                chat_id,
                f"{hello}\n\n{consent}\n\nYou have accepted this. Send selfies, or see /help.",
            )
        else:
            await self.say(chat_id, f"{hello}\n\n{consent}", keyboard)

    @answering
    async def help(self, update: Update, context: Context) -> None:
        await self.say(_chat(update), help_text(self.booth.config.training.min_photos))

    @answering
    @private_only
    async def status(self, update: Update, context: Context) -> None:
        await self.say(_chat(update), status_text(await self.booth.status(self.who(update))))

    @answering
    @private_only
    async def mydata(self, update: Update, context: Context) -> None:
        await self.say(_chat(update), my_data_text(await self.booth.my_data(self.who(update))))

    @answering
    @private_only
    async def export(self, update: Update, context: Context) -> None:
        chat_id = _chat(update)
        export = await self.booth.export(self.who(update), *(context.args or [])[:1])
        if len(export.data) > self.upload_limit:
            raise BoothError(
                f"Your model is {len(export.data) / 1048576:.0f} MB, more than this bot may "
                f"send through Telegram ({self.upload_limit / 1048576:.0f} MB)."
            )
        caption = export_caption(export)
        await patiently(
            self.pacer,
            chat_id,
            lambda: context.bot.send_document(
                chat_id, export.data, filename=export.filename, caption=caption
            ),
            "export",
        )

    @answering
    @private_only
    async def forget(self, update: Update, context: Context) -> None:
        await self.say(
            _chat(update),
            "This deletes everything about you: selfies, models, pictures and jobs, and "
            "withdraws your consent. It cannot be undone. Are you sure?",
            forget_keyboard(),
        )

    @answering
    @private_only
    async def train(self, update: Update, context: Context) -> None:
        who = self.who(update)
        ticket = await self.booth.train(who)
        await self.desk.post(who, _chat(update), ticket)

    @answering
    async def imagine(self, update: Update, context: Context) -> None:
        """/imagine PROMPT; on a photo's caption or in reply to one, from that picture
        (redrawn, or with --edges its outlines followed)."""
        message = update.effective_message
        if message is None:
            return
        text = self.command_text(message)
        request = parse_imagine(text)
        holder = _picture_message(message)
        picture = None if holder is None else await self._picture(holder, "picture")
        who = self.who(update)
        ticket = await self.booth.imagine(who, request, picture, chosen=chosen_fields(text))
        await self.desk.post(who, _chat(update), ticket)

    @answering
    async def edit(self, update: Update, context: Context) -> None:
        """/edit background|face|mask PROMPT on a photo's caption or in reply to a photo;
        with `mask`, the message's own photo is the mask of the photo it replies to."""
        message = update.effective_message
        if message is None:
            return
        text = self.command_text(message)
        what, request = parse_edit(text)
        mask = None
        if what == "mask":
            replied = message.reply_to_message
            if not _holds_picture(message) or replied is None or not _holds_picture(replied):
                raise BoothError(
                    "For /edit mask, reply to your picture with the mask attached (white "
                    "where to repaint) and /edit mask PROMPT as its caption."
                )
            mask = await self._picture(message, "mask")
            holder: Message | None = replied
        else:
            holder = _picture_message(message)
        if holder is None:
            raise BoothError(f"Attach the picture to edit. {EDIT_HELP}")
        picture = await self._picture(holder, "picture")
        who = self.who(update)
        region = None if what == "mask" else what
        ticket = await self.booth.edit(
            who, request, picture, region=region, mask=mask, chosen=chosen_fields(text)
        )
        await self.desk.post(who, _chat(update), ticket)

    async def _picture(self, message: Message, what: str) -> bytes:
        fetched = await self.intake.fetch(message)
        if isinstance(fetched, str):
            raise BoothError(f"Your {what} could not be read ({fetched}), and nothing was queued.")
        return fetched

    @answering
    async def cancel(self, update: Update, context: Context) -> None:
        args = context.args or []
        if args and not args[0].isdigit():
            raise BoothError("Write /cancel to cancel all your jobs, or /cancel JOB for one.")
        job_id = int(args[0]) if args else None
        cancelled = await self.booth.cancel(self.who(update), job_id)
        text = (
            f"Cancelling job(s) {', '.join(map(str, cancelled))}."
            if cancelled
            else "You have no waiting or running jobs."
        )
        await self.say(_chat(update), text)

    @answering
    @private_only
    async def model(self, update: Update, context: Context) -> None:
        args = context.args or []
        if len(args) != 1 or not args[0].isdigit():
            raise BoothError("Write /model VERSION, for example /model 2 (see /status).")
        lora = await self.booth.use_model(self.who(update), int(args[0]))
        await self.say(_chat(update), f"Model version {lora.version} is now in use.")

    @answering
    async def report(self, update: Update, context: Context) -> None:
        args = context.args or []
        if not args or not args[0].isdigit():
            raise BoothError(
                "Write /report JOB and, if you like, why: the job number is in the "
                "picture's caption."
            )
        job_id = int(args[0])
        item = await self.booth.report(self.who(update), job_id, " ".join(args[1:]))
        await self.say(
            _chat(update),
            f"Thank you: job {job_id} is reported (review item {item}). An admin will look at it.",
        )

    @answering
    @private_only
    async def admin(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        image: bytes | None = None
        filename = ""
        source = message if (message.photo or message.document) else message.reply_to_message
        if source is not None and (source.photo or source.document):
            fetched = await self.intake.fetch(source)
            if isinstance(fetched, str):
                raise BoothError(f"The image could not be read: {fetched}.")
            image = fetched
            if source.document is not None:
                filename = source.document.file_name or ""
        answer = await self.booth.admin_command(
            self.who(update), self.command_text(message), image, filename
        )
        await self.say(_chat(update), answer)

    # messages ------------------------------------------------------------------------

    async def selfie(self, update: Update, context: Context) -> None:
        """A photo or document in a private chat: a selfie, or an image for /admin trace."""
        message = update.effective_message
        if message is None:
            return
        words = (message.caption or "").split(maxsplit=1)
        command = words[0].partition("@")[0].lower() if words else ""
        if command in self._captioned:
            await self._captioned[command](update, context)
            return
        await self.intake.receive(message)

    async def group_media(self, update: Update, context: Context) -> None:
        """Photos in a group are not ours to look at, unless someone sends them to the bot."""
        message = update.effective_message
        if message is None:
            return
        mentioned = f"@{context.bot.username}".lower() in (message.caption or "").lower()
        replied = message.reply_to_message is not None and (
            message.reply_to_message.from_user is not None
            and message.reply_to_message.from_user.id == context.bot.id
        )
        if mentioned or replied:
            await self.say(message.chat_id, GROUP_ONLY_PRIVATE, self.private_chat_button(context))

    async def other_media(self, update: Update, context: Context) -> None:
        message = update.effective_message
        if message is None:
            return
        what = next((text for kind, text in OTHER_MEDIA.items() if getattr(message, kind)), "")
        await self.say(
            message.chat_id,
            f"{what} Send selfies as photos or, better, as image files (see /help).".lstrip(),
        )

    async def plain_text(self, update: Update, context: Context) -> None:
        await self.say(_chat(update), "Send me selfies, or a command: /help shows what I can do.")

    async def unknown_command(self, update: Update, context: Context) -> None:
        await self.say(_chat(update), "I don't know that command. /help shows what I can do.")

    # buttons -------------------------------------------------------------------------

    async def button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        button = parse_button(query.data)
        if button is None:
            await _answer(query, "This button no longer works. See /help.", alert=True)
            return
        if button.action == "file":
            # Answered first: an upload may take longer than a button's spinner should spin.
            await _answer(query, "Sending the full-quality files.")
            try:
                await self.desk.send_files(self.who(update), _chat(update), int(button.args[0]))
            except BoothError as exc:
                await self.say(_chat(update), str(exc))
            return
        try:
            toast = await self._press(update, query, button)
        except BoothError as exc:
            text = str(exc)
            await _answer(query, text[:200], alert=True)
            if len(text) > 200 and update.effective_chat is not None:
                await self.say(update.effective_chat.id, text)
            return
        await _answer(query, toast or None)

    async def _press(self, update: Update, query: CallbackQuery, button: Button) -> str:
        """Do what the button says; the text to answer the press with ("" for none)."""
        who = self.who(update)
        chat_id = _chat(update)
        action, args = button.action, button.args
        if action == "consent":
            return await self._consent(who, chat_id, query, accept=args[0] == "yes", shown=args[1])
        if action == "forget":
            return await self._forget(who, query, confirmed=args[0] == "yes")
        job_id = int(args[0])
        if action == "cancel":
            cancelled = await self.booth.cancel(who, job_id)
            return f"Cancelling job {job_id}." if cancelled else ""
        if action == "reroll":
            await self.desk.post(who, chat_id, await self.booth.reroll(who, job_id))
            return "New pictures are on their way."
        if action == "vary":
            ticket = await self.booth.variations(who, job_id, int(args[1]))
            await self.desk.post(who, chat_id, ticket)
            return "Variations are on their way."
        if action == "upscale":
            await self.desk.post(who, chat_id, await self.booth.upscale(who, job_id, int(args[1])))
            return "A picture twice as large is on its way."
        if action == "style":
            await self.desk.post(who, chat_id, await self.booth.restyle(who, job_id, args[1]))
            return f"The same picture in the {args[1]} style is on its way."
        if action == "report":
            await self.booth.report(who, job_id)
            return "Reported. Thank you: an admin will look at it."
        raise AssertionError(f"parse_button let {action!r} through")

    async def _consent(
        self, who: Identity, chat_id: int, query: CallbackQuery, *, accept: bool, shown: str
    ) -> str:
        await _drop_buttons(query)
        if not accept:
            consented = await self.booth.decline(who)
            await self.say(chat_id, decline_text(consented, "/start", "/forget"))
            return ""
        try:
            await self.booth.accept_consent(who, shown)
        except BoothError as exc:
            if shown == self.booth.consent_text.version:
                raise  # not about the text: a rate limit, say
            # The text changed since it was shown: show the current one to accept.
            text, keyboard = self.consent_message()
            await self.say(chat_id, f"{exc}\n\n{text}", keyboard)
            return ""
        needed = self.booth.config.training.min_photos
        await self.say(
            chat_id,
            f"Thank you. Now send me at least {needed} selfies of yourself: only you in the "
            "picture, face clearly visible. Send them as files (uncompressed) for the best "
            "quality; photos and albums work too.",
        )
        return "Accepted."

    async def _forget(self, who: Identity, query: CallbackQuery, *, confirmed: bool) -> str:
        message = query.message
        if not confirmed:
            if message is not None:
                with contextlib.suppress(TelegramError):
                    await query.get_bot().delete_message(message.chat.id, message.message_id)
            return "Nothing was deleted."
        try:
            self.booth.check_confirmation(
                message.date if message is not None else datetime.fromtimestamp(0, UTC)
            )
        except BoothError:
            await _drop_buttons(query)
            raise
        erasure = await self.booth.forget(who)
        await self.desk.erased(who)
        text = f"{erasure_text(erasure)} Goodbye, and /start if you ever want to come back."
        try:
            await query.edit_message_text(text)
        except TelegramError:
            await self.say(_chat_of(query), text)
        return "Deleted."

    # errors --------------------------------------------------------------------------

    async def error(self, update: object, context: Context) -> None:
        """Anything a handler did not expect: logged, and the user still gets an answer."""
        if not isinstance(update, Update):
            # Polling and network trouble: PTB retries by itself.
            _log.warning("Telegram: %s", context.error)
            return
        _log.error("update %d failed", update.update_id, exc_info=context.error)
        if update.callback_query is not None:
            await _answer(update.callback_query, SORRY, alert=True)
        elif update.effective_chat is not None:
            with contextlib.suppress(TelegramError):
                await self.say(update.effective_chat.id, SORRY)


def _chat(update: Update) -> int:
    if update.effective_chat is None:
        raise BoothError("This needs a chat to answer in.")
    return update.effective_chat.id


def _chat_of(query: CallbackQuery) -> int:
    if query.message is None:
        raise BoothError("This message is too old to act on.")
    return query.message.chat.id


async def _answer(query: CallbackQuery, text: str | None, *, alert: bool = False) -> None:
    # A query can be answered once; a second answer, or a late one, is refused harmlessly.
    with contextlib.suppress(TelegramError):
        await query.answer(text, show_alert=alert)


async def _drop_buttons(query: CallbackQuery) -> None:
    with contextlib.suppress(TelegramError):
        await query.edit_message_reply_markup(None)


def _holds_picture(message: Message) -> bool:
    return bool(message.photo or message.document)


def _picture_message(message: Message) -> Message | None:
    """The message with the picture a command is about: its own, or the one it replies to."""
    if _holds_picture(message):
        return message
    replied = message.reply_to_message
    return replied if replied is not None and _holds_picture(replied) else None
