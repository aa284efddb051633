"""What the bot says about a user's data, in one wording for every front end: /status,
/mydata, an erasure, and a declined consent.

A front end adds its own command names (`consent_command`, `forget_command`) and its own
quoting of text that users or admins wrote (`quote`, e.g. Markdown escaping on Discord).
"""

from __future__ import annotations

import json
from collections.abc import Callable

from bot.core.types import Erasure, MyData, UserStatus
from engine.jobs import likeness_words
from storage.records import LoraRecord

__all__ = ["decline_text", "erasure_text", "my_data_lines", "status_lines"]


def erasure_text(erasure: Erasure) -> str:
    """What an erasure (/forget, a withdrawal) removed."""
    return (
        f"Forgotten. Deleted {erasure.photos} selfie(s), {erasure.loras} model(s), "
        f"{erasure.jobs} job(s) and {erasure.files} file(s); your consent is withdrawn."
    )


def decline_text(consented: bool, consent_command: str, forget_command: str) -> str:
    """The answer to Decline: it never deletes; withdrawing is its own, confirmed, action."""
    if consented:
        return (
            "You accepted earlier, so nothing changes and your data stays. To withdraw your "
            f"consent and delete everything: {forget_command}"
        )
    return f"Declined: nothing about you was stored. Changed your mind? {consent_command}"


def status_lines(status: UserStatus, consent_command: str) -> list[str]:
    if status.consent is None:
        return [f"Nothing is stored about you. Start with {consent_command}."]
    lines = [
        "Consent: accepted"
        + (
            ""
            if status.consent_current
            else f" (the text changed: {consent_command} to accept it again)"
        ),
        f"Photos: {status.photos} (at most {status.max_photos})",
    ]
    if status.loras:
        for lora in status.loras:
            active = " (in use)" if lora.active else ""
            how = "" if lora.method == "lora" else f", {METHOD_WORDS[lora.method]}"
            lines.append(
                f"Model version {lora.version}{how}, trigger word {lora.trigger_word}{active}"
            )
            if lora.likeness:
                lines.append(f"  {lora_likeness(lora)}")
    else:
        lines.append("Models: none yet")
    for job in status.jobs[-5:]:
        what = "training" if job.kind == "train" else "pictures"
        lines.append(f"Job {job.id}: {what}, {job.status} ({job.progress:.0%})")
    return lines


def my_data_lines(data: MyData, quote: Callable[[str], str] = str) -> list[str]:
    if data.created_at is None:
        return ["Nothing is stored about you."]
    consent = (
        f"version {data.consent.version}, accepted {data.consent.accepted_at[:16]} UTC"
        if data.consent
        else "none"
    )
    lines = [
        "What is stored about you:",
        f"Account since {data.created_at[:16]} UTC",
        f"Consent: {consent}",
        f"Selfies: {data.photos}",
        f"Models: {len(data.loras)}",
        *(
            f"  version {lora.version}: {lora_likeness(lora)}"
            for lora in data.loras
            if lora.likeness
        ),
        *(
            f"  version {lora.version}: {METHOD_WORDS[lora.method]}"
            for lora in data.loras
            if lora.method != "lora"
        ),
        f"Jobs: {data.jobs}",
        f"Generated pictures: {data.images}",
        f"Refused prompts (strikes): {data.strikes}",
    ]
    if data.banned_until or data.ban_reason:
        until = "until an admin lifts it"
        if data.banned_until:
            until = f"until {data.banned_until[:16].replace('T', ' ')} UTC"
        lines.append(f"Suspended {until}: {quote(data.ban_reason or 'no reason given')}")
    return lines


# How a version was trained, in words (engine.jobs.TRAINING_METHODS).
METHOD_WORDS = {
    "lora": "a LoRA",
    "textual_inversion": "a textual inversion (a learned trigger word)",
    "pivotal": "pivotal tuning (a LoRA and a learned trigger word)",
}


def lora_likeness(lora: LoraRecord) -> str:
    """How much a model version looks like its user, in words ("" when not measured)."""
    if not lora.likeness:
        return ""
    score = json.loads(lora.likeness)
    return likeness_words(score.get("distance"), int(score["faces"]), int(score["samples"]))
