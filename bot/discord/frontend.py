"""The Discord front end's lifecycle: log in, sync the slash commands, hold the gateway
connection, and finish after a restart the jobs a previous run was following.

`start()` returns once the commands are synced and the gateway connection is under way;
`stop()` stops following jobs (they go on in the core and are finished by the next
start), then closes the connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot.config import Config, DiscordConfig, Secret
from bot.core import Booth
from bot.discord.actions import Actions
from bot.discord.answers import TOKEN_LIFETIME
from bot.discord.buttons import BUTTONS, unknown_button
from bot.discord.commands import admin_permissions, register
from bot.discord.context import DiscordContext
from bot.discord.progress import PLATFORM, Place

__all__ = ["DiscordFrontEnd"]

_log = logging.getLogger(__name__)


class BoothClient(discord.Client):
    """The discord.py client, with the slash commands and the persistent buttons."""

    def __init__(self, front: DiscordFrontEnd) -> None:
        # Slash commands and buttons need no privileged intents; guilds keeps state sane.
        super().__init__(intents=discord.Intents(guilds=True))
        self.settings = front.context.settings
        self.actions = front.actions
        self.tree: app_commands.CommandTree[BoothClient] = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        self.add_dynamic_items(*BUTTONS)
        config = self.settings
        register(self.tree, self.actions, config.admin_permission)
        if not config.guild_ids:
            synced = await self.tree.sync()
            _log.info("%d command(s) synced globally", len(synced))
        for guild_id in config.guild_ids:
            guild = discord.Object(int(guild_id))
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            _log.info("%d command(s) synced to guild %s", len(synced), guild_id)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        if interaction.type is discord.InteractionType.component:
            await unknown_button(interaction)


class DiscordFrontEnd:
    def __init__(
        self,
        booth: Booth,
        config: Config,
        token: Secret | str,
        *,
        token_lifetime: float = TOKEN_LIFETIME,
    ) -> None:
        self.booth = booth
        self.config = config
        self._token = token if isinstance(token, Secret) else Secret(token)
        self.context = DiscordContext.create(booth, config.discord, token_lifetime=token_lifetime)
        self.actions = Actions(self.context)
        self.chats = self.context.chats
        self.client: BoothClient | None = None
        self._connection: asyncio.Task[None] | None = None
        self._saved_urls: tuple[str, yarl.URL] | None = None
        admin_permissions(config.discord.admin_permission)  # a bad name stops start-up

    async def start(self) -> None:
        # discord.py's webhook requests log their URLs at DEBUG, and an interaction's URL
        # holds its token: keep that logger above DEBUG whatever the rest logs.
        webhook_log = logging.getLogger("discord.webhook.async_")
        webhook_log.setLevel(max(webhook_log.getEffectiveLevel(), logging.INFO))
        self._point_at(self.config.discord)
        client = BoothClient(self)
        try:
            await client.login(self._token.get())
        except BaseException:
            await client.close()
            self._restore_urls()
            raise
        self.client = self.context.client = client
        self._connection = asyncio.create_task(
            client.connect(reconnect=True), name="discord-gateway"
        )
        self._connection.add_done_callback(_gateway_ended)
        await self._resume_owed()

    @property
    def connected(self) -> bool:
        """Logged in, with a gateway session that has been ready and still runs."""
        client, connection = self.client, self._connection
        if client is None or connection is None or connection.done():
            return False
        return client.is_ready() and not client.is_closed()

    async def stop(self) -> None:
        # Job watches and their live messages; the jobs go on in the core.
        await self.context.tasks.cancel_all()
        if self.client is not None:
            await self.client.close()
        if self._connection is not None:
            await asyncio.gather(self._connection, return_exceptions=True)
            self._connection = None
        self.client = self.context.client = None
        self._restore_urls()

    async def _resume_owed(self) -> None:
        """Follow again the jobs a previous run owed an answer; they finish by message."""
        for owed in await self.chats.owed(PLATFORM):
            place = Place(
                int(owed.platform_user_id), int(owed.chat_id) or None, self.context.upload_limit
            )
            self.context.spawn(
                self.actions.resume(owed.job_id, owed.kind, place),
                name=f"discord-job-{owed.job_id}",
                owner=place.owner_id,
            )

    def _point_at(self, config: DiscordConfig) -> None:
        # discord.py reads its API and gateway addresses from class attributes.
        self._saved_urls = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE = config.api_base_url.rstrip("/")
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(config.gateway_url)

    def _restore_urls(self) -> None:
        if self._saved_urls is not None:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved_urls
            self._saved_urls = None


def _gateway_ended(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _log.error("the Discord gateway connection ended", exc_info=task.exception())
