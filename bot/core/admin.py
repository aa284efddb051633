"""Admin moderation: one set of operations for the command line, Telegram and Discord.

Every operation checks the caller first, on every call (bot.core.authorization), and
writes who did what and why to the append-only audit log; a refusal is audited too.
The console is given the services it uses (storage, the queue, moderation, erasure),
not the whole core.
`AdminConsole.run` parses one line of text ("ban telegram:42 7d spam"), so each chat
front end only passes through what the admin typed.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from bot.core.authorization import AdminAuthorization
from bot.core.dispatcher import QUEUE_PAUSED, Dispatcher
from bot.core.erasure import Eraser
from bot.core.moderation import Moderation, parse_duration
from bot.core.options import parse_imagine
from bot.core.signin import LINK_LIFETIME, SignIn
from bot.core.styles import StyleLibrary
from bot.core.types import BoothError, Identity
from engine.jobs import STYLE_WEIGHT, ImagineRequest
from engine.safety import BLOCKLIST_GROUPS, PromptFilter
from storage import ports
from storage.figures import FigureRows
from storage.records import (
    AuditEntry,
    ConsentRecord,
    JobRecord,
    LoraRecord,
    PhotoRecord,
    ReviewItem,
    StyleRecord,
    User,
)

__all__ = [
    "ADMIN_HELP",
    "AdminConsole",
    "QueueView",
    "Stats",
    "UserProfile",
    "describe_review_item",
]

DECISIONS = ("approve", "reject", "ban")

ADMIN_HELP = """\
Admin commands (USER is #17, telegram:123 or discord:456):
  ban USER [30m|12h|7d|2w] REASON   ban, for a time or until lifted
  unban USER REASON                 lift a ban or suspension
  purge USER REASON                 erase everything of a user
  review                            the open review queue
  review approve|reject|ban ITEM [REASON]
  quota USER [images=N] [trainings=N]
  pause [REASON] / resume           hold or restart the job queue
  stats                             queue, throughput, failures, times
  blocklist [list]
  blocklist add|remove GROUP TERM   GROUP: a category (minors, sexual, self-harm,
                                    violence, hate, public-figure) or minor, sport,
                                    fiction, awareness, medical, history, safe, undressing
  check-prompt TEXT [--no ...]      the filter's verdict, read as /imagine reads it
  trace                             read the watermark and C2PA credentials of an image
  audit [N]                         the last N audit log entries
  style list                        the style library
  style add NAME [--weight W] [--trigger WORDS] [--family F]
                                    with the style LoRA (.safetensors) attached;
                                    on the command line: style add NAME FILE ...
  style remove NAME
  web                               a one-time sign-in link to the web console (5 min)"""

_USER_REF = re.compile(r"#?(\d+)|(telegram|discord|cli):(\S+)")
_DURATION = re.compile(r"\d+[mhdw]", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class UserProfile:
    """What an admin sees of one user (the web console's user page)."""

    user: User
    consent: ConsentRecord | None
    photos: list[PhotoRecord]
    loras: list[LoraRecord]
    jobs: list[JobRecord]
    strikes: int
    images_per_day: int
    trainings_per_week: int


@dataclass(frozen=True, slots=True)
class QueueView:
    paused: str | None  # the reason, while paused
    running: list[JobRecord]
    queued: list[JobRecord]  # in the order they will run


@dataclass(frozen=True, slots=True)
class Stats:
    queued: int
    running: int
    paused: str | None
    finished_last_hour: int
    failed_last_day: int
    average_seconds: dict[str, float]
    users: int
    open_reviews: int


class AdminConsole:
    def __init__(
        self,
        repo: ports.Repository,
        jobs: ports.JobQueue,
        moderation: Moderation,
        eraser: Eraser,
        authorization: AdminAuthorization,
        dispatcher: Dispatcher | None = None,
        styles: StyleLibrary | None = None,
        signin: SignIn | None = None,
    ) -> None:
        self.repo = repo
        self.jobs = jobs
        self.moderation = moderation
        self.eraser = eraser
        self.authorization = authorization
        # None where this process only queues jobs: a resume then reaches the dispatcher
        # of another process through the database, within its polling interval.
        self.dispatcher = dispatcher
        # None where this console manages no style library (the moderation-only tests).
        self.styles = styles
        # The web console's sign-in links (bot.web); None where there is no database.
        self.signin = signin

    async def authorize(self, actor: Identity, operation: str) -> str:
        """The actor's name for the audit log, or NotAuthorized (audited) for a non-admin."""
        return await self.authorization.authorize(actor, operation)

    async def user(self, ref: str) -> User:
        match = _USER_REF.fullmatch(ref.strip())
        user = None
        if match and match[1]:
            user = await self.repo.get_user(int(match[1]))
        elif match:
            user = await self.repo.find_user(match[2], match[3])
        else:
            raise BoothError(f"{ref!r} is not a user: write #17, telegram:123 or discord:456.")
        if user is None:
            raise BoothError(f"There is no user {ref} (never registered, or erased).")
        return user

    # bans and erasure --------------------------------------------------------------------

    async def ban(
        self, actor: Identity, ref: str, reason: str, duration: timedelta | None = None
    ) -> str:
        name = await self.authorize(actor, "ban")
        reason = _required(reason, "ban")
        user = await self.user(ref)
        until = await self.moderation.ban(user.id, reason, duration)
        await self.repo.audit(
            name, "admin.ban", {"user": user.id, "reason": reason, "until": until}
        )
        for job in await self.repo.jobs(user.id):
            if job.status == "queued":
                await self.jobs.finish(job.id, "cancelled", error="the user was banned")
        return f"User #{user.id} is banned {f'until {until} UTC' if until else 'until lifted'}."

    async def unban(self, actor: Identity, ref: str, reason: str) -> str:
        name = await self.authorize(actor, "unban")
        reason = _required(reason, "unban")
        user = await self.user(ref)
        lifted = await self.moderation.unban(user.id)
        await self.repo.audit(name, "admin.unban", {"user": user.id, "reason": reason})
        return f"User #{user.id} {'may use the bot again' if lifted else 'was not banned'}."

    async def purge(self, actor: Identity, ref: str, reason: str) -> str:
        name = await self.authorize(actor, "purge")
        reason = _required(reason, "purge")
        user = await self.user(ref)
        erasure = await self.eraser.erase(user, action="user.purged")
        await self.repo.audit(name, "admin.purge", {"user": user.id, "reason": reason})
        return (
            f"User #{user.id} purged: {erasure.photos} photo(s), {erasure.loras} model(s), "
            f"{erasure.jobs} job(s), {erasure.files} file(s)."
        )

    # review queue ------------------------------------------------------------------------

    async def review_queue(self, actor: Identity, limit: int = 20) -> list[ReviewItem]:
        await self.authorize(actor, "review")
        return await self.repo.review_items("open", limit)

    async def decide(self, actor: Identity, item_id: int, decision: str, reason: str = "") -> str:
        """approve: nothing wrong; reject: the content is removed; ban: reject, ban its maker."""
        name = await self.authorize(actor, "review")
        if decision not in DECISIONS:
            raise BoothError(f"Decide with one of {', '.join(DECISIONS)}, not {decision!r}.")
        item = await self.repo.review_item(item_id)
        if item is None or item.status != "open":
            raise BoothError(f"There is no open review item {item_id}.")
        status = {"approve": "approved", "reject": "rejected", "ban": "banned"}[decision]
        await self.repo.resolve_review_item(item.id, status, name)
        removed = 0
        if decision != "approve":
            removed = await self.eraser.withdraw_review_content(item)
        if decision == "ban":
            await self.moderation.ban(item.user_id, reason or f"review item {item.id}", None)
        lifted = decision == "approve" and await self._lift_automatic_suspension(item.user_id)
        await self.repo.audit(
            name,
            f"admin.review.{decision}",
            {"item": item.id, "kind": item.kind, "user": item.user_id, "reason": reason},
        )
        parts = [f"Review item {item.id} {status}."]
        if removed:
            parts.append(f"{removed} image(s) removed.")
        if decision == "ban":
            parts.append(f"User #{item.user_id} banned until lifted.")
        if lifted:
            parts.append(f"User #{item.user_id}'s automatic suspension lifted.")
        return " ".join(parts)

    async def _lift_automatic_suspension(self, user_id: int) -> bool:
        """An automatic suspension waits for review: it ends when no refused prompt is left."""
        user = await self.user(f"#{user_id}")
        if not (user.ban_reason or "").startswith("automatic"):
            return False
        if await self.repo.has_open_review(user_id, "prompt"):
            return False
        return await self.moderation.unban(user_id)

    # quotas and the queue ----------------------------------------------------------------

    async def quota(
        self,
        actor: Identity,
        ref: str,
        images_per_day: int | None = None,
        trainings_per_week: int | None = None,
    ) -> str:
        name = await self.authorize(actor, "quota")
        user = await self.user(ref)
        for value in (images_per_day, trainings_per_week):
            if value is not None and not 0 <= value <= 100_000:
                raise BoothError(f"A quota is 0 to 100000, not {value}.")
        if images_per_day is not None or trainings_per_week is not None:
            await self.moderation.set_quotas(user.id, images_per_day, trainings_per_week)
            await self.repo.audit(
                name,
                "admin.quota",
                {
                    "user": user.id,
                    "images_per_day": images_per_day,
                    "trainings_per_week": trainings_per_week,
                },
            )
            user = await self.user(f"#{user.id}")
        quotas = self.moderation.quotas(user)
        return (
            f"User #{user.id}: {quotas.images_per_day} images a day, "
            f"{quotas.trainings_per_week} training(s) a week."
        )

    async def pause(self, actor: Identity, reason: str = "") -> str:
        name = await self.authorize(actor, "pause")
        await self.repo.set_setting(QUEUE_PAUSED, reason or "paused by an admin")
        await self.repo.audit(name, "admin.pause", {"reason": reason})
        return "The queue is paused: queued jobs wait, a running job finishes."

    async def resume(self, actor: Identity, reason: str = "") -> str:
        name = await self.authorize(actor, "resume")
        await self.repo.set_setting(QUEUE_PAUSED, None)
        await self.repo.audit(name, "admin.resume", {"reason": reason})
        if self.dispatcher is not None:
            self.dispatcher.wake()
        return "The queue runs again."

    async def stats(self, actor: Identity) -> Stats:
        await self.authorize(actor, "stats")
        figures = await self.repo.service_stats()
        return Stats(
            queued=figures.queued,
            running=figures.running,
            paused=await self.repo.setting(QUEUE_PAUSED),
            finished_last_hour=figures.finished_last_hour,
            failed_last_day=figures.failed_last_day,
            average_seconds=figures.average_seconds,
            users=figures.users,
            open_reviews=figures.open_reviews,
        )

    # the prompt filter -------------------------------------------------------------------

    async def blocklist_add(self, actor: Identity, category: str, term: str) -> str:
        return await self._set_term(actor, category, term, removed=False)

    async def blocklist_remove(self, actor: Identity, category: str, term: str) -> str:
        return await self._set_term(actor, category, term, removed=True)

    async def _set_term(self, actor: Identity, category: str, term: str, *, removed: bool) -> str:
        name = await self.authorize(actor, "blocklist")
        if category not in BLOCKLIST_GROUPS:
            raise BoothError(
                f"Unknown category {category!r}; one of {', '.join(BLOCKLIST_GROUPS)}."
            )
        term = " ".join(term.split()).casefold()
        if not term or len(term) > 100:
            raise BoothError("A term is 1 to 100 characters.")
        if category == "safe" and not removed and PromptFilter.hides_hard_term(term):
            raise BoothError(
                f"{term!r} holds a term of a hard category (sexual, minors): a safe phrase "
                "cannot lift those."
            )
        await self.moderation.set_term(term, category, removed=removed, by=name)
        action = "admin.blocklist.remove" if removed else "admin.blocklist.add"
        await self.repo.audit(name, action, {"term": term, "category": category})
        if removed:
            return f"{term!r} is no longer blocked as {category} (hard categories keep theirs)."
        return f"{term!r} is blocked as {category}."

    async def blocklist(self, actor: Identity) -> list[tuple[str, str, bool]]:
        await self.authorize(actor, "blocklist")
        return await self.moderation.terms()

    async def check_prompt(self, actor: Identity, text: str, negative: str = "") -> str:
        """The filter's verdict on `text` read as /imagine reads it (`--no`, `--style`...)."""
        await self.authorize(actor, "check-prompt")
        request = parse_imagine(text)
        negatives = [n for n in (request.negative, negative) if n]
        verdict = (await self.moderation.current_filter()).check(
            request.prompt, ", ".join(negatives)
        )
        if verdict.allowed:
            return "allowed"
        field = "negative prompt" if verdict.field == "negative" else "prompt"
        return f"refused: {verdict.category} (in the {field}, by the {verdict.layer})"

    async def review_decisions(self, actor: Identity) -> list[tuple[str, str]]:
        """The decided refused prompts as (label, text), to retrain the classifier with:
        an approved one was harmless ("allow"), a rejected one keeps its category."""
        await self.authorize(actor, "review-decisions")
        decided: list[tuple[str, str]] = []
        for status in ("approved", "rejected", "banned"):
            for item in await self.repo.review_items(status, 1_000_000):
                detail = json.loads(item.detail) if item.kind == "prompt" else {}
                text = " ".join(str(detail.get("prompt", "")).split())
                if not text:
                    continue
                if detail.get("negative"):
                    text += " --no " + " ".join(str(detail["negative"]).split())
                label = "allow" if status == "approved" else str(detail.get("category"))
                decided.append((label, text))
        return decided

    # the style library -------------------------------------------------------------------

    async def style_add(
        self,
        actor: Identity,
        name: str,
        source: Path | bytes,
        *,
        filename: str = "",
        weight: float | None = None,
        trigger: str = "",
        family: str | None = None,
    ) -> str:
        """Add a style LoRA from a local file (the command line) or a chat's attachment."""
        who = await self.authorize(actor, "style")
        library = self._library()
        if isinstance(source, Path):
            style = await library.add(
                name, source, added_by=who, weight=weight, trigger=trigger, family=family
            )
        else:
            style = await library.add_bytes(
                name,
                source,
                filename or "attachment",
                added_by=who,
                weight=weight,
                trigger=trigger,
                family=family,
            )
        await self.repo.audit(
            who,
            "admin.style.add",
            {"style": style.name, "sha256": style.sha256, "weight": style.weight},
        )
        return f"Style {style.name!r} added: {format_style(style)}. Use it: --style {style.name}"

    async def style_remove(self, actor: Identity, name: str) -> str:
        who = await self.authorize(actor, "style")
        style = await self._library().remove(name)
        await self.repo.audit(who, "admin.style.remove", {"style": style.name})
        return f"Style {style.name!r} removed."

    async def style_records(self, actor: Identity) -> list[StyleRecord]:
        await self.authorize(actor, "style")
        return await self._library().styles()

    async def style_list(self, actor: Identity) -> str:
        styles = await self.style_records(actor)
        if not styles:
            return "The style library is empty: add one with style add NAME (file attached)."
        return "\n".join(f"{style.name}: {format_style(style)}" for style in styles)

    def _library(self) -> StyleLibrary:
        if self.styles is None:
            raise BoothError("This console has no style library.")
        return self.styles

    async def _style_command(
        self,
        actor: Identity,
        args: list[str],
        attachment: bytes | None,
        *,
        filename: str,
        local_files: bool,
    ) -> str:
        action = args[0].lower() if args else "list"
        if action == "list":
            return await self.style_list(actor)
        if action == "remove" and len(args) == 2:
            return await self.style_remove(actor, args[1])
        if action != "add" or len(args) < 2:
            raise BoothError("Write: style list | style add NAME ... | style remove NAME")
        words, values = _style_options(args[2:])
        name = args[1]
        source: Path | bytes
        if len(words) > 1:
            raise BoothError(f"style add takes one file, not {' '.join(words)!r}.")
        local = bool(words) and local_files and await asyncio.to_thread(Path(words[0]).is_file)
        if attachment is not None and not words:
            source = attachment
        elif local:
            source = Path(words[0])
        elif words and _HUB_ID.fullmatch(words[0]):
            raise BoothError(
                f"{words[0]!r} looks like a hub id, but this booth does not download from the "
                "hub: download the LoRA's .safetensors file and add that."
            )
        elif words and local_files:
            raise BoothError(f"There is no file {words[0]!r}.")
        else:
            raise BoothError(
                f"Attach the style's .safetensors file to: style add {name} [--weight W] "
                "[--trigger WORDS]"
            )
        weight = values.get("weight")
        return await self.style_add(
            actor,
            name,
            source,
            filename=filename,
            weight=_weight(weight) if weight is not None else None,
            trigger=values.get("trigger", ""),
            family=values.get("family"),
        )

    # provenance and the log --------------------------------------------------------------

    async def trace(self, actor: Identity, image: bytes) -> str:
        """Read an image's two machine-readable marks, the invisible watermark and the
        C2PA Content Credentials, say what each holds, and name the job, its user and
        its time."""
        name = await self.authorize(actor, "trace")
        from engine.provenance import read_job_id
        from engine.provenance.credentials import read_credentials

        marked, credentials = await asyncio.gather(
            asyncio.to_thread(read_job_id, image), asyncio.to_thread(read_credentials, image)
        )
        await self.repo.audit(name, "admin.trace", {"job": marked, "c2pa": credentials.state})
        signed = credentials.job_id if credentials.state in ("valid", "trusted") else None
        lines = [
            f"Watermark: job {marked}." if marked is not None else "Watermark: none found.",
            credentials.describe(),
        ]
        if None not in (marked, signed) and marked != signed:
            lines.append("The two marks name different jobs: the picture was tampered with.")
        job_id = marked if marked is not None else signed
        if job_id is not None:
            job = await self.jobs.get(job_id)
            if job is None:
                lines.append(f"Job {job_id} is gone (its user was erased).")
            else:
                user = await self.user(f"#{job.user_id}")
                request = job.request()
                prompt = request.prompt if isinstance(request, ImagineRequest) else ""
                lines.append(
                    f"Job {job_id} was made by user #{user.id} "
                    f"({user.platform}:{user.platform_user_id}) at {job.created_at[:19]} UTC, "
                    f"prompt {prompt!r}."
                )
        return "\n".join(lines)

    async def web_link(self, actor: Identity) -> str:
        """A one-time link that signs `actor` in to the web console, in words."""
        if self.signin is None:
            raise BoothError("This bot has no web console: set web.listen in its config.")
        url = await self.signin.link(actor)
        return (
            f"Sign in to the web console: {url}\n"
            f"It works once, within {LINK_LIFETIME.seconds // 60} minutes. Keep it to "
            "yourself: whoever opens it first is signed in as you."
        )

    async def audit_log(
        self,
        actor: Identity,
        limit: int = 20,
        *,
        before: int | None = None,
        by: str = "",
        action: str = "",
        user: int | None = None,
    ) -> list[AuditEntry]:
        """The audit log, newest first, a page of `limit` entries older than `before`,
        filtered by admin (`by`), action prefix and user where given."""
        await self.authorize(actor, "audit")
        return await self.repo.audit_entries(
            max(1, min(limit, 500)), before=before, actor=by, action=action, user=user
        )

    async def profile(self, actor: Identity, ref: str) -> UserProfile:
        """Everything an admin may see of user `ref`, as records (photos without bytes)."""
        await self.authorize(actor, "user")
        user = await self.user(ref)
        quotas = self.moderation.quotas(user)
        return UserProfile(
            user,
            await self.repo.active_consent(user.id),
            await self.repo.photos(user.id),
            await self.repo.loras(user.id),
            await self.repo.jobs(user.id),
            await self.repo.strike_count(user.id),
            quotas.images_per_day,
            quotas.trainings_per_week,
        )

    async def photo(self, actor: Identity, ref: str, photo_id: int) -> bytes:
        """The cleaned face crop of one of user `ref`'s photos, opened on purpose by an
        admin: each look is audited."""
        name = await self.authorize(actor, "user.photo")
        user = await self.user(ref)
        photo = next((p for p in await self.repo.photos(user.id) if p.id == photo_id), None)
        if photo is None:
            raise BoothError(f"User #{user.id} has no photo {photo_id}.")
        await self.repo.audit(name, "admin.user.photo", {"user": user.id, "photo": photo_id})
        return await self.eraser.blobs.get(photo.crop_blob)

    async def figures(self, actor: Identity, since: str) -> FigureRows:
        """The rows the console's figures are drawn from, since `since` (ISO 8601)."""
        await self.authorize(actor, "figures")
        return await self.repo.figure_rows(since)

    async def queue_view(self, actor: Identity) -> QueueView:
        """What the queue holds: whether it is paused, the running jobs, and the queued
        ones in the order they will run."""
        await self.authorize(actor, "queue")
        paused = await self.repo.setting(QUEUE_PAUSED)
        return QueueView(paused, await self.jobs.running(), await self.jobs.queued())

    # one line of text, for the chat front ends -------------------------------------------

    async def run(
        self,
        actor: Identity,
        text: str,
        image: bytes | None = None,
        *,
        filename: str = "",
        local_files: bool = False,
    ) -> str:
        """Parse and run one admin command line; the answer is text for the chat. `image` is
        the chat's attachment (named `filename`); `local_files` (the command line only)
        lets a command read a file of this machine named in the text (style add)."""
        await self.authorize(actor, "console")
        try:
            words = shlex.split(text)
        except ValueError:
            words = text.split()
        if not words or words[0] == "help":
            return ADMIN_HELP
        command, args = words[0].lower(), words[1:]
        if command in ("ban", "unban", "purge", "quota") and not args:
            raise BoothError(f"Say which user: admin {command} USER ...")
        if command == "ban":
            duration = None
            if len(args) > 1 and _DURATION.fullmatch(args[1]):
                duration = _duration(args.pop(1))
            return await self.ban(actor, args[0], " ".join(args[1:]), duration)
        if command == "unban":
            return await self.unban(actor, args[0], " ".join(args[1:]))
        if command == "purge":
            return await self.purge(actor, args[0], " ".join(args[1:]))
        if command == "review":
            if not args:
                return format_review(await self.review_queue(actor))
            if len(args) < 2 or not args[1].isdigit():
                raise BoothError("Write: review approve|reject|ban ITEM [REASON]")
            return await self.decide(actor, int(args[1]), args[0].lower(), " ".join(args[2:]))
        if command == "quota":
            values = dict(_key_value(a) for a in args[1:])
            return await self.quota(actor, args[0], values.get("images"), values.get("trainings"))
        if command == "pause":
            return await self.pause(actor, " ".join(args))
        if command == "resume":
            return await self.resume(actor, " ".join(args))
        if command == "stats":
            return format_stats(await self.stats(actor))
        if command == "blocklist":
            if not args or args[0] == "list":
                return format_terms(await self.blocklist(actor))
            if args[0] in ("add", "remove") and len(args) >= 3:
                change = self.blocklist_add if args[0] == "add" else self.blocklist_remove
                return await change(actor, args[1], " ".join(args[2:]))
            raise BoothError("Write: blocklist add|remove CATEGORY TERM")
        if command == "check-prompt":
            return await self.check_prompt(actor, " ".join(args))
        if command == "trace":
            if image is None:
                raise BoothError("Attach the image to trace to the command.")
            return await self.trace(actor, image)
        if command == "style":
            return await self._style_command(
                actor, args, image, filename=filename, local_files=local_files
            )
        if command == "audit":
            limit = int(args[0]) if args and args[0].isdigit() else 20
            return format_audit(await self.audit_log(actor, limit))
        if command in ("web", "web-link"):
            return await self.web_link(actor)
        raise BoothError(f"There is no admin command {command!r}. Try: admin help")


_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def _style_options(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """The words of `style add NAME ...` that are no option, and the options' values
    (--trigger takes the words up to the next option, the others one word)."""
    words: list[str] = []
    values: dict[str, str] = {}
    option = None
    for arg in args:
        if arg.startswith("--"):
            option = arg[2:].lower()
            if option not in ("weight", "trigger", "family"):
                raise BoothError(f"style add has no option {arg!r}: --weight, --trigger, --family.")
            if option in values:
                raise BoothError(f"{arg} is given twice.")
            values[option] = ""
        elif option is not None and (option == "trigger" or not values[option]):
            values[option] = f"{values[option]} {arg}".strip()
        else:
            words.append(arg)
            option = None
    for key, value in values.items():
        if not value:
            raise BoothError(f"--{key} needs a value.")
    return words, values


def _weight(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if value != value:
        raise BoothError(f"--weight needs a number {STYLE_WEIGHT.range}, not {raw!r}.")
    return value


def format_style(style: StyleRecord) -> str:
    trigger = f", trigger words {style.trigger!r}" if style.trigger else ""
    return f"weight {style.weight:g}{trigger}, for {style.family}, added by {style.added_by}"


def _required(reason: str, what: str) -> str:
    reason = " ".join(reason.split())
    if not reason:
        raise BoothError(f"Say why: admin {what} USER ... REASON (it goes to the audit log).")
    return reason[:500]


def _duration(text: str) -> timedelta:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BoothError(str(exc)) from None


def _key_value(arg: str) -> tuple[str, int]:
    key, _, value = arg.partition("=")
    if key not in ("images", "trainings") or not value.isdigit():
        raise BoothError(f"{arg!r}: write images=N or trainings=N.")
    return key, int(value)


def format_review(items: list[ReviewItem]) -> str:
    if not items:
        return "The review queue is empty."
    return "\n".join(
        f"{item.id}. user #{item.user_id}, {item.created_at[:16]}: {describe_review_item(item)}"
        for item in items
    )


def describe_review_item(item: ReviewItem) -> str:
    """What a review item is about, in words (the chats and the web console)."""
    detail = json.loads(item.detail)
    if item.kind == "prompt":
        return f"prompt refused as {detail.get('category')}: {detail.get('prompt', '')!r}"
    if item.kind == "image":
        why = detail.get("reason") or ", ".join(detail.get("classes", []))
        if "other_user" in detail:
            why += f": user #{detail['other_user']}, distance {detail.get('distance')}"
        return f"image blocked ({why}) from {detail.get('source', 'a generation')}"
    return f"report of job {item.job_id}: {detail.get('note') or 'no note'}"


def format_stats(stats: Stats) -> str:
    averages = ", ".join(f"{k} {v:g} s" for k, v in sorted(stats.average_seconds.items()))
    return "\n".join(
        [
            f"queue: {stats.queued} waiting, {stats.running} running"
            + (f" (paused: {stats.paused})" if stats.paused else ""),
            f"finished in the last hour: {stats.finished_last_hour}",
            f"failed in the last day: {stats.failed_last_day}",
            f"average run time, last day: {averages or 'no jobs'}",
            f"users: {stats.users}; open review items: {stats.open_reviews}",
        ]
    )


def format_terms(terms: list[tuple[str, str, bool]]) -> str:
    if not terms:
        return "No admin changes to the shipped lists."
    return "\n".join(
        f"{category}: {'-' if removed else '+'} {term}" for term, category, removed in terms
    )


def format_audit(entries: list[Any]) -> str:
    if not entries:
        return "The audit log is empty."
    return "\n".join(f"{e.at[:19]} {e.actor} {e.action} {e.detail}" for e in entries)
