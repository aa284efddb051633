"""The slash commands: their names, options and descriptions, each handed to `Actions`.

Option ranges, choices and defaults come from the job contract (engine.jobs), so
Discord's form shows what the core will accept; the core still checks.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import Choice, Range

from bot.config import ConfigError
from bot.core import ImagineRequest
from bot.core.exports import EXPORT_FORMATS
from bot.core.masks import REGIONS
from bot.core.options import OptionError, parse_styles
from bot.discord.actions import Actions
from bot.discord.answers import refuse
from bot.discord.texts import SORRY
from engine import jobs, limits
from engine.jobs import StyleRef

__all__ = ["admin_permissions", "register"]

_log = logging.getLogger(__name__)

_ASPECTS = [Choice(name=name, value=name) for name in limits.ASPECT_RATIOS]
_Interaction = discord.Interaction[Any]
_Photo = discord.Attachment | None
_Strength = Range[float, jobs.STRENGTH.low, jobs.STRENGTH.high]


async def _styles(interaction: _Interaction, style: str) -> tuple[StyleRef, ...] | None:
    """The `style` option in the shared syntax (bot.core.options; the core looks the names
    up), or None once the user was told why it cannot be read."""
    try:
        return parse_styles(style) if style.strip() else ()
    except OptionError as exc:
        await refuse(interaction, str(exc))
        return None


def _chosen(interaction: _Interaction, strength: float | None) -> set[str]:
    """The request fields the user set: an aspect ratio they chose is kept over a
    picture's own, and steps and guidance they chose over the model's defaults."""
    data: dict[str, Any] = dict(interaction.data or {})
    given = {str(option.get("name")) for option in data.get("options", [])}
    chosen = given & {"aspect_ratio", "steps", "guidance"}
    if strength is not None:
        chosen.add("strength")
    return chosen


def admin_permissions(name: str) -> discord.Permissions:
    """discord.admin_permission from the config, as Discord permissions."""
    if name not in discord.Permissions.VALID_FLAGS:
        allowed = ", ".join(sorted(discord.Permissions.VALID_FLAGS))
        raise ConfigError(
            f"discord.admin_permission = {name!r} is not a Discord permission; one of {allowed}"
        )
    return discord.Permissions(**{name: True})


def register(tree: app_commands.CommandTree[Any], actions: Actions, admin_permission: str) -> None:
    """Add every command to `tree`."""

    @tree.command(name="consent", description="Read what happens to your photos, then accept")
    async def consent(interaction: _Interaction) -> None:
        await actions.consent(interaction)

    @tree.command(name="upload", description="Send up to 10 selfies; only you see the verdicts")
    @app_commands.describe(photo1="a selfie: only you, face clearly visible")
    async def upload(
        interaction: _Interaction,
        photo1: discord.Attachment,
        photo2: _Photo = None,
        photo3: _Photo = None,
        photo4: _Photo = None,
        photo5: _Photo = None,
        photo6: _Photo = None,
        photo7: _Photo = None,
        photo8: _Photo = None,
        photo9: _Photo = None,
        photo10: _Photo = None,
    ) -> None:
        photos = (photo1, photo2, photo3, photo4, photo5, photo6, photo7, photo8, photo9, photo10)
        await actions.upload(interaction, [p for p in photos if p is not None])

    @tree.command(name="train", description="Train your own model on your selfies")
    async def train(interaction: _Interaction) -> None:
        await actions.train(interaction)

    @tree.command(name="imagine", description="Pictures of you: say what to imagine")
    @app_commands.describe(
        prompt="what to imagine, for example: me as an astronaut",
        negative="what to keep out of the picture",
        seed="the same seed gives the same picture",
        aspect_ratio="width to height",
        steps="more steps: slower, often finer",
        count="how many pictures",
        guidance="how closely to follow the prompt",
        style="a style of the bot's library; ikea:0.7 sets its weight, two with a space",
        image="a picture of you (or with no face) to start from",
        strength="with an image: how much of it is redrawn",
        edges_from="a picture of you (or with no face) whose outlines the new one follows",
    )
    @app_commands.choices(aspect_ratio=_ASPECTS)
    async def imagine(
        interaction: _Interaction,
        prompt: Range[str, 1, limits.MAX_PROMPT_CHARS],
        negative: Range[str, 0, limits.MAX_PROMPT_CHARS] = "",
        seed: int | None = None,
        aspect_ratio: str = jobs.DEFAULT_ASPECT,
        steps: Range[int, jobs.STEPS.low, jobs.STEPS.high] = jobs.STEPS.default,
        count: Range[int, jobs.COUNT.low, jobs.COUNT.high] = jobs.COUNT.default,
        guidance: Range[float, jobs.GUIDANCE.low, jobs.GUIDANCE.high] = jobs.GUIDANCE.default,
        style: Range[str, 0, 100] = "",
        image: discord.Attachment | None = None,
        strength: _Strength | None = None,
        edges_from: discord.Attachment | None = None,
    ) -> None:
        if image is not None and edges_from is not None:
            await refuse(
                interaction, "Attach an image to redraw or one to take edges from, not both."
            )
            return
        styles = await _styles(interaction, style)
        if styles is None:
            return
        request = ImagineRequest(
            prompt,
            negative=negative,
            seed=seed,
            steps=steps,
            guidance=guidance,
            aspect_ratio=aspect_ratio,
            count=count,
            styles=styles,
            strength=jobs.STRENGTH.default if strength is None else strength,
        )
        chosen = _chosen(interaction, strength)
        if edges_from is not None:
            chosen.add("edges")
        await actions.imagine(interaction, request, image or edges_from, chosen=chosen)

    @tree.command(name="edit", description="Repaint part of a picture of you")
    @app_commands.describe(
        image="the picture of you (or with no face) to edit",
        prompt="what the repainted part shows, for example: a beach at sunset",
        region="what to repaint (or attach a mask)",
        mask="a mask picture: white where to repaint",
        seed="the same seed gives the same picture",
        strength="how much of the repainted part is redrawn",
        style="a style of the bot's library; ikea:0.7 sets its weight, two with a space",
    )
    @app_commands.choices(region=[Choice(name=r, value=r) for r in REGIONS])
    async def edit(
        interaction: _Interaction,
        image: discord.Attachment,
        prompt: Range[str, 1, limits.MAX_PROMPT_CHARS],
        region: str | None = None,
        mask: discord.Attachment | None = None,
        seed: int | None = None,
        strength: _Strength | None = None,
        style: Range[str, 0, 100] = "",
    ) -> None:
        styles = await _styles(interaction, style)
        if styles is None:
            return
        request = ImagineRequest(
            prompt,
            seed=seed,
            styles=styles,
            strength=jobs.EDIT_STRENGTH if strength is None else strength,
        )
        chosen = _chosen(interaction, strength)
        await actions.edit(interaction, request, image, region=region, mask=mask, chosen=chosen)

    @edit.autocomplete("style")
    async def styles_to_edit_with(interaction: _Interaction, current: str) -> list[Choice[str]]:
        return [Choice(name=n, value=n) for n in await actions.style_choices(current)]

    @imagine.autocomplete("style")
    async def styles_of_the_library(interaction: _Interaction, current: str) -> list[Choice[str]]:
        return [Choice(name=n, value=n) for n in await actions.style_choices(current)]

    @tree.command(name="status", description="Your photos, models and jobs")
    async def status(interaction: _Interaction) -> None:
        await actions.status(interaction)

    @tree.command(name="cancel", description="Cancel your waiting or running jobs")
    @app_commands.describe(job="only this job (default: all of yours)")
    async def cancel(interaction: _Interaction, job: int | None = None) -> None:
        await actions.cancel(interaction, job)

    @tree.command(name="mydata", description="Everything stored about you")
    async def mydata(interaction: _Interaction) -> None:
        await actions.my_data(interaction)

    @tree.command(name="export", description="Your model as a file (only you see it)")
    @app_commands.describe(format="kohya (AUTOMATIC1111, Forge, ComfyUI; the default) or diffusers")
    @app_commands.choices(
        format=[app_commands.Choice(name=name, value=name) for name in EXPORT_FORMATS]
    )
    async def export(interaction: _Interaction, format: str = "kohya") -> None:
        await actions.export(interaction, format)

    @tree.command(name="forget", description="Delete everything about you")
    async def forget(interaction: _Interaction) -> None:
        await actions.forget(interaction)

    @tree.command(name="help", description="How selfiebooth works")
    async def help_(interaction: _Interaction) -> None:
        await actions.help(interaction)

    @tree.command(name="admin", description="Moderation (admins only): admin help lists them")
    @app_commands.describe(command="for example: stats, review, ban discord:123 7d spam")
    @app_commands.default_permissions(**{admin_permission: True})
    async def admin(
        interaction: _Interaction, command: str, image: discord.Attachment | None = None
    ) -> None:
        await actions.admin(interaction, command, image)

    @admin.autocomplete("command")
    async def admin_commands(interaction: _Interaction, current: str) -> list[Choice[str]]:
        return [Choice(name=c, value=c) for c in actions.admin_choices(interaction.user, current)]

    @tree.error
    async def on_error(interaction: _Interaction, error: app_commands.AppCommandError) -> None:
        # Reached only when a command fails before its handler answers (an unknown or
        # stale command, an option Discord sent that does not convert).
        _log.warning("command failed before its handler: %s", type(error).__name__)
        if not interaction.response.is_done():
            await refuse(interaction, SORRY)
