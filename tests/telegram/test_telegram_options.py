"""Reading /imagine's Midjourney-style options (bot.telegram.options), button data, and
which pictures Telegram takes as photos."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.core import ImagineRequest
from bot.core.styles import asked_style
from bot.telegram.jobs import PHOTO_MAX_BYTES, fits_as_photo
from bot.telegram.keyboards import (
    MAX_CALLBACK_BYTES,
    Button,
    consent_keyboard,
    parse_button,
    results_keyboard,
)
from bot.telegram.options import OptionError, parse_imagine


def test_options_after_the_prompt() -> None:
    request = parse_imagine("me on the moon --seed 42 --ar 3:2 --no glasses --steps 30 --n 4")
    assert request == ImagineRequest(
        "me on the moon", negative="glasses", seed=42, steps=30, aspect_ratio="3:2", count=4
    )


def test_no_options_and_long_negatives_and_phone_dashes() -> None:
    assert parse_imagine("  a  lego   figure ") == ImagineRequest("a lego figure")
    request = parse_imagine("a knight —no hats, swords and shields —guidance 6.5 –aspect 16:9")
    assert request.prompt == "a knight"
    assert request.negative == "hats, swords and shields"
    assert (request.guidance, request.aspect_ratio) == (6.5, "16:9")
    assert parse_imagine("rock--n--roll star").prompt == "rock--n--roll star"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Say what to imagine"),
        ("--seed 4", "Say what to imagine"),
        ("me --stlye raw", "There is no option --stlye"),
        ("me --no hats --negative hats", "--negative is given twice (as --no and --negative)"),
        ("me --seed", "--seed takes one value, such as --seed 42, not nothing"),
        ("me --seed 4 2", "--seed takes one value, such as --seed 42, not '4 2'"),
        ("me --seed -4", "--seed needs a whole number, not '-4'"),
        ("me --n two", "--n needs a whole number, not 'two'"),
        ("me --guidance nan", "--guidance needs a number, not 'nan'"),
        ("me --ar wide", "--ar needs a ratio written W:H, such as 3:2, not 'wide'"),
        ("me --no", "--no needs words after it"),
        ("me --ar 1:1 --aspect 2:3", "--aspect is given twice (as --ar and --aspect)"),
    ],
)
def test_unreadable_options_say_what_to_write(text: str, message: str) -> None:
    with pytest.raises(OptionError) as refusal:
        parse_imagine(text)
    assert message in str(refusal.value)


def test_styles_are_named_for_the_core_to_look_up() -> None:
    request = parse_imagine("me as a knight --style oil-painting:0.8, ghibli --seed 3")
    assert request.prompt == "me as a knight" and request.seed == 3
    # The core finds each style's file and trigger words in the library, and its weight
    # where none is given (asked_style's marker).
    assert request.styles == (asked_style("oil-painting", 0.8), asked_style("ghibli"))


def test_range_checks_are_left_to_the_core() -> None:
    # 7:5 is not offered and 9 pictures are too many, but only the core says so.
    assert parse_imagine("me --ar 7:5 --n 9").count == 9


def test_callback_data_round_trips_and_fits_in_64_bytes() -> None:
    big = 999_999_999_999
    actions = ("reroll", "vary", "upscale", "file", "report")
    keyboard = results_keyboard(big, 4, actions)
    data = [b.callback_data for row in keyboard.inline_keyboard for b in row]
    assert all(isinstance(d, str) and len(d.encode()) <= MAX_CALLBACK_BYTES for d in data)
    assert [parse_button(str(d)) for d in data] == [
        Button("reroll", (str(big),)),
        *[Button("vary", (str(big), str(n))) for n in (1, 2, 3, 4)],
        *[Button("upscale", (str(big), str(n))) for n in (1, 2, 3, 4)],
        Button("file", (str(big),)),
        Button("report", (str(big),)),
    ]
    # A result made from a picture offers only what needs no picture kept.
    only = results_keyboard(big, 1, ("upscale", "file", "report"), styles=["ikea"])
    labels = [b.text for row in only.inline_keyboard for b in row]
    assert labels == ["Upscale", "Send as file", "Report"]
    consent = consent_keyboard("2026-11").inline_keyboard[0]
    assert parse_button(str(consent[0].callback_data)) == Button("consent", ("yes", "2026-11"))
    with pytest.raises(ValueError, match="64 bytes"):
        consent_keyboard("v" * 60)
    for stale in ["", "reroll", "reroll:", "reroll:x", "vary:1", "nuke:1", "forget:maybe"]:
        assert parse_button(stale) is None


def test_a_picture_too_large_for_a_telegram_photo_goes_as_a_file() -> None:
    def png(width: int, height: int) -> bytes:
        out = io.BytesIO()
        Image.new("1", (width, height)).save(out, format="PNG")  # 1 bit: a small file
        return out.getvalue()

    assert fits_as_photo(png(1024, 1024))
    assert fits_as_photo(png(5000, 5000))  # width + height at the limit
    assert not fits_as_photo(png(6000, 4001))
    assert not fits_as_photo(b"\x89PNG" + bytes(PHOTO_MAX_BYTES))
