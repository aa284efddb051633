"""Persistent buttons: each custom id carries what it acts on ("sb:reroll:<job>:<owner>"),
so a button still works after the bot restarts, with no view kept in memory.

Result buttons name their owner: only the person who asked for the pictures may use them
(the core checks ownership again); anyone may press Report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self, cast

import discord
from discord import ButtonStyle

from bot.discord.answers import refuse
from bot.discord.texts import GONE_BUTTON, NOT_YOURS

if TYPE_CHECKING:
    from bot.discord.actions import Actions

__all__ = [
    "BUTTONS",
    "consent_view",
    "forget_view",
    "is_ours",
    "progress_view",
    "results_view",
    "unknown_button",
]

_Button = discord.ui.Button[discord.ui.View]
_PREFIX = "sb:"


def _actions(interaction: discord.Interaction[Any]) -> Actions:
    return cast("Actions", interaction.client.actions)


class ConsentButton(
    discord.ui.DynamicItem[_Button], template=r"sb:consent:(?P<choice>yes|no):(?P<version>.{1,60})"
):
    def __init__(self, accept: bool, version: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Accept" if accept else "Decline",
                style=ButtonStyle.success if accept else ButtonStyle.secondary,
                custom_id=f"sb:consent:{'yes' if accept else 'no'}:{version}",
            )
        )
        self.accept, self.version = accept, version

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(match["choice"] == "yes", match["version"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).consent_choice(interaction, self.accept, self.version)


class ForgetButton(discord.ui.DynamicItem[_Button], template=r"sb:forget:(?P<choice>yes|no)"):
    def __init__(self, confirm: bool) -> None:
        super().__init__(
            discord.ui.Button(
                label="Delete everything" if confirm else "Keep my data",
                style=ButtonStyle.danger if confirm else ButtonStyle.secondary,
                custom_id=f"sb:forget:{'yes' if confirm else 'no'}",
            )
        )
        self.confirm = confirm

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(match["choice"] == "yes")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).forget_choice(interaction, self.confirm)


class CancelButton(discord.ui.DynamicItem[_Button], template=r"sb:cancel:(?P<job>\d{1,19})"):
    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Cancel", style=ButtonStyle.secondary, custom_id=f"sb:cancel:{job_id}"
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).cancel_button(interaction, self.job_id)


# The base class needs a template of its own: one that matches nothing.
class _OwnedButton(discord.ui.DynamicItem[_Button], template=r"(?!)"):
    """A result button only the owner of the job may use."""

    _action = ""
    _label = ""
    _style = ButtonStyle.secondary

    def __init__(self, job_id: int, owner: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=self._label,
                style=self._style,
                custom_id=f"sb:{self._action}:{job_id}:{owner}",
                row=1,
            )
        )
        self.job_id, self.owner = job_id, owner

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["job"]), int(match["owner"]))

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if interaction.user.id != self.owner:
            await refuse(interaction, NOT_YOURS)
            return False
        return True


class RerollButton(_OwnedButton, template=r"sb:reroll:(?P<job>\d{1,19}):(?P<owner>\d{1,20})"):
    _action, _label, _style = "reroll", "Reroll", ButtonStyle.primary

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).reroll(interaction, self.job_id)


class FileButton(_OwnedButton, template=r"sb:file:(?P<job>\d{1,19}):(?P<owner>\d{1,20})"):
    _action, _label = "file", "Send as file"

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).send_files(interaction, self.job_id)


class DeleteButton(_OwnedButton, template=r"sb:delete:(?P<job>\d{1,19}):(?P<owner>\d{1,20})"):
    _action, _label, _style = "delete", "Delete", ButtonStyle.danger

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).delete(interaction)


# The base class needs a template of its own: one that matches nothing.
class _PictureButton(discord.ui.DynamicItem[_Button], template=r"(?!)"):
    """A button about one picture of a result, for the job's owner only."""

    _action = ""
    _label = ""
    _row = 0

    def __init__(self, job_id: int, index: int, owner: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"{self._label} {index}",
                style=ButtonStyle.secondary,
                custom_id=f"sb:{self._action}:{job_id}:{index}:{owner}",
                row=self._row,
            )
        )
        self.job_id, self.index, self.owner = job_id, index, owner

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["job"]), int(match["index"]), int(match["owner"]))

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        if interaction.user.id != self.owner:
            await refuse(interaction, NOT_YOURS)
            return False
        return True


class VariationButton(
    _PictureButton, template=r"sb:vary:(?P<job>\d{1,19}):(?P<index>\d):(?P<owner>\d{1,20})"
):
    _action, _label, _row = "vary", "Variations", 0

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).variations(interaction, self.job_id, self.index)


class UpscaleButton(
    _PictureButton, template=r"sb:upscale:(?P<job>\d{1,19}):(?P<index>\d):(?P<owner>\d{1,20})"
):
    _action, _label, _row = "upscale", "Upscale", 2

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).upscale(interaction, self.job_id, self.index)


class ReportButton(discord.ui.DynamicItem[_Button], template=r"sb:report:(?P<job>\d{1,19})"):
    """Anyone who sees a picture may report it."""

    def __init__(self, job_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Report", style=ButtonStyle.secondary, custom_id=f"sb:report:{job_id}", row=1
            )
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> Self:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await _actions(interaction).report(interaction, self.job_id)


BUTTONS: tuple[type[discord.ui.DynamicItem[Any]], ...] = (
    ConsentButton,
    ForgetButton,
    CancelButton,
    RerollButton,
    FileButton,
    DeleteButton,
    VariationButton,
    UpscaleButton,
    ReportButton,
)


def is_ours(custom_id: str) -> bool:
    """Whether one of the buttons above will answer this custom id."""
    return any(button.__discord_ui_compiled_template__.fullmatch(custom_id) for button in BUTTONS)


async def unknown_button(interaction: discord.Interaction[Any]) -> None:
    """A button of ours nobody answers (an older version's): say so instead of silence."""
    data: dict[str, Any] = dict(interaction.data or {})
    custom_id = str(data.get("custom_id", ""))
    if custom_id.startswith(_PREFIX) and not is_ours(custom_id):
        await refuse(interaction, GONE_BUTTON)


def _view(*items: discord.ui.Item[Any]) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view


def consent_view(version: str) -> discord.ui.View:
    return _view(ConsentButton(True, version), ConsentButton(False, version))


def forget_view() -> discord.ui.View:
    return _view(ForgetButton(True), ForgetButton(False))


def progress_view(job_id: int) -> discord.ui.View:
    return _view(CancelButton(job_id))


def results_view(job_id: int, owner: int, count: int, actions: Sequence[str]) -> discord.ui.View:
    """The buttons of the `actions` the core allows (JobOutcome.actions), and Delete."""
    pictures = range(1, count + 1)
    return _view(
        *(VariationButton(job_id, n, owner) for n in pictures if "vary" in actions),
        *([RerollButton(job_id, owner)] if "reroll" in actions else []),
        *(UpscaleButton(job_id, n, owner) for n in pictures if "upscale" in actions),
        *([FileButton(job_id, owner)] if "file" in actions else []),
        DeleteButton(job_id, owner),
        *([ReportButton(job_id)] if "report" in actions else []),
    )
