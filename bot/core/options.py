"""Midjourney-style options in the text of /imagine: `a portrait --seed 42 --ar 3:2 --no hats`.

The one parser of that syntax: the Telegram /imagine, `admin check-prompt` (in the chats
and on the command line) and the prompt filter's evaluation all read a text with it, so
what an admin checks is what a user would send. Only the syntax is checked here (a known
option, a number where one is needed, no option twice); whether a value is allowed
(aspect ratios, counts, steps) is the core's rule. `--style ikea` or `--style ikea:0.7
ghibli` names up to two styles of the admins' library, with or without a weight; the
core looks them up (bot.core.styles).
"""

from __future__ import annotations

import re
from typing import Any

from bot.core.masks import REGIONS
from bot.core.styles import asked_style
from bot.core.types import BoothError
from engine.jobs import (
    MAX_STYLES,
    STRENGTH,
    STYLE_NAME,
    STYLE_WEIGHT,
    ImagineRequest,
    StyleRef,
)

__all__ = [
    "EDIT_HELP",
    "OPTIONS_HELP",
    "OptionError",
    "chosen_fields",
    "parse_edit",
    "parse_imagine",
    "parse_styles",
]


class OptionError(BoothError):
    """The text of /imagine cannot be read; the message says what to write instead."""


# option name -> (ImagineRequest field, kind)
_OPTIONS: dict[str, tuple[str, str]] = {
    "seed": ("seed", "int"),
    "ar": ("aspect_ratio", "ratio"),
    "aspect": ("aspect_ratio", "ratio"),
    "no": ("negative", "text"),
    "negative": ("negative", "text"),
    "style": ("styles", "styles"),
    "steps": ("steps", "int"),
    "n": ("count", "int"),
    "count": ("count", "int"),
    "guidance": ("guidance", "float"),
    "cfg": ("guidance", "float"),
    "strength": ("strength", "float"),
    # A flag: the attached picture's edges guide the picture (it is not redrawn).
    "edges": ("edges", "flag"),
}

OPTIONS_HELP = (
    "Options go after the prompt: --seed 42 (the same seed gives the same picture), "
    "--ar 3:2 (aspect ratio), --no glasses (what to avoid), --style ikea or ikea:0.7 (up to "
    "two of the bot's styles, with a weight), --steps 30, --n 4 (pictures), --guidance 7; "
    f"with a picture attached, --strength {STRENGTH.default:g} (how much of it is redrawn, "
    f"{STRENGTH.range}) or --edges (a new picture that follows its outlines)."
)
EDIT_HELP = (
    "/edit repaints part of a picture of you: attach it (or reply to it) with "
    "/edit background a beach at sunset, /edit face smiling, or /edit mask PROMPT with a "
    "mask attached to a reply (white where to repaint)."
)

# Phones and desktop clients turn "--" into an em or en dash; take those as "--" too.
_OPTION = re.compile(r"(?:(?<=\s)|^)(?:--|\u2014|\u2013)([A-Za-z]+)(?=\s|$)")
_RATIO = re.compile(r"\d{1,2}:\d{1,2}")
_WEIGHT = re.compile(r"\d{1,3}(?:\.\d{1,4})?|\.\d{1,4}")


def parse_imagine(text: str) -> ImagineRequest:
    """The prompt (everything before the first option) and the options after it."""
    matches = list(_OPTION.finditer(text))
    prompt = text[: matches[0].start()] if matches else text
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
    for n, match in enumerate(matches):
        name = match[1].lower()
        end = matches[n + 1].start() if n + 1 < len(matches) else len(text)
        raw = " ".join(text[match.end() : end].split())
        if name not in _OPTIONS:
            raise OptionError(
                f"There is no option --{name}. Options: {', '.join('--' + o for o in _OPTIONS)}."
            )
        field, kind = _OPTIONS[name]
        if field in seen:
            raise OptionError(f"--{name} is given twice (as --{seen[field]} and --{name}).")
        seen[field] = name
        if kind == "flag":
            if raw:
                raise OptionError(f"--{name} takes no value; put {raw!r} before the options.")
            continue  # a flag is read by `chosen_fields`: it names no value of the request
        values[field] = _value(name, kind, raw)
    prompt = " ".join(prompt.split())
    if not prompt:
        raise OptionError("Say what to imagine, for example: /imagine me as an astronaut --ar 3:2")
    return ImagineRequest(prompt, **values)


def parse_edit(text: str) -> tuple[str, ImagineRequest]:
    """`/edit background a beach --seed 4`: what to repaint (a region, or "mask" for the
    user's own mask), then a prompt with options as /imagine reads them."""
    what, _, rest = text.strip().partition(" ")
    what = what.lower()
    if what not in (*REGIONS, "mask"):
        raise OptionError(f"Say what to repaint first. {EDIT_HELP}")
    if "edges" in chosen_fields(rest):
        raise OptionError("--edges is for /imagine: /edit repaints the picture itself.")
    return what, parse_imagine(rest)


def parse_styles(raw: str) -> tuple[StyleRef, ...]:
    """`ikea`, `ikea:0.7 ghibli` or `ikea,ghibli:1.2`: names, each with an optional weight."""
    styles = []
    for word in raw.replace(",", " ").split():
        name, _, weight = word.partition(":")
        name = name.lower()
        if not STYLE_NAME.fullmatch(name):
            raise OptionError(
                f"{name!r} is not a style name: lower-case letters, digits, - and _, such as "
                "--style ikea or --style ikea:0.7."
            )
        if not weight:
            styles.append(asked_style(name))
            continue
        if not _WEIGHT.fullmatch(weight) or not 0 <= float(weight) <= STYLE_WEIGHT.high:
            raise OptionError(
                f"The weight of style {name!r} must be a number {STYLE_WEIGHT.range}, "
                f"not {weight!r}."
            )
        styles.append(asked_style(name, float(weight)))
    if len(styles) > MAX_STYLES:
        raise OptionError(f"At most {MAX_STYLES} styles can be mixed, not {len(styles)}: {raw}.")
    return tuple(styles)


def chosen_fields(text: str) -> frozenset[str]:
    """The request fields the options in `text` set (as `parse_imagine` reads them)."""
    names = (m[1].lower() for m in _OPTION.finditer(text))
    return frozenset(_OPTIONS[name][0] for name in names if name in _OPTIONS)


def _value(name: str, kind: str, raw: str) -> Any:
    if kind == "styles":
        if not raw:
            raise OptionError(f"--{name} needs a style's name, for example --{name} ikea:0.7.")
        return parse_styles(raw)
    if kind == "text":
        if not raw:
            raise OptionError(f"--{name} needs words after it, for example --{name} glasses.")
        return raw
    if not raw or " " in raw:
        example = {"int": "42", "float": "7.5", "ratio": "3:2"}[kind]
        shown = f"{raw!r}" if raw else "nothing"
        raise OptionError(f"--{name} takes one value, such as --{name} {example}, not {shown}.")
    if kind == "int":
        if not re.fullmatch(r"\d{1,10}", raw):
            raise OptionError(f"--{name} needs a whole number, not {raw!r}.")
        return int(raw)
    if kind == "float":
        try:
            value = float(raw)
        except ValueError:
            raise OptionError(f"--{name} needs a number, not {raw!r}.") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise OptionError(f"--{name} needs a number, not {raw!r}.")
        return value
    if not _RATIO.fullmatch(raw):
        raise OptionError(f"--{name} needs a ratio written W:H, such as 3:2, not {raw!r}.")
    return raw
