"""What each slash command and button does: parse nothing, decide nothing, call the core,
and turn its answer into Discord messages.

Every entry point runs inside `answering`, which defers first (Discord's 3 seconds) and
turns the core's refusals into short messages only the user sees. Replies that may show
selfies, data or a model are ephemeral; finished pictures are posted for the channel.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import discord

from bot.core import BoothError, Identity, ImagineRequest, JobTicket
from bot.core.admin import ADMIN_HELP
from bot.core.captions import export_caption
from bot.core.summaries import decline_text, erasure_text
from bot.discord.answers import Answer, answering
from bot.discord.buttons import consent_view, forget_view
from bot.discord.context import DiscordContext
from bot.discord.files import fetch_uploads
from bot.discord.progress import PLATFORM, JobWatch, Place
from bot.discord.texts import (
    MAX_CONTENT,
    TOO_BIG,
    help_text,
    my_data_text,
    safe,
    status_text,
    verdicts_text,
)
from engine.intake.names import shown_name

__all__ = ["ADMIN_COMMANDS", "Actions", "identity"]

# Three backticks in an answer would end its code block early; a zero-width space breaks them.
ZERO_WIDTH_FENCE = "`\u200b``"

_log = logging.getLogger(__name__)

# The admin console's sub-commands, for autocomplete: the first word of each help line,
# and the word after a slash ("pause [REASON] / resume").
_HELP_WORDS = re.findall(r"(?:^\s+|/ )([a-z][a-z-]*)", ADMIN_HELP, re.MULTILINE)
ADMIN_COMMANDS: tuple[str, ...] = (*dict.fromkeys(_HELP_WORDS), "help")


def identity(user: discord.abc.User) -> Identity:
    return Identity(PLATFORM, str(user.id))


class Actions:
    def __init__(self, context: DiscordContext) -> None:
        self.context = context
        self.booth = context.booth

    async def _answer(
        self,
        interaction: discord.Interaction[Any],
        work: Callable[[Answer], Awaitable[None]],
        *,
        update: bool = False,
    ) -> Answer:
        return await answering(
            interaction, work, lifetime=self.context.token_lifetime, update=update
        )

    # consent and erasure -----------------------------------------------------------------

    async def consent(self, interaction: discord.Interaction[Any]) -> None:
        async def work(answer: Answer) -> None:
            text = self.booth.consent_text
            header = f"**Consent, version {safe(text.version)}**\n\n"
            body = text.text
            files = None
            if len(header) + len(body) > MAX_CONTENT:
                # The whole text goes along as a file; the message holds its beginning.
                files = [discord.File(io.BytesIO(body.encode()), "consent.md")]
                body = body[: MAX_CONTENT - len(header) - 80] + "…\n(the full text is attached)"
            await answer.show(header + body, files=files, view=consent_view(text.version))

        await self._answer(interaction, work)

    async def consent_choice(
        self, interaction: discord.Interaction[Any], accept: bool, version: str
    ) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            if accept:
                await self.booth.accept_consent(who, version)
                await answer.show(
                    f"Thank you: consent version {safe(version)} accepted. "
                    "Now send your selfies with `/upload`.",
                    view=None,
                )
            else:
                consented = await self.booth.decline(who)
                await answer.show(decline_text(consented, "`/consent`", "`/forget`"), view=None)

        await self._answer(interaction, work, update=True)

    async def forget(self, interaction: discord.Interaction[Any]) -> None:
        async def work(answer: Answer) -> None:
            await answer.show(
                "This deletes every photo, model, picture and job of yours, and cannot be "
                "undone. Are you sure?",
                view=forget_view(),
            )

        await self._answer(interaction, work)

    async def forget_choice(self, interaction: discord.Interaction[Any], confirm: bool) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            if not confirm:
                await answer.show("Nothing was deleted.", view=None)
                return
            if interaction.message is not None:
                self.booth.check_confirmation(interaction.message.created_at)
            erasure = await self.booth.forget(who)
            self.context.stop_watching(interaction.user.id)
            await answer.show(erasure_text(erasure), view=None)

        await self._answer(interaction, work, update=True)

    # selfies -----------------------------------------------------------------------------

    async def upload(
        self, interaction: discord.Interaction[Any], attachments: list[discord.Attachment]
    ) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            # The core refuses with its reasons before anything is downloaded.
            before = await self.booth.ready_to_upload(who)
            fetched = await fetch_uploads(self.booth, attachments, interaction.filesize_limit)
            verdicts = await self.booth.upload(who, fetched.uploads)
            accepted = sum(v.accepted for v in verdicts)
            after = dataclasses.replace(before, photos=before.photos + accepted)
            await answer.show(verdicts_text(fetched.merge(verdicts), after))

        await self._answer(interaction, work)

    # jobs --------------------------------------------------------------------------------

    async def train(self, interaction: discord.Interaction[Any]) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            ticket = await self.booth.train(who)
            self._watch(interaction, answer, ticket)

        await self._answer(interaction, work)

    async def imagine(
        self,
        interaction: discord.Interaction[Any],
        request: ImagineRequest,
        picture: discord.Attachment | None = None,
        *,
        chosen: Collection[str] = (),
    ) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            data = None if picture is None else await self._read(interaction, picture)
            ticket = await self.booth.imagine(who, request, data, chosen=chosen)
            self._watch(interaction, answer, ticket)

        await self._answer(interaction, work)

    async def edit(
        self,
        interaction: discord.Interaction[Any],
        request: ImagineRequest,
        picture: discord.Attachment,
        *,
        region: str | None,
        mask: discord.Attachment | None,
        chosen: Collection[str],
    ) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            data = await self._read(interaction, picture)
            drawn = None if mask is None else await self._read(interaction, mask)
            ticket = await self.booth.edit(
                who, request, data, region=region, mask=drawn, chosen=chosen
            )
            self._watch(interaction, answer, ticket)

        await self._answer(interaction, work)

    async def upscale(self, interaction: discord.Interaction[Any], job_id: int, index: int) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            self._watch(interaction, answer, await self.booth.upscale(who, job_id, index))

        await self._answer(interaction, work)

    async def _read(
        self, interaction: discord.Interaction[Any], attachment: discord.Attachment
    ) -> bytes:
        """An attached picture's bytes, unless its announced size is refused first."""
        refusal = self.booth.oversized(
            attachment.filename, attachment.size, interaction.filesize_limit
        )
        if refusal is not None:
            raise BoothError(f"{shown_name(attachment.filename)}: {refusal.reason}")
        try:
            return await attachment.read()
        except discord.HTTPException as exc:
            _log.info("an attachment could not be fetched (%s)", exc.status)
            raise BoothError(
                f"{shown_name(attachment.filename)} could not be fetched from Discord: "
                "attach it again."
            ) from None

    async def reroll(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            self._watch(interaction, answer, await self.booth.reroll(who, job_id))

        await self._answer(interaction, work)

    async def variations(
        self, interaction: discord.Interaction[Any], job_id: int, index: int
    ) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            self._watch(interaction, answer, await self.booth.variations(who, job_id, index))

        await self._answer(interaction, work)

    def _watch(
        self,
        interaction: discord.Interaction[Any],
        answer: Answer,
        ticket: JobTicket,
    ) -> None:
        place = Place(interaction.user.id, interaction.channel_id, interaction.filesize_limit)
        watch = JobWatch(self.context, ticket.job_id, ticket.kind, place, answer)
        self.context.spawn(
            watch.run(), name=f"discord-job-{ticket.job_id}", owner=interaction.user.id
        )

    async def cancel(self, interaction: discord.Interaction[Any], job_id: int | None) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            cancelled = await self.booth.cancel(who, job_id)
            await answer.show(
                f"Cancelled job(s): {', '.join(map(str, cancelled))}."
                if cancelled
                else "You have nothing waiting or running."
            )

        await self._answer(interaction, work)

    async def cancel_button(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            await self.booth.cancel(who, job_id)
            # The job's own message says "cancelled" when the engine has stopped it.

        await self._answer(interaction, work, update=True)

    # results -----------------------------------------------------------------------------

    async def send_files(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        """The pictures at full quality, as they were made (with their metadata)."""
        who = identity(interaction.user)
        limit = interaction.filesize_limit

        async def work(answer: Answer) -> None:
            images = await self.booth.job_images(who, job_id)
            files, notes = [], []
            for n, png in enumerate(images, start=1):
                if len(png) > limit:
                    size = TOO_BIG.format(size=len(png) / 1048576, limit=limit / 1048576)
                    notes.append(f"Picture {n} is {size}.")
                else:
                    files.append(
                        discord.File(io.BytesIO(png), f"selfiebooth-{job_id}-{n}-full.png")
                    )
            text = "\n".join([f"The pictures of job {job_id}, as files:", *notes])
            await answer.show(text, files=files)

        await self._answer(interaction, work)

    async def delete(self, interaction: discord.Interaction[Any]) -> None:
        async def work(answer: Answer) -> None:
            # After a deferred update, the "original response" is the message of the button.
            await interaction.delete_original_response()

        await self._answer(interaction, work, update=True)

    async def report(self, interaction: discord.Interaction[Any], job_id: int) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            item = await self.booth.report(who, job_id)
            await answer.show(f"Thank you: the admins will look at these pictures (report {item}).")

        await self._answer(interaction, work)

    # what is stored ----------------------------------------------------------------------

    async def status(self, interaction: discord.Interaction[Any]) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            await answer.show(status_text(await self.booth.status(who)))

        await self._answer(interaction, work)

    async def my_data(self, interaction: discord.Interaction[Any]) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            await answer.show(my_data_text(await self.booth.my_data(who)))

        await self._answer(interaction, work)

    async def export(self, interaction: discord.Interaction[Any], fmt: str = "kohya") -> None:
        who = identity(interaction.user)
        limit = interaction.filesize_limit

        async def work(answer: Answer) -> None:
            export = await self.booth.export(who, fmt)
            if len(export.data) > limit:
                size = TOO_BIG.format(size=len(export.data) / 1048576, limit=limit / 1048576)
                raise BoothError(f"Your model file is {size}.")
            await answer.show(
                export_caption(export),
                files=[discord.File(io.BytesIO(export.data), export.filename)],
            )

        await self._answer(interaction, work)

    async def help(self, interaction: discord.Interaction[Any]) -> None:
        async def work(answer: Answer) -> None:
            await answer.show(help_text(self.booth.config.training.min_photos))

        await self._answer(interaction, work)

    # admins ------------------------------------------------------------------------------

    async def admin(
        self,
        interaction: discord.Interaction[Any],
        command: str,
        image: discord.Attachment | None,
    ) -> None:
        who = identity(interaction.user)

        async def work(answer: Answer) -> None:
            data = None
            # Only an admin's attachment is fetched; the core refuses the others anyway.
            if image is not None and self.booth.is_admin(who):
                data = await self._read(interaction, image)
            name = image.filename if image is not None else ""
            text = await self.booth.admin_command(who, command, data, name)
            block = f"```\n{text.replace('```', ZERO_WIDTH_FENCE)}\n```"
            if len(block) <= MAX_CONTENT:
                await answer.show(block)
            else:
                await answer.show(
                    "The answer is long: it is attached.",
                    files=[discord.File(io.BytesIO(text.encode()), "admin.txt")],
                )

        await self._answer(interaction, work)

    async def style_choices(self, current: str) -> list[str]:
        """The library's styles that start with the last name typed (`ikea:0.8 gh...`),
        the names already typed kept in front."""
        typed, _, last = current.strip().lower().rpartition(" ")
        names = [n for n in await self.booth.style_names() if n.startswith(last.partition(":")[0])]
        return [f"{typed} {n}".strip() for n in names][:25]

    def admin_choices(self, user: discord.abc.User, current: str) -> list[str]:
        """Sub-commands that start with what the admin typed; nothing for anybody else."""
        if not self.booth.is_admin(identity(user)):
            return []
        word = current.strip().split(" ", 1)[0].lower()
        return [c for c in ADMIN_COMMANDS if c.startswith(word)][:25]

    async def resume(self, job_id: int, kind: str, place: Place) -> None:
        """Finish a job a previous run of the bot was following (its token is gone)."""
        await JobWatch(self.context, job_id, kind, place, None).run()
