"""decode_image and the image filter on crafted files: EXIF read defensively, the shape limit,
the working size, deep and odd modes; names made visible. Hypothesis builds the EXIF
directories (derandomized: the same examples on every run, so a failure replays)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers_images import encode, gradient, person
from hostile import COUNTS, TAGS, TIFF_TYPES, exif_blob, jpeg_with_exif, png_raw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot.core import UserStatus, Verdict
from bot.discord.texts import verdicts_text as discord_verdicts
from bot.telegram.texts import verdicts_text as telegram_verdicts
from engine.intake import FaceAnalyzer, IntakeSettings, PhotoRefused, analyze_photo, decode_image
from engine.intake.analyze import UNREADABLE
from engine.intake.names import MAX_SHOWN, shown_name
from engine.safety import ImageFilter

SETTINGS = IntakeSettings()
FUZZ = settings(
    max_examples=150, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def turned_photo() -> tuple[Image.Image, bytes]:
    """A landscape picture stored with a red top-left corner, and its JPEG."""
    stored = Image.new("RGB", (300, 200), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 40))
    return stored, encode(stored, "JPEG", quality=95)


def red_corner(img: Image.Image) -> tuple[int, int]:
    """Where the red corner ended up: (0 or 1 for left/right, 0 or 1 for top/bottom)."""
    arr = np.asarray(img)
    ys, xs = np.nonzero((arr[:, :, 0] > 200) & (arr[:, :, 2] < 60))
    return int(xs.mean() > img.width / 2), int(ys.mean() > img.height / 2)


# --- EXIF ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (8, struct.pack("<h", -1)),  # SSHORT -1: the example
        (3, struct.pack("<H", 9)),  # out of range
        (3, struct.pack("<H", 0)),
        (11, struct.pack("<f", 6.0)),  # FLOAT
        (2, b"6\0\0\0"),  # ASCII "6"
        (5, b"\xff\xff\xff\xff"),  # RATIONAL at an offset past the end
        (0xFFFF, struct.pack("<H", 6)),  # no such type
    ],
)
def test_an_unreadable_orientation_counts_as_none(kind: int, value: bytes) -> None:
    _, jpeg = turned_photo()
    img = decode_image(jpeg_with_exif(jpeg, exif_blob([(0x0112, kind, 1, value)])), SETTINGS)
    assert img.size == (300, 200)
    assert red_corner(img) == (0, 0)


@pytest.mark.parametrize(
    "entry",
    [
        (0x0128, 6, 1, b"\xff"),  # ResolutionUnit SBYTE -1: struct.error before
        (0x0100, 9, 1, struct.pack("<i", -1)),  # ImageWidth SLONG -1: struct.error
        (0x010F, 11, 1, struct.pack("<f", 1.5)),  # Make FLOAT: AttributeError
        (0x011A, 7, 1, b"\x0bh\xe1\xf4"),  # XResolution UNDEFINED: TypeError
        (0x8769, 8, 1, struct.pack("<h", -1)),  # Exif IFD pointer SSHORT -1: "damaged"
    ],
)
def test_a_valid_orientation_beside_malformed_entries_is_applied(
    entry: tuple[int, int, int, bytes],
) -> None:
    _, jpeg = turned_photo()
    exif = exif_blob([(0x0112, 3, 1, struct.pack("<H", 6)), entry])
    img = decode_image(jpeg_with_exif(jpeg, exif), SETTINGS)
    assert img.size == (200, 300)  # turned upright
    assert red_corner(img) == (1, 0)  # the top-left corner went to the top right
    assert img.info == {} and len(img.getexif()) == 0


_ENTRY = st.tuples(
    st.sampled_from(TAGS),
    st.sampled_from(TIFF_TYPES),
    st.one_of(st.sampled_from(COUNTS), st.integers(0, 0xFFFFFFFF)),
    st.binary(min_size=4, max_size=4),
)


@FUZZ
@given(
    orientation=st.integers(-2, 10),
    entries=st.lists(_ENTRY, max_size=12),
    order=st.sampled_from("<>"),
    ifd_offset=st.one_of(st.just(8), st.integers(0, 0xFFFFFFFF)),
    next_ifd=st.sampled_from((0, 8, 0xFFFFFFFF)),
    tail=st.binary(max_size=64),
)
def test_exif_never_costs_a_photo(
    orientation: int,
    entries: list[tuple[int, int, int, bytes]],
    order: str,
    ifd_offset: int,
    next_ifd: int,
    tail: bytes,
) -> None:
    """Whatever its EXIF holds, a sound JPEG decodes, upright if its orientation is valid."""
    _, jpeg = turned_photo()
    first = (0x0112, 3, 1, struct.pack(order + "h", orientation))
    exif = exif_blob([first, *entries], order=order, ifd_offset=ifd_offset, next_ifd=next_ifd,
                     tail=tail)  # fmt: skip
    img = decode_image(jpeg_with_exif(jpeg, exif), SETTINGS)
    assert img.mode == "RGB" and img.info == {}
    assert img.size in ((300, 200), (200, 300))
    if ifd_offset == 8 and orientation in (6, 8) and all(e[0] != 0x0112 for e in entries):
        assert img.size == (200, 300)


@FUZZ
@given(data=st.binary(min_size=1, max_size=3000), where=st.sampled_from(("JPEG", "PNG", "WEBP")))
def test_garbage_metadata_chunks_never_escape_as_exceptions(data: bytes, where: str) -> None:
    """Random bytes as EXIF, ICC profile and XMP: an image or a PhotoRefused, nothing else."""
    img = gradient(160, 140)
    try:
        if where == "JPEG":
            raw = jpeg_with_exif(
                encode(img, "JPEG", icc_profile=data, xmp=data), b"Exif\0\0" + data
            )
        else:
            raw = encode(img, where, exif=b"Exif\0\0" + data, icc_profile=data)
    except (OSError, ValueError, struct.error):
        return  # Pillow would not write this one
    try:
        out = decode_image(raw, SETTINGS)
    except PhotoRefused as refusal:
        assert refusal.reason
    else:
        assert out.mode == "RGB" and out.size in ((160, 140), (140, 160))


# --- shape and size --------------------------------------------------------------------------


def test_the_shape_limit_is_checked_from_the_header() -> None:
    assert decode_image(encode(gradient(512, 128), "PNG"), SETTINGS).size == (512, 128)
    with pytest.raises(PhotoRefused) as info:
        decode_image(encode(gradient(128, 513), "PNG"), SETTINGS)
    assert info.value.reason == (
        "its shape is too extreme (128 x 513): send a photo whose longer side is at most "
        "4 times its shorter side"
    )
    # Checked before decoding: pixel data that would not decode is never reached.
    garbled = bytearray(encode(gradient(128, 600), "PNG"))
    garbled[60:-12] = bytes(len(garbled) - 72)
    with pytest.raises(PhotoRefused, match=r"too extreme \(128 x 600\)"):
        decode_image(bytes(garbled), SETTINGS)
    # The same damage within the shape limit is found by decoding.
    with pytest.raises(PhotoRefused, match="damaged"):
        decode_image(encode(gradient(128, 500), "PNG")[:70] + bytes(40), SETTINGS)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_large_pictures_come_out_at_the_working_size(fmt: str) -> None:
    settings = IntakeSettings(working_max_side=600)
    stored = gradient(1800, 1200)
    img = decode_image(encode(stored, fmt, quality=90), settings)
    assert img.size == (600, 400)
    # Scaled, not cropped: the colours of the corners are still there.
    diff = np.abs(np.asarray(img, np.int16) - np.asarray(stored.resize((600, 400)), np.int16))
    assert float(diff.mean()) < 6.0


def test_a_large_jpeg_is_decoded_by_dct_scaling() -> None:
    """draft() makes libjpeg decode at 1/2: the full-size image never exists."""
    data = encode(gradient(2400, 1600), "JPEG", quality=90)
    with Image.open(io.BytesIO(data)) as img:
        img.draft(img.mode, (1200, 800))
        assert img.size == (1200, 800)
    assert decode_image(data, IntakeSettings(working_max_side=1000)).size == (1000, 667)


# --- modes ----------------------------------------------------------------------------------


def test_16_bit_grey_is_scaled_not_clipped_to_white() -> None:
    width, height = 200, 160
    ramp = (np.linspace(0, 65535, width, dtype=np.float64)[None, :].repeat(height, 0)).astype(">u2")
    rows = b"".join(b"\0" + ramp[y].tobytes() for y in range(height))
    img = decode_image(png_raw(width, height, 16, 0, rows), SETTINGS)
    grey = np.asarray(img)[:, :, 0]
    assert grey[:, :5].mean() < 10 and grey[:, -5:].mean() > 245
    assert 100 < grey.mean() < 155  # before, every value above 255 became white


def test_cmyk_and_palette_with_bad_indices_decode_or_are_refused() -> None:
    assert decode_image(encode(gradient().convert("CMYK"), "JPEG"), SETTINGS).mode == "RGB"
    plte = (
        struct.pack(">I", 6)
        + b"PLTE"
        + bytes(6)
        + struct.pack(">I", zlib.crc32(b"PLTE" + bytes(6)))
    )
    rows = b"".join(b"\0" + bytes(range(200, 255)) * 4 for _ in range(150))  # indices past 2
    try:
        img = decode_image(png_raw(220, 150, 8, 3, rows, [plte]), SETTINGS)
    except PhotoRefused as refusal:
        assert "damaged" in refusal.reason
    else:
        assert img.mode == "RGB" and img.size == (220, 150)


# --- the image filter -------------------------------------------------------------------------


def test_the_image_filter_takes_a_long_thin_picture() -> None:
    """NudeNet pads to a square: at 128 x 312500 it asked OpenCV for 290 GB (cv2.error)."""
    strip = Image.new("RGB", (128, 312_500), (200, 180, 160))
    verdict = ImageFilter({"FACE_FEMALE": 0.5}).check(strip)
    assert verdict.allowed and verdict.detections == ()


def test_the_image_filter_maps_boxes_back_to_the_picture(faces: Path) -> None:
    with Image.open(person(faces, "paul_allen")[0]) as img:
        photo = img.convert("RGB")
    photo.thumbnail((1000, 1000))
    image_filter = ImageFilter({"FACE_FEMALE": 0.5})
    small = image_filter.check(photo)
    big = image_filter.check(photo.resize((photo.width * 3, photo.height * 3)))
    assert small.blocked_by == big.blocked_by == ("FACE_FEMALE",)
    (a,) = [d for d in small.detections if d.label == "FACE_FEMALE"]
    (b,) = [d for d in big.detections if d.label == "FACE_FEMALE"]
    for u, v in zip(a.box, b.box, strict=True):
        assert abs(v - 3 * u) <= 0.1 * max(a.box[2:]) * 3


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("x.jpg\nx.jpg: accepted", "x.jpg\\nx.jpg: accepted"),
        ("a\r\tb.png", "a\\r\\tb.png"),
        ("evil\u202egpj.exe", "evil\\u202egpj.exe"),
        ("\x1b[31mred.jpg", "\\x1b[31mred.jpg"),
        ("zero\u200bwidth.jpg", "zero\\u200bwidth.jpg"),
        ("line\u2028sep.jpg", "line\\u2028sep.jpg"),
        ("caf\udce9.jpg", "caf\\udce9.jpg"),  # an undecodable byte of a POSIX name
        ("Ünïcødé selfie 😀.jpg", "Ünïcødé selfie 😀.jpg"),  # ordinary text stays as it is
    ],
)
def test_names_are_shown_on_one_line_with_hidden_characters_visible(name: str, shown: str) -> None:
    assert shown_name(name) == shown
    shown_name(name).encode("utf-8")  # printable on any UTF-8 terminal


def test_long_names_keep_their_start_and_extension() -> None:
    shown = shown_name("a" * 500 + ".jpg")
    assert len(shown) == MAX_SHOWN - 1 and shown.startswith("aaa") and shown.endswith("a.jpg")
    assert "…" in shown
    assert shown_name("/" + "d" * 300 + "/x.jpg", limit=None).endswith("/x.jpg")


@FUZZ
@given(st.text(max_size=300))
def test_a_shown_name_is_one_line_whatever_the_name(name: str) -> None:
    shown = shown_name(name)
    assert len(shown.splitlines()) <= 1 and len(shown) <= MAX_SHOWN
    assert not any(ch in shown for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def test_both_chats_show_verdict_names_escaped() -> None:
    name = "x.jpg\nx.jpg: accepted\u202e"
    verdict = Verdict(name, accepted=False, reason="file name not allowed")
    telegram = telegram_verdicts([name], [verdict], photos=0, max_photos=20)
    discord = discord_verdicts([verdict], UserStatus(None, False, 0, 20, (), ()))
    for text in (telegram, discord):
        first = text.splitlines()[0]
        assert "x.jpg" in first and "\\n" in first and "\\u202e" in first, text
        assert "refused" in first and "\u202e" not in text
        assert not any(line.startswith("x.jpg: accepted") for line in text.splitlines())


def test_a_failure_after_decoding_refuses_that_photo_only(analyzer: FaceAnalyzer) -> None:
    """The rule holds past decoding too: a step that fails (here the screen, as OpenCV's
    allocation did) refuses the photo with a reason instead of raising."""

    def failing_screen(image: Image.Image) -> None:
        raise MemoryError(f"cannot allocate for {image.size}")

    data = encode(gradient(400, 300), "JPEG")
    with pytest.raises(PhotoRefused) as info:
        analyze_photo(data, SETTINGS, 64, analyzer, screen=failing_screen)
    assert info.value.reason == UNREADABLE
