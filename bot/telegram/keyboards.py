"""Inline keyboards and their callback data.

Callback data carries everything a button needs (an action and ids), so a button keeps
working after the bot restarts, and stays far below Telegram's 64-byte limit. Who pressed
is never in the data: it is the pressing user, checked by the core on every press.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

__all__ = [
    "MAX_CALLBACK_BYTES",
    "MAX_STYLE_BUTTONS",
    "Button",
    "cancel_keyboard",
    "consent_keyboard",
    "forget_keyboard",
    "parse_button",
    "results_keyboard",
]

MAX_CALLBACK_BYTES = 64
# "Try a style" buttons under a result: one per library style, the first few by name.
MAX_STYLE_BUTTONS = 3

# action -> the shape of its arguments
_ACTIONS: dict[str, re.Pattern[str]] = {
    # The version of the consent text that was shown: the core refuses an outdated one.
    "consent": re.compile(r"(yes|no):(.{1,50})"),
    "forget": re.compile(r"(yes|no)"),
    "cancel": re.compile(r"(\d{1,12})"),
    "reroll": re.compile(r"(\d{1,12})"),
    "vary": re.compile(r"(\d{1,12}):(\d{1,2})"),
    "upscale": re.compile(r"(\d{1,12}):(\d{1,2})"),
    "file": re.compile(r"(\d{1,12})"),
    "report": re.compile(r"(\d{1,12})"),
    "style": re.compile(r"(\d{1,12}):([a-z0-9][a-z0-9_-]{0,31})"),  # engine.jobs.STYLE_NAME
}


@dataclass(frozen=True, slots=True)
class Button:
    action: str
    args: tuple[str, ...]


def _data(action: str, *args: object) -> str:
    data = ":".join([action, *map(str, args)])
    if len(data.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data {data!r} is over Telegram's {MAX_CALLBACK_BYTES} bytes")
    return data


def parse_button(data: str | None) -> Button | None:
    """The button's action and arguments; None for data this bot never made."""
    if not data:
        return None
    action, _, rest = data.partition(":")
    pattern = _ACTIONS.get(action)
    match = pattern.fullmatch(rest) if pattern else None
    if match is None:
        return None
    return Button(action, match.groups())


def consent_keyboard(version: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("Accept", callback_data=_data("consent", "yes", version)),
                InlineKeyboardButton("Decline", callback_data=_data("consent", "no", version)),
            ]
        ]
    )


def forget_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    "Yes, delete everything", callback_data=_data("forget", "yes")
                ),
                InlineKeyboardButton("No, keep it", callback_data=_data("forget", "no")),
            ]
        ]
    )


def cancel_keyboard(job_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton("Cancel", callback_data=_data("cancel", job_id))]]
    )


def results_keyboard(
    job_id: int, count: int, actions: Sequence[str], styles: Sequence[str] = ()
) -> InlineKeyboardMarkup:
    """The buttons of the `actions` the core allows (JobOutcome.actions): Reroll, a
    variations and an upscale button per picture, full-quality files, a report button,
    and "Try a style" buttons (the same picture in a style of the library)."""

    def per_picture(action: str, one: str, many: str) -> list[InlineKeyboardButton]:
        if action not in actions:
            return []
        return [
            InlineKeyboardButton(
                one if count == 1 else f"{many}{n}", callback_data=_data(action, job_id, n)
            )
            for n in range(1, count + 1)
        ]

    rows = [
        [
            *(
                [InlineKeyboardButton("Reroll", callback_data=_data("reroll", job_id))]
                if "reroll" in actions
                else []
            ),
            *per_picture("vary", "Variations", "V"),
        ],
        per_picture("upscale", "Upscale", "U"),
        [
            InlineKeyboardButton(label, callback_data=_data(action, job_id))
            for action, label in (("file", "Send as file"), ("report", "Report"))
            if action in actions
        ],
    ]
    if "style" in actions:
        rows.append(
            [
                InlineKeyboardButton(f"Try {name}", callback_data=_data("style", job_id, name))
                for name in styles[:MAX_STYLE_BUTTONS]
            ]
        )
    return InlineKeyboardMarkup([row for row in rows if row])
