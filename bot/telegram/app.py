"""The Telegram front end: a python-telegram-bot `Application` over the core.

    front = TelegramFrontEnd(booth, config, config.telegram_token)
    await front.start()   # getMe, setMyCommands, polling (or a webhook), re-attach to jobs
    ...
    await front.stop()    # stop fetching, finish what was received, shut PTB down

Long polling by default; with `telegram.webhook_url` set, a webhook (PTB's `webhooks`
extra, tornado). `api_base_url` and `file_base_url` may point at a self-hosted Bot API
server (which lifts the 20 MB download limit), or at the fake server of the tests.
"""

from __future__ import annotations

import importlib.util
import logging
import secrets
from urllib.parse import urlsplit

from telegram import BotCommand, BotCommandScopeChat, Update
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.config import Config, ConfigError, Secret
from bot.core import Booth
from bot.core.pacing import Pacer
from bot.core.tasks import TaskSet
from bot.telegram.handlers import UPLOAD_LIMIT_LOCAL, UPLOAD_LIMIT_OFFICIAL, Handlers
from bot.telegram.jobs import JobDesk
from bot.telegram.texts import ADMIN_COMMAND, COMMANDS
from bot.telegram.uploads import OFFICIAL_API, Intake, platform_limit
from engine.logs import RedactSecrets

__all__ = ["TelegramFrontEnd"]

_log = logging.getLogger(__name__)

# Seconds a batch of selfies (an album) waits for its next photo before it is judged.
BATCH_DELAY = 1.5
# Updates handled at once: one user's slow upload must not hold up everyone else.
CONCURRENT_UPDATES = 16
UPDATES = [Update.MESSAGE, Update.CALLBACK_QUERY]


class TelegramFrontEnd:
    def __init__(self, booth: Booth, config: Config, token: Secret | str | None) -> None:
        if token is None:
            raise ConfigError("the Telegram bot token is missing: set SELFIEBOOTH_TELEGRAM_TOKEN")
        raw = token.get() if isinstance(token, Secret) else token
        settings = config.telegram
        if settings.webhook_url and importlib.util.find_spec("tornado") is None:
            raise ConfigError(
                f"telegram.webhook_url = {settings.webhook_url!r} needs webhook support: "
                "install python-telegram-bot[webhooks], or leave webhook_url empty for polling"
            )
        self.config = config
        self.booth = booth
        # A Bot API URL holds the token, and httpx (each request) and PTB (its base URLs, at
        # debug level) log URLs. `selfiebooth` redacts it on its log handler; this is for
        # whatever other handlers the host program has. A filter holds for its own logger
        # only, not its children: give it to each of them.
        self._redact = RedactSecrets([raw])
        names = dict.fromkeys(["httpx", "telegram", *logging.root.manager.loggerDict])
        self._redacted = [
            logging.getLogger(name) for name in names if name.split(".")[0] in ("httpx", "telegram")
        ]
        for logger in self._redacted:
            logger.addFilter(self._redact)
        self.application: Application = (  # type: ignore[type-arg]
            ApplicationBuilder()
            .token(raw)
            .base_url(settings.api_base_url)
            .base_file_url(settings.file_base_url)
            # Self-hosted and local servers speak HTTP/1.1; so does the cloud API.
            .http_version("1.1")
            .get_updates_http_version("1.1")
            .concurrent_updates(CONCURRENT_UPDATES)
            .connection_pool_size(CONCURRENT_UPDATES * 2)
            .build()
        )
        bot = self.application.bot
        self.tasks = TaskSet()
        self.pacer = Pacer(settings.edit_interval, tasks=self.tasks)
        self.desk = JobDesk(booth, bot, self.pacer, self.tasks)
        self.intake = Intake(
            booth,
            bot,
            self.pacer,
            self.tasks,
            platform_limit=platform_limit(settings.api_base_url),
            batch_delay=BATCH_DELAY,
        )
        official = settings.api_base_url.startswith(OFFICIAL_API)
        self.handlers = Handlers(
            booth,
            self.desk,
            self.intake,
            self.pacer,
            UPLOAD_LIMIT_OFFICIAL if official else UPLOAD_LIMIT_LOCAL,
        )
        self._register()

    def _register(self) -> None:
        h, app = self.handlers, self.application
        only_new = filters.UpdateType.MESSAGE  # an edited command is not a new command
        for name, callback in [
            ("start", h.start),
            ("help", h.help),
            ("status", h.status),
            ("mydata", h.mydata),
            ("export", h.export),
            ("forget", h.forget),
            ("train", h.train),
            ("imagine", h.imagine),
            ("edit", h.edit),
            ("cancel", h.cancel),
            ("model", h.model),
            ("report", h.report),
            ("admin", h.admin),
        ]:
            app.add_handler(CommandHandler(name, callback, filters=only_new))
        app.add_handler(CallbackQueryHandler(h.button))
        private = filters.ChatType.PRIVATE & only_new
        files = filters.PHOTO | filters.Document.ALL
        app.add_handler(MessageHandler(private & files, h.selfie))
        app.add_handler(MessageHandler(filters.ChatType.GROUPS & only_new & files, h.group_media))
        other = (
            filters.Sticker.ALL
            | filters.VOICE
            | filters.AUDIO
            | filters.VIDEO
            | filters.VIDEO_NOTE
            | filters.ANIMATION
        )
        app.add_handler(MessageHandler(private & other, h.other_media))
        app.add_handler(MessageHandler(private & filters.COMMAND, h.unknown_command))
        # Anything else in a private chat (text, a location, a contact...) gets directions.
        app.add_handler(MessageHandler(private, h.plain_text))
        app.add_error_handler(h.error)

    # lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        app = self.application
        await app.initialize()  # getMe: a wrong token or URL fails here
        await self._set_commands()
        await app.start()
        settings = self.config.telegram
        updater = app.updater
        if updater is None:
            raise RuntimeError("the Application was built without an updater")
        if settings.webhook_url:
            await updater.start_webhook(
                listen=settings.webhook_listen,
                port=settings.webhook_port,
                url_path=urlsplit(settings.webhook_url).path.lstrip("/"),
                webhook_url=settings.webhook_url,
                allowed_updates=UPDATES,
                bootstrap_retries=3,
                # Only Telegram knows this: posts without it are refused by PTB.
                secret_token=secrets.token_urlsafe(32),
            )
        else:
            await updater.start_polling(allowed_updates=UPDATES, bootstrap_retries=3)
        await self.desk.reattach()
        _log.info("Telegram front end started as @%s", app.bot.username)

    @property
    def connected(self) -> bool:
        """Fetching updates (polling) or taking them (webhook)."""
        app = self.application
        return app.running and app.updater is not None and app.updater.running

    async def stop(self) -> None:
        app = self.application
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()  # handles the updates already fetched
        await self.intake.flush()
        # Followed jobs keep their rows: the next start re-attaches to them.
        await self.tasks.cancel_all()
        await app.shutdown()
        for logger in self._redacted:
            logger.removeFilter(self._redact)

    async def _set_commands(self) -> None:
        bot = self.application.bot
        commands = [BotCommand(name, text) for name, text in COMMANDS.items()]
        await bot.set_my_commands(commands)
        # Admins see /admin in their own chat's menu; the core checks them on every call.
        for admin_id in self.config.telegram.admin_ids:
            try:
                await bot.set_my_commands(
                    [*commands, BotCommand(*ADMIN_COMMAND)],
                    scope=BotCommandScopeChat(int(admin_id)),
                )
            except TelegramError as exc:
                # Until the admin has opened a chat with the bot, Telegram knows no such chat.
                _log.info("admin commands not set for one admin: %s", exc)
