"""What the command line prints and writes: a job's progress and outcome, its pictures,
and a user's status (the demo uses them too)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.cli.progress import Progress
from bot.core import Booth, Identity, JobOutcome, UserStatus
from bot.core.progress_words import eta_text
from bot.core.summaries import METHOD_WORDS, lora_likeness

__all__ = ["follow", "format_status", "save_images"]


async def save_images(outcome: JobOutcome, out: Path) -> list[Path]:
    await asyncio.to_thread(out.mkdir, parents=True, exist_ok=True)
    job_id = outcome.job_id
    paths = [out / f"selfiebooth-{job_id}-{n}.png" for n in range(1, len(outcome.pictures) + 1)]
    for path, png in zip(paths, outcome.pictures, strict=True):
        await asyncio.to_thread(path.write_bytes, png)
    return paths


async def follow(booth: Booth, who: Identity, job_id: int) -> JobOutcome:
    """Show a job's progress on stderr until it ends; how it ended."""
    with Progress(f"job {job_id}") as progress:
        async for update in booth.updates(who, job_id):
            if update.outcome is not None:
                if update.outcome.state != "succeeded":
                    message = update.outcome.message or ""
                    progress.note(f"{update.outcome.state}: {message}".rstrip(": "))
                return update.outcome
            if update.state == "progress":
                loss = f"loss {update.loss:.4f}" if update.loss is not None else ""
                detail = ", ".join(filter(None, (loss, eta_text(update.eta))))
                progress.update(update.step, update.total, detail)
            elif update.state in ("paused", "retrying"):
                progress.note(f"{update.state}: {update.message or ''}".rstrip(": "))
    return await booth.outcome(who, job_id)


def format_status(who: Identity, status: UserStatus) -> str:
    lines = [f"user: {who.user_id}"]
    if status.consent is None:
        lines.append("consent: not given")
    else:
        current = "current" if status.consent_current else "outdated: accept the new text"
        lines.append(
            f"consent: version {status.consent.version}, accepted {status.consent.accepted_at}"
            f" ({current})"
        )
    lines.append(f"photos: {status.photos} accepted (at most {status.max_photos})")
    if status.loras:
        for lora in status.loras:
            active = " (active)" if lora.active else ""
            how = "" if lora.method == "lora" else f", {METHOD_WORDS[lora.method]}"
            lines.append(
                f"model v{lora.version}: {lora.base_model}{how}, "
                f"trigger {lora.trigger_word}{active}"
            )
            if lora.likeness:
                lines.append(f"  {lora_likeness(lora)}")
    else:
        lines.append("models: none yet")
    if status.jobs:
        for job in status.jobs:
            error = f": {job.error}" if job.error and job.status != "succeeded" else ""
            lines.append(f"job {job.id}: {job.kind} {job.status} {job.progress:.0%}{error}")
    else:
        lines.append("jobs: none")
    return "\n".join(lines)
