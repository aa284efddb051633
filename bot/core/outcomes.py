"""How the user's jobs are followed and how they ended, as every front end shows them:
the read side of the core (`bot.core.requests` queues the jobs).

`Outcomes` hands each job's updates, outcome and pictures to its owner only: a
generation's pictures with their caption in the user's own words (never their trigger
word), a training's model version with its likeness and the samples it was measured on.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator

from bot.core.captions import image_caption
from bot.core.dispatcher import Dispatcher
from bot.core.types import FINAL_STATES, BoothError, Identity, JobOutcome, JobUpdate
from engine.jobs import ImagineRequest, ImagineResult, TrainResult, likeness_words
from storage import BlobStore, ports
from storage.records import JobRecord, User

__all__ = ["Outcomes", "own_job"]


class Outcomes:
    def __init__(
        self,
        repo: ports.Repository,
        blobs: BlobStore,
        jobs: ports.JobQueue,
        dispatcher: Dispatcher | None,
    ) -> None:
        self.repo = repo
        self.blobs = blobs
        self.jobs = jobs
        # None where this process only queues jobs and another one works the queue.
        self.dispatcher = dispatcher

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
        user, job = await own_job(self.repo, self.jobs, who, job_id)
        if job.status != "succeeded":
            return JobOutcome(job_id, job.kind, job.status, message=job.error)
        result = job.outcome()
        if isinstance(result, TrainResult):
            likeness = ""
            if result.likeness_samples:
                words = likeness_words(
                    result.likeness, result.likeness_faces, result.likeness_samples
                )
                likeness = f"{words[0].upper()}{words[1:]}."
            return JobOutcome(
                job_id,
                job.kind,
                job.status,
                version=result.version,
                likeness=likeness,
                pictures=tuple(await self._validation_pictures(user.id, result.lora_id)),
            )
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
            tool=request.tool,
        )

    async def queue_position(self, job_id: int) -> int | None:
        """Where a queued job stands (1 runs next); None once it runs or has ended."""
        return await self.jobs.position(job_id)

    async def job_images(self, who: Identity, job_id: int) -> list[bytes]:
        """The PNGs a finished generation of the user's made, in order."""
        await own_job(self.repo, self.jobs, who, job_id)
        return await self._pictures(job_id)

    async def job(self, who: Identity, job_id: int) -> JobRecord:
        """One of the user's own jobs: what a front end needs to answer for it after a restart."""
        return (await own_job(self.repo, self.jobs, who, job_id))[1]

    # helpers -------------------------------------------------------------------------

    async def _validation_pictures(self, user_id: int, lora_id: int) -> list[bytes]:
        """The pictures a version's likeness was measured on (none when unmeasured)."""
        lora = next((x for x in await self.repo.loras(user_id) if x.id == lora_id), None)
        if lora is None or not lora.likeness:
            return []
        keys = json.loads(lora.likeness).get("pictures", [])
        return [await self.blobs.get(key) for key in keys]

    async def _pictures(self, job_id: int) -> list[bytes]:
        return [await self.blobs.get(i.blob) for i in await self.repo.images_of_job(job_id)]


async def own_job(
    repo: ports.Repository, jobs: ports.JobQueue, who: Identity, job_id: int
) -> tuple[User, JobRecord]:
    """The user and their job `job_id`; BoothError when it is not theirs (or is gone)."""
    user = await repo.find_user(who.platform, who.user_id)
    job = await jobs.get(job_id)
    if user is None or job is None or job.user_id != user.id:
        raise BoothError(f"You have no job {job_id}.")
    return user, job


def _without_trigger(prompt: str, trigger: str | None) -> str:
    """The user's words as they may be shown anywhere: their trigger word reads "me"."""
    if not trigger:
        return prompt
    return re.sub(rf"\b{re.escape(trigger)}\b", "me", prompt, flags=re.IGNORECASE)
