"""What Discord's actions, buttons and job watches share, instead of the whole front end:
the core, the settings they read, the task group and pacer they use, and the client.

The front end builds one `DiscordContext` and fills in `client` once it has logged in;
nothing here imports the front end back.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import discord

from bot.config import DiscordConfig
from bot.core import Booth
from bot.core.pacing import Pacer
from bot.core.tasks import TaskSet
from bot.discord.answers import TOKEN_LIFETIME
from storage.chat_messages import ChatMessages

__all__ = ["DEFAULT_UPLOAD_LIMIT", "DiscordContext"]

# Discord's upload limit where no interaction says otherwise (a server without boosts).
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024


@dataclass(slots=True)
class DiscordContext:
    booth: Booth
    settings: DiscordConfig
    # Which job messages are still owed an answer (kept across restarts).
    chats: ChatMessages
    # Every background task of the front end: job watches and their live messages.
    tasks: TaskSet
    # Progress edits, keyed by message: `settings.edit_interval` apart.
    pacer: Pacer
    # How long an interaction token is used before answers go by message or DM.
    token_lifetime: float = TOKEN_LIFETIME
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    # The logged-in client (channel messages, DMs); None before start and after stop.
    client: discord.Client | None = None

    @classmethod
    def create(
        cls, booth: Booth, settings: DiscordConfig, *, token_lifetime: float = TOKEN_LIFETIME
    ) -> DiscordContext:
        tasks = TaskSet()
        return cls(
            booth,
            settings,
            booth.chats,
            tasks,
            Pacer(settings.edit_interval, tasks=tasks),
            token_lifetime,
        )

    def spawn(
        self, coro: Coroutine[Any, Any, None], *, name: str, owner: int | None = None
    ) -> None:
        """Run `coro` in the background; kept until done, its failure logged."""
        self.tasks.spawn(coro, name, owner=owner)

    def stop_watching(self, owner: int) -> None:
        """Stop following the jobs of a user whose data was just erased.

        Their jobs were stopped without a last update, so nothing else ends the watch.
        """
        self.tasks.cancel_owned(owner)
