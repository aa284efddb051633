"""The core of selfiebooth: consent, selfie upload, training and generation requests,
job outcomes, status and erasure (moderation: bot.core.moderation and bot.core.admin).

Every front end (command line, Telegram, Discord) calls these methods and only
translates their results; no rule of the service lives in an adapter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from bot.config import Config
from bot.core.admin import AdminConsole
from bot.core.authorization import AdminAuthorization, is_admin
from bot.core.captions import image_caption
from bot.core.consent import ConsentText, load_consent_text
from bot.core.dispatcher import Dispatcher
from bot.core.erasure import Eraser
from bot.core.likeness import LikenessGuard
from bot.core.moderation import Moderation
from bot.core.types import (
    FINAL_STATES,
    BoothError,
    ConsentRequired,
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
from bot.core.uploads import BAD_NAME, FILTER_REFUSED, Uploads
from engine import limits
from engine.intake import (
    FaceAnalyzer,
    identity_outliers,
)
from engine.jobs import (
    ImagineRequest,
    ImagineResult,
    JobRequest,
    ModelRef,
    Prior,
    RequestError,
    TrainRequest,
    TrainResult,
    Variation,
)
from engine.models.families import resolve_family
from engine.models.recipe import TrainingRecipe
from engine.safety import ImageFilter, PromptFilter
from storage import BlobStore, Repository
from storage.jobs import JobQueue
from storage.records import JobRecord, LoraRecord, User

if TYPE_CHECKING:
    pass

__all__ = ["BAD_NAME", "CONFIRMATION_TTL", "FILTER_REFUSED", "Booth"]

_log = logging.getLogger(__name__)

_TRIGGER_SHAPE = re.compile(r"(?<![a-z])(?:[bcdfghjklmnpqrstvwxz][aeiouy]){3}(?![a-z])")

# How long a confirmation (of an erasure) can be answered: a button pressed days later
# was most likely not meant for now.
CONFIRMATION_TTL = timedelta(minutes=10)

# How far variations stray from the picture they vary (0: the same, 1: unrelated).
VARIATION_STRENGTH = 0.25


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
        self._filter_loaded = False
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
        self.admin = AdminConsole(
            repo,
            self.jobs,
            self.moderation,
            self.eraser,
            AdminAuthorization(config, repo),
            dispatcher,
        )

    @property
    def analyzer(self) -> FaceAnalyzer:
        if self._analyzer is None:
            # One set of dlib models per process, shared with the likeness guard.
            self._analyzer = self.likeness.analyzer
        return self._analyzer

    # consent -------------------------------------------------------------------------

    async def accept_consent(self, who: Identity, version: str | None = None) -> None:
        """Record consent to the current text; `version` is the one the user was shown."""
        self._take_command(who)
        if version is not None and version != self.consent_text.version:
            raise BoothError(
                "The consent text has changed since it was shown to you: "
                "read the new one and accept it again."
            )
        user = await self.repo.get_or_create_user(who.platform, who.user_id)
        async with self._locks[user.id]:
            if await self._consent_is_current(user):
                return
            await self.repo.add_consent(
                user.id, self.consent_text.version, self.consent_text.sha256, who.platform
            )

    async def decline(self, who: Identity) -> bool:
        """The Decline button: nothing is stored, and nothing is deleted either.

        True when the user had accepted already: their data stays, since withdrawing
        (which erases everything) is its own action with a confirmation (`forget`).
        """
        self._take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        return user is not None and await self._consent_is_current(user)

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

    async def upload(self, who: Identity, files: Sequence[Upload]) -> list[Verdict]:
        """A verdict for each file, in order. Refused files leave nothing behind."""
        user = await self._consenting_user(who)
        async with self._locks[user.id]:
            return await self.uploads.judge_and_keep(user, files)

    def oversized(self, name: str, size: int, platform_limit: int | None = None) -> Verdict | None:
        """The refusal of a file by the size a platform announces, before downloading it.

        `platform_limit` is the platform's own limit for that place (bytes), if it has one.
        """
        return self.uploads.oversized(name, size, platform_limit)

    # status and erasure ----------------------------------------------------------------

    async def status(self, who: Identity) -> UserStatus:
        self._take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None:
            return UserStatus(None, False, 0, self.config.intake.max_photos, (), ())
        return await self._status_of(user)

    async def ready_to_upload(self, who: Identity) -> UserStatus:
        """What a front end asks before it downloads a user's files: ConsentRequired or
        Suspended when an upload would be refused anyway, else the user's status."""
        return await self._status_of(await self._consenting_user(who))

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

    # training and generation -----------------------------------------------------------

    async def train(self, who: Identity) -> JobTicket:
        """Queue a training on the user's accepted photos; a new model version when done."""
        user = await self._consenting_user(who)
        photos = [p for p in await self.repo.photos(user.id) if p.verdict == "accepted"]
        needed = self.config.training.min_photos
        if len(photos) < needed:
            raise BoothError(
                f"You have {len(photos)} accepted photo(s); training needs at least {needed}. "
                "Send more selfies first."
            )
        outliers = identity_outliers(
            [np.frombuffer(p.descriptor, dtype="<f4") for p in photos],
            self.config.intake.identity_threshold,
        )
        if outliers:
            raise BoothError(
                f"{len(outliers)} of your photos do not look like the same person as the others, "
                "and a model is only trained on one person: yourself. Use /forget and send "
                "selfies of yourself only."
            )
        active = [j for j in await self.repo.jobs(user.id) if j.status in ("queued", "running")]
        if any(j.kind == "train" for j in active):
            raise BoothError("A training of yours is already queued or running.")
        self._check_job_limit(active)
        await self.moderation.check_trainings_quota(user)
        trigger = user.trigger_word or await self._new_trigger_word(user)
        recipe = self._recipe()
        training = self.config.training
        total = training.steps or recipe.total_steps(len(photos))
        request = TrainRequest(
            crops=tuple(p.crop_blob for p in photos),
            trigger=trigger,
            base_model=self.config.model.base,
            seed=secrets.randbelow(2**31),
            sample_every=training.sample_every,
            checkpoint_every=training.checkpoint_every or max(1, total // 10),
            steps=training.steps or None,
            recipe=recipe.to_dict() if recipe != self.family.recipe else None,
            prior=(
                Prior(training.class_images, training.prior_loss_weight)
                if training.prior_preservation
                else None
            ),
        )
        return await self._submit(user, request)

    async def imagine(self, who: Identity, request: ImagineRequest) -> JobTicket:
        """Queue a generation with the user's active model; their trigger word is put in."""
        user = await self._consenting_user(who)
        try:
            request.check()
        except RequestError as exc:
            raise BoothError(f"Nothing was queued: {exc}.") from None
        verdict = (await self.prompt_filter()).check(request.prompt, request.negative)
        if not verdict.allowed:
            suspended = await self.moderation.strike(
                user, verdict, request.prompt, request.negative
            )
            if suspended:
                raise BoothError(
                    f"{verdict.reason} Your account is now suspended until an admin reviews it."
                )
            raise BoothError(f"{verdict.reason} Refused prompts count against your account.")
        lora = await self.repo.active_lora(user.id)
        if lora is None:
            raise BoothError("You have no trained model yet: send selfies, then train first.")
        await self._refuse_other_likeness(user, request.prompt)
        self._check_job_limit(
            [j for j in await self.repo.jobs(user.id) if j.status in ("queued", "running")]
        )
        await self.moderation.check_images_quota(user, request.count)
        request = dataclasses.replace(
            request,
            prompt=request.prompt.strip(),
            negative=request.negative.strip(),
            model=ModelRef(lora.blob, lora.sha256, lora.trigger_word, lora.version),
        )
        return await self._submit(user, request)

    async def cancel(self, who: Identity, job_id: int | None = None) -> list[int]:
        """Cancel one job of the user's, or all their queued and running ones."""
        self._take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        jobs = await self.repo.jobs(user.id) if user else []
        chosen = [
            j
            for j in jobs
            if j.status in ("queued", "running") and (job_id is None or j.id == job_id)
        ]
        if job_id is not None and not chosen:
            raise BoothError(f"You have no queued or running job {job_id}.")
        for job in chosen:
            if self.dispatcher is not None:
                await self.dispatcher.cancel(job.id)
            elif job.status == "queued":
                await self.jobs.finish(job.id, "cancelled", error="cancelled by the user")
            else:
                await self.jobs.request_cancel(job.id)
        return [j.id for j in chosen]

    async def use_model(self, who: Identity, version: int) -> LoraRecord:
        user = await self._consenting_user(who)
        if not await self.repo.set_active_lora(user.id, version):
            versions = ", ".join(str(x.version) for x in await self.repo.loras(user.id)) or "none"
            raise BoothError(f"You have no model version {version}; your versions: {versions}.")
        lora = await self.repo.active_lora(user.id)
        assert lora is not None
        return lora

    async def updates(self, who: Identity, job_id: int) -> AsyncIterator[JobUpdate]:
        """Updates of one of the user's jobs until it ends; the last carries its outcome."""
        if self.dispatcher is None:
            raise RuntimeError("this process does not run jobs: open the booth with dispatch=True")
        kind = (await self.job(who, job_id)).kind
        async for update in self.dispatcher.updates(job_id):
            if update.state in FINAL_STATES:
                # An erasure ends the job before its rows go: the row would still say running.
                erased = JobOutcome(job_id, kind, "erased")
                try:
                    outcome = (
                        erased if update.state == "erased" else await self.outcome(who, job_id)
                    )
                except BoothError:
                    outcome = erased  # its rows went with its user
                update = dataclasses.replace(update, state=outcome.state, outcome=outcome)
            yield update

    async def outcome(self, who: Identity, job_id: int) -> JobOutcome:
        """How one of the user's jobs ended (or stands), as every front end shows it."""
        user, job = await self._own_job(who, job_id)
        if job.status != "succeeded":
            return JobOutcome(job_id, job.kind, job.status, message=job.error)
        result = job.outcome()
        if isinstance(result, TrainResult):
            return JobOutcome(job_id, job.kind, job.status, version=result.version)
        request = job.request()
        assert isinstance(request, ImagineRequest) and isinstance(result, ImagineResult)
        words = _without_trigger(request.prompt, user.trigger_word)
        return JobOutcome(
            job_id,
            job.kind,
            job.status,
            pictures=tuple(await self._pictures(job_id)),
            caption=image_caption(job_id, words, withheld=result.withheld),
            withheld=result.withheld,
        )

    async def queue_position(self, job_id: int) -> int | None:
        """Where a queued job stands (1 runs next); None once it runs or has ended."""
        return await self.jobs.position(job_id)

    async def job_images(self, who: Identity, job_id: int) -> list[bytes]:
        """The PNGs a finished generation of the user's made, in order."""
        await self._own_job(who, job_id)
        return await self._pictures(job_id)

    async def _pictures(self, job_id: int) -> list[bytes]:
        return [await self.blobs.get(i.blob) for i in await self.repo.images_of_job(job_id)]

    async def job(self, who: Identity, job_id: int) -> JobRecord:
        """One of the user's own jobs: what a front end needs to answer for it after a restart."""
        return (await self._own_job(who, job_id))[1]

    async def _own_job(self, who: Identity, job_id: int) -> tuple[User, JobRecord]:
        """The user and their job `job_id`; BoothError when it is not theirs (or is gone)."""
        user = await self.repo.find_user(who.platform, who.user_id)
        job = await self.jobs.get(job_id)
        if user is None or job is None or job.user_id != user.id:
            raise BoothError(f"You have no job {job_id}.")
        return user, job

    async def reroll(self, who: Identity, job_id: int) -> JobTicket:
        """The same generation again with new seeds."""
        request = await self._own_generation(who, job_id)
        return await self.imagine(who, dataclasses.replace(request, seed=None, variation=None))

    async def variations(self, who: Identity, job_id: int, index: int) -> JobTicket:
        """Pictures close to image `index` (1-based) of a generation: its seed, nudged."""
        request = await self._own_generation(who, job_id)
        images = await self.repo.images_of_job(job_id)
        if not 1 <= index <= len(images):
            raise BoothError(f"Job {job_id} has no image {index}.")
        return await self.imagine(
            who,
            dataclasses.replace(
                request,
                seed=None,
                count=min(4, limits.MAX_IMAGES),
                variation=Variation(images[index - 1].seed, VARIATION_STRENGTH),
            ),
        )

    async def _own_generation(self, who: Identity, job_id: int) -> ImagineRequest:
        user = await self.repo.find_user(who.platform, who.user_id)
        job = await self.jobs.get(job_id)
        if user is None or job is None or job.user_id != user.id or job.kind != "imagine":
            raise BoothError(f"You have no picture job {job_id}; only its owner can reuse it.")
        request = job.request()
        assert isinstance(request, ImagineRequest)
        return request

    async def export(self, who: Identity) -> Export:
        """The user's active model as a safetensors file; only ever to its owner."""
        user = await self._consenting_user(who)
        lora = await self.repo.active_lora(user.id)
        if lora is None:
            raise BoothError("You have no trained model to export yet.")
        data = await self.blobs.get(lora.blob)
        return Export(
            filename=f"selfiebooth-{lora.trigger_word}-v{lora.version}.safetensors",
            data=data,
            version=lora.version,
            trigger_word=lora.trigger_word,
        )

    async def my_data(self, who: Identity) -> MyData:
        """All that is stored about the user, as counts and dates."""
        self._take_command(who)
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
        self._take_command(who)
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

    async def admin_command(self, actor: Identity, text: str, image: bytes | None = None) -> str:
        """One admin command line from a chat (see bot.core.admin); refused for non-admins."""
        return await self.admin.run(actor, text, image)

    def is_admin(self, who: Identity) -> bool:
        """Whether `who` is an admin (bot.core.authorization decides)."""
        return is_admin(self.config, who)

    async def _submit(self, user: User, request: JobRequest) -> JobTicket:
        job = await self.jobs.enqueue(user.id, request)
        if self.dispatcher is not None:
            await self.dispatcher.submitted(job)
        return JobTicket(job.id, job.kind, await self.jobs.position(job.id))

    def _check_job_limit(self, active: list[JobRecord]) -> None:
        limit = self.config.engine.max_jobs_per_user
        if len(active) >= limit:
            raise BoothError(
                f"You already have {len(active)} job(s) waiting or running, the most allowed: "
                "try again when one has finished, or cancel one."
            )

    def _recipe(self) -> TrainingRecipe:
        """The family's recipe with the config's non-zero overrides."""
        t = self.config.training
        overrides = {
            "rank": t.rank,
            "alpha": t.alpha,
            "learning_rate": t.learning_rate,
            "batch_size": t.batch_size,
        }
        merged = self.family.recipe.to_dict() | {k: v for k, v in overrides.items() if v}
        return TrainingRecipe.from_dict(merged)

    async def _new_trigger_word(self, user: User) -> str:
        # A made-up word such as "vawigo": one the base model has no meaning for yet.
        while True:
            word = "".join(
                secrets.choice("bcdfghjklmnpqrstvwxz") + secrets.choice("aeiouy") for _ in range(3)
            )
            if await self.repo.find_user_by_trigger(word) is None:
                await self.repo.set_trigger_word(user.id, word)
                return word

    async def _consenting_user(self, who: Identity) -> User:
        """The user, if they may act now: within their command rate, consenting, not banned."""
        self._take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        if user is None or not await self._consent_is_current(user):
            raise ConsentRequired(self._consent_prompt(user))
        self.moderation.check_not_banned(user)
        return user

    def _take_command(self, who: Identity) -> None:
        self.moderation.take_command(f"{who.platform}:{who.user_id}")

    async def prompt_filter(self) -> PromptFilter:
        """The prompt filter with the admins' blocklist edits (loaded once, then kept fresh)."""
        if not self._filter_loaded:
            await self.moderation.reload_filter()
            self._filter_loaded = True
        return self.moderation.prompt_filter

    async def _refuse_other_likeness(self, user: User, prompt: str) -> None:
        # Trigger words are six letters, consonant then vowel; only one's own has a model here.
        for word in set(_TRIGGER_SHAPE.findall(prompt.casefold())):
            if word == user.trigger_word:
                continue
            if await self.repo.find_user_by_trigger(word) is not None:
                raise BoothError(
                    "Your prompt names another person's model. You can only make pictures "
                    "of yourself, with your own model."
                )

    # helpers -------------------------------------------------------------------------

    async def _consent_is_current(self, user: User) -> bool:
        consent = await self.repo.active_consent(user.id)
        return consent is not None and consent.version == self.consent_text.version

    def _consent_prompt(self, user: User | None) -> str:
        if user is not None:
            return "The consent text has changed: read it and accept it again before uploading."
        return "Please read and accept the consent text before sending photos."


def _without_trigger(prompt: str, trigger: str | None) -> str:
    """The user's words as they may be shown anywhere: their trigger word reads "me"."""
    if not trigger:
        return prompt
    return re.sub(rf"\b{re.escape(trigger)}\b", "me", prompt, flags=re.IGNORECASE)
