"""The facade of selfiebooth's core: one object every front end (command line, Telegram,
Discord) calls, and whose results it only translates; no rule lives in an adapter.

Booth itself keeps consent, status and the user's own data; the rest it hands on:
uploads to bot.core.uploads, training and generation to bot.core.requests, erasure to
bot.core.erasure, who may act to bot.core.gate, moderation to bot.core.moderation and
bot.core.admin.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from datetime import UTC, datetime, timedelta

from bot.config import Config
from bot.core.admin import AdminConsole
from bot.core.authorization import AdminAuthorization, is_admin
from bot.core.consent import ConsentText, load_consent_text
from bot.core.dispatcher import Dispatcher
from bot.core.erasure import Eraser
from bot.core.exports import EXPORT_FORMATS, model_file
from bot.core.gate import Gate
from bot.core.likeness import LikenessGuard
from bot.core.moderation import Moderation
from bot.core.outcomes import Outcomes
from bot.core.provenance import Provenance
from bot.core.requests import Requests
from bot.core.signin import SignIn
from bot.core.sources import Sources
from bot.core.styles import StyleLibrary
from bot.core.types import (
    BoothError,
    Erasure,
    Export,
    Identity,
    JobOutcome,
    JobTicket,
    JobUpdate,
    MyData,
    Upload,
    UserStatus,
    Verdict,
)
from bot.core.uploads import BAD_NAME, FILTER_REFUSED, Analyzed, Uploads
from engine.intake import (
    FaceAnalyzer,
)
from engine.jobs import ImagineRequest, TrainResult
from engine.models.families import resolve_family
from engine.safety import ImageFilter, PromptFilter
from storage import BlobStore, Repository
from storage.chat_messages import ChatMessages
from storage.jobs import JobQueue
from storage.records import JobRecord, LoraRecord, User
from storage.web import WebSessions

__all__ = ["BAD_NAME", "CONFIRMATION_TTL", "FILTER_REFUSED", "Booth"]

_log = logging.getLogger(__name__)

# How long a confirmation (of an erasure) can be answered: a button pressed days later
# was most likely not meant for now.
CONFIRMATION_TTL = timedelta(minutes=10)


class Booth:
    def __init__(
        self,
        config: Config,
        repo: Repository,
        blobs: BlobStore,
        analyzer: FaceAnalyzer | None = None,
        *,
        jobs: JobQueue | None = None,
        dispatcher: Dispatcher | None = None,
        likeness: LikenessGuard | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.blobs = blobs
        self.jobs = jobs or JobQueue(repo.db)
        # None where this process only queues jobs and another one works the queue.
        self.dispatcher = dispatcher
        # The process that works the queue where it is not this one (bot.core.app).
        self.queue_worker: int | None = None
        self.consent_text: ConsentText = load_consent_text(config.consent)
        self.family = resolve_family(config.model.base, config.model.family)
        self.moderation = Moderation(repo, config.moderation)
        # Other users' faces in pictures: results (through the dispatcher) and attachments.
        self.likeness = likeness or LikenessGuard(
            repo,
            config.intake,
            analyzer,
            keep_blocked=config.moderation.keep_blocked_images,
        )
        self._analyzer = analyzer
        # NudeNet on every upload (its model loads with the first photo); None when off.
        screening = config.image_filter
        self.image_filter = (
            ImageFilter(screening.blocked_classes)
            if screening.enabled and screening.blocked_classes
            else None
        )
        # One operation at a time per user: uploads judge against the photos already kept.
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)
        self.uploads = Uploads(
            config, repo, blobs, self.family, lambda: self.analyzer, self.image_filter
        )
        self.eraser = Eraser(
            config, repo, blobs, self.moderation, self.likeness, dispatcher, self._locks
        )
        # The admins' style LoRAs, for the configured family: managed by the admin console,
        # named in /imagine (--style) and resolved by the requests.
        self.styles = StyleLibrary(repo, blobs, self.family)
        authorization = AdminAuthorization(config, repo)
        # The admin web console's sign-in (bot.web), where the config turns it on.
        self.signin = None
        if config.web.listen:
            self.signin = SignIn(WebSessions(repo.db), authorization, config.web.base_url())
        self.admin = AdminConsole(
            repo,
            self.jobs,
            self.moderation,
            self.eraser,
            authorization,
            dispatcher,
            self.styles,
            self.signin,
        )
        # Which chat message shows which job: the answers a front end owes after a restart.
        self.chats = ChatMessages(repo.db)
        self.gate = Gate(repo, self.moderation, self.consent_text)
        self.requests = Requests(
            config, repo, blobs, self.jobs, dispatcher, self.moderation, self.gate, self.family,
            sources=Sources(config, repo, blobs, lambda: self.analyzer, self.image_filter),
        )  # fmt: skip
        self.outcomes = Outcomes(repo, blobs, self.jobs, dispatcher)
        # Smaller copies for a chat's upload limit, signed again.
        self.provenance = Provenance(config)

    @property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            # One set of dlib models per process, shared with the likeness guard.
            self._analyzer = self.likeness.analyzer
        return self._analyzer

    # consent -------------------------------------------------------------------------

    async def accept_consent(self, who: Identity, version: str | None = None) -> None:
        """Record consent to the current text; `version` is the one the user was shown."""
        self.gate.take_command(who)
        if version is not None and version != self.consent_text.version:
            raise BoothError(
                "The consent text has changed since it was shown to you: "
                "read the new one and accept it again."
            )
        user = await self.repo.get_or_create_user(who.platform, who.user_id)
        async with self._locks[user.id]:
            if await self.gate.consent_is_current(user):
                return
            await self.repo.add_consent(
                user.id, self.consent_text.version, self.consent_text.sha256, who.platform
            )

    async def decline(self, who: Identity) -> bool:
        """The Decline button: nothing is stored, and nothing is deleted either.

        True when the user had accepted already: their data stays, since withdrawing
        (which erases everything) is its own action with a confirmation (`forget`).
        """
        self.gate.take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        return user is not None and await self.gate.consent_is_current(user)

    def check_confirmation(self, asked_at: datetime) -> None:
        """A confirmation button (Delete everything) is good for CONFIRMATION_TTL only."""
        if datetime.now(UTC) - asked_at > CONFIRMATION_TTL:
            raise BoothError("That confirmation is too old. Ask again if you still want to.")

    async def withdraw_consent(self, who: Identity) -> Erasure:
        """Withdrawal erases everything, as fast as consenting was."""
        return await self._erase(who, action="consent.withdrawn")

    async def forget(self, who: Identity) -> Erasure:
        return await self._erase(who, action="user.forgotten")

    # photos --------------------------------------------------------------------------

    async def upload(
        self, who: Identity, files: Sequence[Upload], progress: Analyzed | None = None
    ) -> list[Verdict]:
        """A verdict for each file, in order. Refused files leave nothing behind.

        `progress(done, total)` hears of each file analysed (from a worker thread)."""
        user = await self.gate.consenting_user(who)
        async with self._locks[user.id]:
            return await self.uploads.judge_and_keep(user, files, progress)

    def oversized(self, name: str, size: int, platform_limit: int | None = None) -> Verdict | None:
        """The refusal of a file by the size a platform announces, before downloading it.

        `platform_limit` is the platform's own limit for that place (bytes), if it has one.
        """
        return self.uploads.oversized(name, size, platform_limit)

    # status and erasure ----------------------------------------------------------------

    async def status(self, who: Identity) -> UserStatus:
        self.gate.take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None:
            return UserStatus(None, False, 0, self.config.intake.max_photos, (), ())
        return await self._status_of(user)

    async def ready_to_upload(self, who: Identity) -> UserStatus:
        """What a front end asks before it downloads a user's files: ConsentRequired or
        Suspended when an upload would be refused anyway, else the user's status."""
        return await self._status_of(await self.gate.consenting_user(who))

    async def _status_of(self, user: User) -> UserStatus:
        consent = await self.repo.active_consent(user.id)
        return UserStatus(
            consent=consent,
            consent_current=consent is not None and consent.version == self.consent_text.version,
            photos=len(await self.repo.photos(user.id)),
            max_photos=self.config.intake.max_photos,
            loras=tuple(await self.repo.loras(user.id)),
            jobs=tuple(await self.repo.jobs(user.id)),
        )

    async def _erase(self, who: Identity, action: str) -> Erasure:
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None:
            return Erasure()
        return await self.erase_user(user, action)

    async def erase_user(self, user: User, action: str) -> Erasure:
        """Delete every row and file of `user`; the audit log keeps only `action`."""
        return await self.eraser.erase(user, action)

    # training and generation (bot.core.requests) --------------------------------------

    async def train(self, who: Identity) -> JobTicket:
        """Queue a training on the user's accepted photos; a new model version when done."""
        return await self.requests.train(who)

    async def imagine(
        self,
        who: Identity,
        request: ImagineRequest,
        picture: bytes | None = None,
        *,
        chosen: Collection[str] = (),
    ) -> JobTicket:
        """Queue a generation with the user's active model; their trigger word is put in.

        `picture`: attached for image-to-image, or for its edges with `--edges` (screened
        first: bot.core.sources); `chosen`: the request's fields and flags the user set
        (see `Requests.imagine`).
        """
        return await self.requests.imagine(who, request, picture, chosen=chosen)

    async def edit(
        self,
        who: Identity,
        request: ImagineRequest,
        picture: bytes,
        *,
        region: str | None = None,
        mask: bytes | None = None,
        chosen: Collection[str] = (),
    ) -> JobTicket:
        """Repaint a `region` of `picture` (background, face) or where `mask` is white."""
        return await self.requests.edit(
            who, request, picture, region=region, mask=mask, chosen=chosen
        )

    async def upscale(self, who: Identity, job_id: int, index: int) -> JobTicket:
        """Picture `index` (1-based) of a generation, twice as large."""
        return await self.requests.upscale(who, job_id, index)

    async def reroll(self, who: Identity, job_id: int) -> JobTicket:
        """The same generation again with new seeds."""
        return await self.requests.reroll(who, job_id)

    async def variations(self, who: Identity, job_id: int, index: int) -> JobTicket:
        """Pictures close to image `index` (1-based) of a generation: its seed, nudged."""
        return await self.requests.variations(who, job_id, index)

    async def restyle(self, who: Identity, job_id: int, style: str) -> JobTicket:
        """The same picture again in a style of the library (its name)."""
        return await self.requests.restyle(who, job_id, style)

    async def style_names(self) -> list[str]:
        """The styles users may name (`--style`), for pick-lists and buttons."""
        return [style.name for style in await self.styles.styles()]

    async def cancel(self, who: Identity, job_id: int | None = None) -> list[int]:
        """Cancel one job of the user's, or all their queued and running ones."""
        return await self.requests.cancel(who, job_id)

    async def use_model(self, who: Identity, version: int) -> LoraRecord:
        """Make model `version` of the user's the one their pictures are made with."""
        return await self.requests.use_model(who, version)

    def updates(self, who: Identity, job_id: int) -> AsyncIterator[JobUpdate]:
        """Updates of one of the user's jobs until it ends; the last carries its outcome."""
        return self.outcomes.updates(who, job_id)

    async def outcome(self, who: Identity, job_id: int) -> JobOutcome:
        """How one of the user's jobs ended (or stands), as every front end shows it."""
        return await self.outcomes.outcome(who, job_id)

    async def queue_position(self, job_id: int) -> int | None:
        """Where a queued job stands (1 runs next); None once it runs or has ended."""
        return await self.outcomes.queue_position(job_id)

    async def job_images(self, who: Identity, job_id: int) -> list[bytes]:
        """The PNGs a finished generation of the user's made, in order."""
        return await self.outcomes.job_images(who, job_id)

    async def job(self, who: Identity, job_id: int) -> JobRecord:
        """One of the user's own jobs: what a front end needs to answer for it after a restart."""
        return await self.outcomes.job(who, job_id)

    async def prompt_filter(self) -> PromptFilter:
        """The prompt filter with the admins' blocklist edits (loaded once, then kept fresh)."""
        return await self.moderation.current_filter()

    # the user's data -------------------------------------------------------------------

    async def export(self, who: Identity, fmt: str = "kohya") -> Export:
        """The user's active model as a safetensors file, in the kohya layout or as
        diffusers keeps it (bot.core.exports); only ever to its owner."""
        if fmt not in EXPORT_FORMATS:
            raise BoothError(f"There is no export format {fmt!r}: {' or '.join(EXPORT_FORMATS)}.")
        user = await self.gate.consenting_user(who)
        lora = await self.repo.active_lora(user.id)
        if lora is None:
            raise BoothError("You have no trained model to export yet.")
        job = await self.jobs.get(lora.job_id) if lora.job_id is not None else None
        trained = job.outcome() if job is not None else None
        steps = trained.steps if isinstance(trained, TrainResult) else 0
        return await model_file(lora, await self.blobs.get(lora.blob), fmt, steps)

    async def my_data(self, who: Identity) -> MyData:
        """All that is stored about the user, as counts and dates."""
        self.gate.take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None:
            return MyData(None, False, 0, (), 0, 0, 0, None, None, None)
        consent = await self.repo.active_consent(user.id)
        return MyData(
            consent=consent,
            consent_current=consent is not None and consent.version == self.consent_text.version,
            photos=len(await self.repo.photos(user.id)),
            loras=tuple(await self.repo.loras(user.id)),
            jobs=len(await self.repo.jobs(user.id)),
            images=await self.repo.image_count(user.id),
            strikes=await self.moderation.strike_count(user.id),
            banned_until=user.banned_until,
            ban_reason=user.ban_reason,
            created_at=user.created_at,
        )

    async def report(self, who: Identity, job_id: int, note: str = "") -> int:
        """Anyone may report a picture they received or saw; it goes to the review queue."""
        self.gate.take_command(who)
        job = await self.jobs.get(job_id)
        if job is None or job.kind != "imagine":
            raise BoothError(f"There is no picture job {job_id} to report (it may be erased).")
        reporter = await self.repo.get_or_create_user(who.platform, who.user_id)
        item = await self.repo.add_review_item(
            "report",
            job.user_id,
            {"note": note.strip()[:500]},
            job_id=job_id,
            reporter_id=reporter.id,
        )
        _log.info("job %d reported (review item %d)", job_id, item)
        return item

    async def admin_command(
        self, actor: Identity, text: str, image: bytes | None = None, filename: str = ""
    ) -> str:
        """One admin command line from a chat (see bot.core.admin) with its attachment and
        the attachment's name; refused for non-admins."""
        return await self.admin.run(actor, text, image, filename=filename)

    def is_admin(self, who: Identity) -> bool:
        """Whether `who` is an admin (bot.core.authorization decides)."""
        return is_admin(self.config, who)
