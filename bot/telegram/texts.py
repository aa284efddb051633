"""The words the Telegram bot says: help, status, verdicts and job progress, as plain text.

Plain text only (no Markdown or HTML parse mode): prompts, file names and the core's
messages are shown as they are, with nothing to escape.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core import UserStatus, Verdict
from bot.core.following import Progress
from bot.core.options import EDIT_HELP, OPTIONS_HELP
from bot.core.progress_words import checking_text, step_text
from bot.core.summaries import my_data_lines, status_lines
from bot.core.types import JobOutcome, MyData
from engine.intake.names import shown_name

__all__ = [
    "ADMIN_COMMAND",
    "COMMANDS",
    "GROUP_ONLY_PRIVATE",
    "SORRY",
    "chunks",
    "final_text",
    "help_text",
    "intro",
    "my_data_text",
    "progress_text",
    "queued_text",
    "results_hint",
    "status_text",
    "verdicts_text",
]

# Command -> description, as setMyCommands shows them in the menu.
COMMANDS: dict[str, str] = {
    "start": "what this bot does, and the consent to accept",
    "imagine": "a picture of you: /imagine PROMPT --ar 3:2 --n 2",
    "edit": "repaint part of a photo of you: /edit background PROMPT",
    "train": "train your model on your selfies",
    "status": "your photos, models and jobs",
    "cancel": "cancel your waiting or running jobs",
    "mydata": "everything stored about you",
    "export": "your model as a file",
    "model": "switch to another version of your model: /model 2",
    "report": "report a picture to the admins: /report JOB [why]",
    "forget": "delete everything about you",
    "help": "how it works",
}
ADMIN_COMMAND = ("admin", "moderation: /admin help")


def intro(min_photos: int, max_photos: int) -> str:
    return (
        f"Hi! I am selfiebooth. Send me {min_photos} to {max_photos} selfies, train your own "
        "image model, and then ask for pictures of yourself: /imagine me as an astronaut.\n\n"
        "Everything here needs your consent first. Please read it:"
    )


SORRY = "Sorry, something went wrong on our side. Please try again in a moment."
GROUP_ONLY_PRIVATE = (
    "Please send me that in a private chat: your photos and your data stay between us there."
)
MAX_TEXT = 4096


def help_text(min_photos: int) -> str:
    return "\n".join(
        [
            "How it works:",
            "1. /start and accept the consent text.",
            f"2. Send at least {min_photos} selfies: only you, face clearly visible, different "
            "days and light if you can. Send them as files (uncompressed) for the best "
            "quality; photos and albums work too.",
            "3. /train, and wait a few minutes: one message shows the progress.",
            "4. /imagine me as a Lego figure. " + OPTIONS_HELP,
            "Send /imagine PROMPT as a photo's caption, or in reply to a photo, to start "
            "from that picture. " + EDIT_HELP,
            "",
            "Under each result: Reroll (new seeds), Variations (close to one picture), "
            "Upscale (twice as large), Send as file (full-quality PNG) and Report.",
            "",
            *[f"/{name}: {text}" for name, text in COMMANDS.items()],
        ]
    )


def verdicts_text(
    names: Sequence[str], verdicts: Sequence[Verdict], photos: int, max_photos: int
) -> str:
    lines = []
    for name, verdict in zip(names, verdicts, strict=True):
        mark = "accepted" if verdict.accepted else f"refused: {verdict.reason}"
        lines.append(f"{shown_name(name)}: {mark}")
    accepted = sum(v.accepted for v in verdicts)
    lines.append("")
    lines.append(
        f"{accepted} of {len(verdicts)} accepted. You have {photos} photo(s) "
        f"(at most {max_photos})."
    )
    return "\n".join(lines)


def status_text(status: UserStatus) -> str:
    return "\n".join(status_lines(status, "/start"))


def my_data_text(data: MyData) -> str:
    lines = my_data_lines(data)
    if data.created_at is not None:
        lines += ["", "/export sends your model; /forget deletes all of it."]
    return "\n".join(lines)


def queued_text(kind: str, job_id: int, position: int | None) -> str:
    what = "Training" if kind == "train" else "Pictures"
    if position is None:
        return f"{what} (job {job_id}): starting."
    if position == 1:
        return f"{what} (job {job_id}): queued, next in line."
    return f"{what} (job {job_id}): queued, number {position} in line."


def progress_text(progress: Progress) -> str:
    """One line about a job that has not ended yet."""
    if progress.state == "queued":
        return queued_text(progress.kind, progress.job_id, progress.position)
    what = "Training" if progress.kind == "train" else "Pictures"
    job = f"{what} (job {progress.job_id})"
    if progress.state == "progress" and progress.total:
        return f"{job}: {step_text(progress.step, progress.total, progress.eta)}."
    if progress.state == "checking":
        return f"{job}: {checking_text(progress.step)}."
    if progress.state == "paused":
        return f"{job}: paused to make way for pictures; it carries on soon."
    if progress.state == "retrying":
        return f"{job}: the engine restarted; running your job again."
    return f"{job}: running."


def final_text(outcome: JobOutcome) -> str:
    what = "Training" if outcome.kind == "train" else "Pictures"
    job = f"{what} (job {outcome.job_id})"
    if outcome.state == "succeeded" and outcome.kind == "train":
        likeness = f"{outcome.likeness}\n" if outcome.likeness else ""
        return (
            f"{job}: done. Model version {outcome.version} is ready.\n{likeness}"
            "Now try: /imagine me as an astronaut --n 2"
        )
    if outcome.state == "succeeded":
        return f"{job}: done."
    if outcome.state == "cancelled":
        return f"{job}: cancelled."
    return f"Sorry, {job[0].lower() + job[1:]} failed on our side. Please try again later."


def chunks(text: str, size: int = MAX_TEXT) -> list[str]:
    """Pieces of at most `size` characters, cut at line ends where possible."""
    out: list[str] = []
    while len(text) > size:
        cut = text.rfind("\n", 0, size)
        cut = cut if cut > 0 else size
        out.append(text[:cut])
        text = text[cut:].lstrip("\n")
    out.append(text)
    return out


def results_hint(actions: Sequence[str], count: int) -> str:
    """What the buttons under an album of `count` pictures do (those in `actions`)."""
    hints = []
    if "reroll" in actions:
        hints.append("Reroll makes new ones")
    if "vary" in actions:
        hints.append(f"V1 to V{count} make variations of one of them")
    if "upscale" in actions:
        hints.append(f"U1 to U{count} make one twice as large")
    return "; ".join(hints) + "." if hints else ""
