"""Who is an admin: the Telegram and Discord user ids in the config, and the local command
line (the operator). Every admin operation asks here, on every call; `selfiebooth run`
reads the admin lists again when the config file changes (`follow`).

A refusal goes to the audit log naming the caller by internal number only, so that
erasing them later leaves nothing in the append-only log that points back to them.
"""

from __future__ import annotations

import dataclasses

from bot.config import Config
from bot.core.types import Identity, NotAuthorized
from storage import ports

__all__ = ["AdminAuthorization", "is_admin"]


def is_admin(config: Config, who: Identity) -> bool:
    """Admins are named in the config per platform; the local command line is the operator."""
    if who.platform == "cli":
        return True
    if who.platform == "telegram":
        return who.user_id in config.telegram.admin_ids
    if who.platform == "discord":
        return who.user_id in config.discord.admin_ids
    return False


class AdminAuthorization:
    def __init__(self, config: Config, repo: ports.Repository) -> None:
        self.config = config
        self.repo = repo

    def is_admin(self, who: Identity) -> bool:
        return is_admin(self.config, who)

    def follow(self, config: Config) -> bool:
        """Take the admin lists of `config` (the config file, read again); whether they
        changed. An admin removed there is refused from the next call on."""
        telegram, discord = config.telegram.admin_ids, config.discord.admin_ids
        old = self.config
        if (old.telegram.admin_ids, old.discord.admin_ids) == (telegram, discord):
            return False
        self.config = dataclasses.replace(
            old,
            telegram=dataclasses.replace(old.telegram, admin_ids=telegram),
            discord=dataclasses.replace(old.discord, admin_ids=discord),
        )
        return True

    async def authorize(self, actor: Identity, operation: str) -> str:
        """The actor's name for the audit log, or NotAuthorized (audited) for a non-admin."""
        if self.is_admin(actor):
            return f"{actor.platform}:{actor.user_id}"
        user = await self.repo.find_user(actor.platform, actor.user_id)
        who = f"{actor.platform} user #{user.id}" if user else f"{actor.platform} non-user"
        await self.repo.audit(who, "admin.refused", {"operation": operation})
        raise NotAuthorized("That command is for the bot's admins only.")
