"""Training and generation requests of the core: what a user may queue.

`Requests` checks a request against the user's photos, quotas, the prompt filter and
other users' likeness, and queues it; `bot.core.outcomes` follows it to its end. `Booth`
is the facade the front ends call.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import numpy as np

from bot.config import Config
from bot.core.dispatcher import Dispatcher
from bot.core.gate import Gate
from bot.core.masks import REGIONS
from bot.core.moderation import Moderation
from bot.core.outcomes import own_job
from bot.core.sources import Sources
from bot.core.styles import StyleLibrary, asked_style
from bot.core.telemetry import REFUSALS, job_event
from bot.core.types import (
    BoothError,
    Identity,
    JobTicket,
)
from engine import limits
from engine.intake import identity_outliers
from engine.jobs import (
    EDIT_STRENGTH,
    UPSCALE,
    UPSCALE_STRENGTH,
    ImagineRequest,
    JobRequest,
    ModelRef,
    Prior,
    RequestError,
    TrainRequest,
    Variation,
)
from engine.models.families import Family
from engine.models.recipe import TrainingRecipe
from storage import BlobStore, ports
from storage.jobs import ACTIVE
from storage.records import JobRecord, LoraRecord, User

__all__ = ["VARIATION_STRENGTH", "Requests"]

_log = logging.getLogger(__name__)

# Trigger words are six letters, consonant then vowel (see `Requests._new_trigger_word`).
_TRIGGER_SHAPE = re.compile(r"(?<![a-z])(?:[bcdfghjklmnpqrstvwxz][aeiouy]){3}(?![a-z])")

# How far variations stray from the picture they vary (0: the same, 1: unrelated).
VARIATION_STRENGTH = 0.25


class Requests:
    def __init__(
        self,
        config: Config,
        repo: ports.Repository,
        blobs: BlobStore,
        jobs: ports.JobQueue,
        dispatcher: Dispatcher | None,
        moderation: Moderation,
        gate: Gate,
        family: Family,
        sources: Sources | None = None,
    ) -> None:
        self.config = config
        self.repo = repo
        self.blobs = blobs
        self.jobs = jobs
        # None where this process only queues jobs and another one works the queue.
        self.dispatcher = dispatcher
        self.moderation = moderation
        self.gate = gate
        self.family = family
        # The style library `--style NAME` is looked up in.
        self.styles = StyleLibrary(repo, blobs, family)
        # Screens and keeps pictures attached for image-to-image; None refuses them.
        self.sources = sources

    # queueing ------------------------------------------------------------------------

    async def train(self, who: Identity) -> JobTicket:
        """Queue a training on the user's accepted photos; a new model version when done."""
        user = await self.gate.consenting_user(who)
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
        active = await self._active_jobs(user)
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
            likeness=(
                tuple(
                    float(v)
                    for v in np.mean([np.frombuffer(p.descriptor, "<f4") for p in photos], axis=0)
                )
                if training.likeness
                else None
            ),
            method=training.method,
        )
        return await self._submit(user, request)

    async def imagine(
        self,
        who: Identity,
        request: ImagineRequest,
        picture: bytes | None = None,
        *,
        chosen: Collection[str] = (),
    ) -> JobTicket:
        """Queue a generation with the user's active model; their trigger word is put in.

        With a `picture` attached, it is image-to-image from it, or with `--edges` in
        `chosen` the picture's edges guide a new one (see bot.core.sources). `chosen`
        names the request's fields and flags the user set (an aspect ratio they chose is
        kept; without one, a picture's own is used).
        """
        request = self._with_family_defaults(request, chosen)
        edges = "edges" in chosen
        if picture is None and (edges or "strength" in chosen):
            option = "--edges" if edges else f"--strength {request.strength:g}"
            raise BoothError(
                f"{option} is about an attached picture: attach a picture to /imagine, or leave "
                f"{option.split()[0]} out."
            )
        if edges and "strength" in chosen:
            raise BoothError(
                "--strength is how much of a picture is redrawn, and --edges redraws none "
                "of it (only its outlines are followed): use one of them."
            )
        if edges and not self.config.model.edge_control:
            raise BoothError(
                "Edge control is not set up on this bot (an admin sets model.controlnet), "
                "and nothing was queued."
            )
        if picture is None:
            return await self._queue(who, request)
        keep = "aspect_ratio" in chosen

        async def attach(user: User, asked: ImagineRequest) -> ImagineRequest:
            sources = self._sources()
            return await sources.attach(user, asked, picture, keep_aspect=keep, as_edges=edges)

        return await self._queue(who, request, attach)

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
        """Repaint part of `picture` as `request.prompt` says: the `region` found from its
        faces (bot.core.masks.REGIONS), or where the user's `mask` is white."""
        request = self._with_family_defaults(request, chosen)
        if region is not None and region not in REGIONS:
            raise BoothError(
                f"There is no region {region!r} to repaint: {' or '.join(REGIONS)}, or "
                "attach a mask (white where to repaint)."
            )
        if "strength" not in chosen:
            request = dataclasses.replace(request, strength=EDIT_STRENGTH)
        keep = "aspect_ratio" in chosen

        async def attach(user: User, asked: ImagineRequest) -> ImagineRequest:
            return await self._sources().attach_edit(
                user, asked, picture, region=region, mask=mask, keep_aspect=keep
            )

        return await self._queue(who, request, attach)

    def _with_family_defaults(
        self, request: ImagineRequest, chosen: Collection[str]
    ) -> ImagineRequest:
        """`request` with the model family's steps and guidance where the user set none
        (FLUX.1-dev: 28 at 3.5; schnell: 4 and no guidance); what FLUX cannot take refused."""
        family = self.family
        if family.pipeline == "flux" and request.negative.strip():
            raise BoothError(
                "This bot's model (FLUX) takes no negative prompt: say what you want in the "
                "prompt instead, and leave --no out."
            )
        defaults: dict[str, Any] = {}
        if family.steps is not None and "steps" not in chosen:
            defaults["steps"] = family.steps
        if family.guidance is not None and "guidance" not in chosen:
            defaults["guidance"] = family.guidance
        return dataclasses.replace(request, **defaults) if defaults else request

    async def upscale(self, who: Identity, job_id: int, index: int) -> JobTicket:
        """Picture `index` (1-based) of a generation, twice as large: enlarged, then
        redrawn lightly with the same model version, prompt and seed (a "hires fix")."""
        _, job = await self._own_job(who, job_id)
        request = job.request()
        if not isinstance(request, ImagineRequest) or job.status != "succeeded":
            raise BoothError(f"Job {job_id} has no pictures to upscale.")
        if request.upscale > 1:
            raise BoothError(f"Job {job_id} is an upscale already: it cannot grow again.")
        images = await self.repo.images_of_job(job_id)
        if not 1 <= index <= len(images):
            raise BoothError(f"Job {job_id} has no image {index}.")
        image = images[index - 1]
        upscale = ImagineRequest(
            prompt=request.prompt,
            negative=request.negative,
            seed=image.seed,
            steps=request.steps,
            guidance=request.guidance,
            aspect_ratio=request.aspect_ratio,
            styles=tuple(asked_style(s.name, s.weight) for s in request.styles),
            source=image.blob,
            strength=UPSCALE_STRENGTH,
            upscale=UPSCALE,
        )
        version = request.model.version if request.model is not None else None
        return await self._queue(who, upscale, version=version)

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

    async def restyle(self, who: Identity, job_id: int, style: str) -> JobTicket:
        """A generation again in one style of the library: its first picture's seed, so the
        same picture is drawn in that style (the "Try a style" buttons)."""
        request = await self._own_generation(who, job_id)
        images = await self.repo.images_of_job(job_id)
        seed = images[0].seed if images else request.seed
        return await self.imagine(
            who, dataclasses.replace(request, seed=seed, styles=(asked_style(style),))
        )

    async def _queue(
        self,
        who: Identity,
        request: ImagineRequest,
        attach: Callable[[User, ImagineRequest], Awaitable[ImagineRequest]] | None = None,
        *,
        version: int | None = None,
    ) -> JobTicket:
        """Check a picture job and queue it: styles looked up, the request's values, the
        prompt filter, other users' likeness, limits and quotas, then `attach` (screening
        and keeping what the user attached). Model `version` is used while it exists;
        otherwise (and without one) the user's active model."""
        user = await self.gate.consenting_user(who)
        if request.styles:  # named by the user: the library's files, or a refusal
            request = dataclasses.replace(request, styles=await self.styles.resolve(request.styles))
        try:
            request.check()
        except RequestError as exc:
            raise BoothError(f"Nothing was queued: {exc}.") from None
        verdict = (await self.moderation.current_filter()).check(request.prompt, request.negative)
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
        if version is not None:
            lora = next((x for x in await self.repo.loras(user.id) if x.version == version), lora)
        if lora is None:
            raise BoothError("You have no trained model yet: send selfies, then train first.")
        await self._refuse_other_likeness(user, request.prompt)
        self._check_job_limit(await self._active_jobs(user))
        await self.moderation.check_images_quota(user, request.count)
        request = dataclasses.replace(
            request,
            prompt=request.prompt.strip(),
            negative=request.negative.strip(),
            model=ModelRef(lora.blob, lora.sha256, lora.trigger_word, lora.version),
        )
        if attach is None:
            return await self._submit(user, request)
        request = await attach(user, request)
        try:
            return await self._submit(user, request)
        except BaseException:
            await self._sources().release(request)
            raise

    def _sources(self) -> Sources:
        if self.sources is None:
            raise BoothError("Pictures cannot be attached here.")
        return self.sources

    async def cancel(self, who: Identity, job_id: int | None = None) -> list[int]:
        """Cancel one job of the user's, or all their queued and running ones."""
        self.gate.take_command(who)
        user = await self.repo.find_user(who.platform, who.user_id)
        active = await self._active_jobs(user) if user else []
        chosen = [j for j in active if job_id is None or j.id == job_id]
        if job_id is not None and not chosen:
            raise BoothError(f"You have no queued or running job {job_id}.")
        for job in chosen:
            if self.dispatcher is not None:
                await self.dispatcher.cancel(job.id)
            elif job.status == "queued":
                await self.jobs.finish(job.id, "cancelled", error="cancelled by the user")
                if self.sources is not None:
                    await self.sources.release(job.request())
            else:
                await self.jobs.request_cancel(job.id)
        return [j.id for j in chosen]

    async def use_model(self, who: Identity, version: int) -> LoraRecord:
        user = await self.gate.consenting_user(who)
        if not await self.repo.set_active_lora(user.id, version):
            versions = ", ".join(str(x.version) for x in await self.repo.loras(user.id)) or "none"
            raise BoothError(f"You have no model version {version}; your versions: {versions}.")
        lora = await self.repo.active_lora(user.id)
        assert lora is not None
        return lora

    # helpers -------------------------------------------------------------------------

    async def _own_job(self, who: Identity, job_id: int) -> tuple[User, JobRecord]:
        return await own_job(self.repo, self.jobs, who, job_id)

    async def _own_generation(self, who: Identity, job_id: int) -> ImagineRequest:
        user = await self.repo.find_user(who.platform, who.user_id)
        job = await self.jobs.get(job_id)
        if user is None or job is None or job.user_id != user.id or job.kind != "imagine":
            raise BoothError(f"You have no picture job {job_id}; only its owner can reuse it.")
        request = job.request()
        assert isinstance(request, ImagineRequest)
        if request.source is not None:
            # The attached picture was deleted when its job ended: nothing keeps it.
            raise BoothError(
                f"Job {job_id} was made from a picture you attached, and that picture is not "
                "kept once its job is done: attach it again with /imagine for new ones."
            )
        return request

    async def _active_jobs(self, user: User) -> list[JobRecord]:
        return [j for j in await self.repo.jobs(user.id) if j.status in ACTIVE]

    async def _submit(self, user: User, request: JobRequest) -> JobTicket:
        job = await self.jobs.enqueue(user.id, request)
        job_event("queued", job)
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

    async def _refuse_other_likeness(self, user: User, prompt: str) -> None:
        # Only one's own trigger word has a model here; another user's would draw them.
        for word in set(_TRIGGER_SHAPE.findall(prompt.casefold())):
            if word == user.trigger_word:
                continue
            if await self.repo.find_user_by_trigger(word) is not None:
                REFUSALS.labels("other person").inc()
                raise BoothError(
                    "Your prompt names another person's model. You can only make pictures "
                    "of yourself, with your own model."
                )
