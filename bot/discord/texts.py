"""The words the Discord bot says: help, status, data, verdicts and job progress.

Discord renders Markdown in message content, so text that comes from users (file names,
prompts) or from the core is escaped before it is shown.
"""

from __future__ import annotations

from collections.abc import Sequence

from discord.utils import escape_markdown, escape_mentions

from bot.core import UserStatus, Verdict
from bot.core.following import Progress
from bot.core.progress_words import checking_text, step_text
from bot.core.summaries import my_data_lines, status_lines
from bot.core.types import MyData
from engine.intake.names import shown_name

__all__ = [
    "ADMIN_ONLY",
    "MAX_CONTENT",
    "SORRY",
    "clip",
    "help_text",
    "my_data_text",
    "progress_text",
    "safe",
    "status_text",
    "verdicts_text",
]

MAX_CONTENT = 2000
SORRY = "Sorry, something went wrong on our side. Please try again in a moment."
ADMIN_ONLY = "That command is for the bot's admins only."
NOT_YOURS = "Only the person who asked for these pictures can use this button."
GONE_BUTTON = "This button no longer works: run the command again."
TOO_BIG = "too large to send here ({size:.1f} MB; the limit here is {limit:.1f} MB)"


def safe(text: str) -> str:
    """User or core text shown as it is: no formatting, no pings."""
    return escape_mentions(escape_markdown(text))


def clip(text: str, limit: int = MAX_CONTENT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def help_text(min_photos: int) -> str:
    return "\n".join(
        [
            "**selfiebooth**: pictures of you, from a small image model trained on your selfies.",
            "1. `/consent`: read what happens to your photos, and accept.",
            f"2. `/upload`: at least {min_photos} selfies (up to 10 at a time): only you, "
            "face clearly visible. Each gets a verdict; only you see them.",
            "3. `/train`: one message shows the progress; it takes a few minutes.",
            "4. `/imagine prompt`: options for what to avoid, seed, aspect ratio, steps, count.",
            "Under each result: Variations, Reroll, Send as file, Delete, Report.",
            "",
            "`/status` what you have · `/cancel` stop your jobs · `/mydata` what is stored · "
            "`/export` your model file · `/forget` delete everything about you",
        ]
    )


def verdicts_text(verdicts: Sequence[Verdict], status: UserStatus) -> str:
    lines = []
    for verdict in verdicts:
        mark = "accepted" if verdict.accepted else f"refused: {verdict.reason}"
        lines.append(f"{safe(shown_name(verdict.name))}: {safe(mark)}")
    accepted = sum(v.accepted for v in verdicts)
    lines.append("")
    lines.append(
        f"{accepted} of {len(verdicts)} accepted. You have {status.photos} photo(s) "
        f"(at most {status.max_photos})."
    )
    return clip("\n".join(lines))


def status_text(status: UserStatus) -> str:
    return "\n".join(status_lines(status, "`/consent`"))


def my_data_text(data: MyData) -> str:
    lines = my_data_lines(data, safe)
    if data.created_at is not None:
        lines.append("`/export` gives you your model; `/forget` deletes all of it.")
    return "\n".join(lines)


def progress_text(progress: Progress) -> str:
    """One line about a job that has not ended yet."""
    what = "Training your model" if progress.kind == "train" else "Making your pictures"
    if progress.state == "queued":
        if progress.position is None:
            return f"{what}: starting…"
        return f"{what}: waiting in the queue, position {progress.position}."
    if progress.state == "checking":
        return f"{what}: {checking_text(progress.step)}…"
    if progress.state == "paused":
        return f"{what}: paused to let pictures through; it goes on after them."
    if progress.state == "retrying":
        return f"{what}: the engine restarted; your job runs again."
    if progress.state in ("progress", "sample") and progress.total:
        return f"{what}: {step_text(progress.step, progress.total, progress.eta)}."
    return f"{what}: running…"
