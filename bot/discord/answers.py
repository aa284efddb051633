"""Answering one interaction: acknowledged at once, then edited; never left unanswered.

Discord drops an interaction that gets no callback within 3 seconds ("The application did
not respond"), so every handler runs inside `answering`, which defers before any work,
and turns any failure into a short, polite message only the user sees.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord

from bot.core import BoothError
from bot.discord.texts import SORRY, clip

__all__ = ["TOKEN_LIFETIME", "Answer", "answering", "refuse"]

_log = logging.getLogger(__name__)

# An interaction token lives 15 minutes; stop using it a little before, to be safe.
TOKEN_LIFETIME = 15 * 60.0 - 60.0
# Discord's codes for a token or a message that is gone.
_GONE = (10015, 10008, 10062, 50027)


class Answer:
    """The deferred answer of one interaction, and how long its token may still be used."""

    def __init__(self, interaction: discord.Interaction[Any], lifetime: float) -> None:
        self.interaction = interaction
        self.received = time.monotonic()
        self.lifetime = lifetime
        # A button that only acknowledged ("update"): its answers are follow-ups.
        self.update = False
        self.token_dead = False
        # The message the interaction answers with (its "original response").
        self.message_id: int | None = None

    @property
    def fresh(self) -> bool:
        """Whether the interaction token may still be used."""
        return not self.token_dead and time.monotonic() - self.received < self.lifetime

    async def defer(self, *, update: bool = False, ephemeral: bool = True) -> None:
        if self.interaction.response.is_done():
            return
        self.update = update
        if update:
            response = await self.interaction.response.defer()
        else:
            response = await self.interaction.response.defer(ephemeral=ephemeral, thinking=True)
        if response is not None:
            self.message_id = response.message_id

    async def show(
        self,
        content: str,
        *,
        files: Sequence[discord.File] | None = None,
        view: discord.ui.View | None = None,
    ) -> bool:
        """Put `content` in the interaction's message; False once the token is gone."""
        if not self.fresh:
            return False
        try:
            if files is None:
                await self.interaction.edit_original_response(content=clip(content), view=view)
            else:
                await self.interaction.edit_original_response(
                    content=clip(content), attachments=list(files), view=view
                )
        except discord.HTTPException as exc:
            return self._lost(exc)
        return True

    async def send(
        self,
        content: str,
        *,
        files: Sequence[discord.File] = (),
        view: discord.ui.View | None = None,
        ephemeral: bool = True,
    ) -> discord.WebhookMessage | None:
        """A follow-up message; None once the token is gone."""
        if not self.fresh:
            return None
        try:
            if view is None:
                return await self.interaction.followup.send(
                    clip(content), files=list(files), ephemeral=ephemeral, wait=True
                )
            return await self.interaction.followup.send(
                clip(content), files=list(files), view=view, ephemeral=ephemeral, wait=True
            )
        except discord.HTTPException as exc:
            self._lost(exc)
            return None

    async def fail(self, message: str) -> None:
        """A short message only the user sees, whatever state the interaction is in."""
        try:
            if not self.interaction.response.is_done():
                await self.interaction.response.send_message(clip(message), ephemeral=True)
            elif self.update:
                await self.send(message, ephemeral=True)
            else:
                await self.show(message, files=[], view=None)
        except discord.HTTPException:
            _log.warning(
                "interaction %s: the error message could not be shown", self.interaction.id
            )

    def _lost(self, exc: discord.HTTPException) -> bool:
        if exc.code in _GONE or exc.status == 401:
            self.token_dead = exc.code != 10008
            _log.info("interaction %s: its message or token is gone", self.interaction.id)
            return False
        raise exc


async def answering(
    interaction: discord.Interaction[Any],
    work: Callable[[Answer], Awaitable[None]],
    *,
    lifetime: float = TOKEN_LIFETIME,
    update: bool = False,
    ephemeral: bool = True,
) -> Answer:
    """Defer `interaction` at once, then run `work`; failures become polite messages."""
    answer = Answer(interaction, lifetime)
    try:
        await answer.defer(update=update, ephemeral=ephemeral)
        await work(answer)
    except BoothError as exc:
        await answer.fail(str(exc))
    except discord.HTTPException as exc:
        _log.warning("interaction %s: Discord refused a request: %s", interaction.id, exc)
        await answer.fail(SORRY)
    except Exception:
        _log.exception("interaction %s failed", interaction.id)
        await answer.fail(SORRY)
    return answer


async def refuse(interaction: discord.Interaction[Any], message: str) -> None:
    """Turn an interaction down at once, ephemerally (a button that is not theirs)."""
    try:
        await interaction.response.send_message(clip(message), ephemeral=True)
    except discord.HTTPException:
        _log.warning("interaction %s: the refusal could not be sent", interaction.id)
