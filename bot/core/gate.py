"""Who may act now: the user's command rate, their consent to the current text, a ban.

Every request of the core passes here first, so the checks are made in one order
everywhere: the command rate (unknown users too), then consent, then a ban.
"""

from __future__ import annotations

from bot.core.consent import ConsentText
from bot.core.moderation import Moderation
from bot.core.types import ConsentRequired, Identity
from storage import ports
from storage.records import User

__all__ = ["Gate"]


class Gate:
    def __init__(
        self, repo: ports.Repository, moderation: Moderation, consent_text: ConsentText
    ) -> None:
        self.repo = repo
        self.moderation = moderation
        self.consent_text = consent_text

    def take_command(self, who: Identity) -> None:
        """Count one command against the user's rate; Throttled when they are over it."""
        self.moderation.take_command(f"{who.platform}:{who.user_id}")

    async def consenting_user(self, who: Identity) -> User:
        """The user, if they may act now: within their command rate, consenting, not banned."""
        self.take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None or not await self.consent_is_current(user):
            raise ConsentRequired(_consent_prompt(user))
        self.moderation.check_not_banned(user)
        return user

    async def consent_is_current(self, user: User) -> bool:
        consent = await self.repo.active_consent(user.id)
        return consent is not None and consent.version == self.consent_text.version


def _consent_prompt(user: User | None) -> str:
    if user is not None:
        return "The consent text has changed: read it and accept it again before uploading."
    return "Please read and accept the consent text before sending photos."
