"""decode_image on hostile and ordinary uploads, and metadata-free re-encoding."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import pytest
from helpers_images import (
    COMMENT,
    XMP_PACKET,
    encode,
    exif_with_gps,
    gradient,
    noise,
    png_bomb,
    srgb_icc,
)
from PIL import Image, PngImagePlugin, features

from engine.intake import IntakeSettings, PhotoRefused, decode_image, encode_jpeg, encode_png

SETTINGS = IntakeSettings()


def refusal(data: bytes, settings: IntakeSettings = SETTINGS) -> str:
    with pytest.raises(PhotoRefused) as info:
        decode_image(data, settings)
    return info.value.reason


# --- hostile input -------------------------------------------------------------------------


def test_decompression_bomb_png_is_refused_before_decoding() -> None:
    data = png_bomb(20_000, 20_000)
    assert len(data) < 100_000  # tiny on disk, 400 megapixels once decoded
    assert "image too large" in refusal(data)
    assert "megapixels" in refusal(data)


def test_png_just_above_max_pixels_is_refused() -> None:
    # 6325 x 6325 = 40,005,625: above the default 40 MP, below Pillow's own bomb limit.
    assert SETTINGS.max_pixels < 6325 * 6325
    assert "at most 40 megapixels" in refusal(png_bomb(6325, 6325))


def test_max_pixels_boundary() -> None:
    settings = IntakeSettings(max_pixels=1_000_000)
    assert decode_image(png_bomb(1000, 1000), settings).size == (1000, 1000)
    assert "image too large" in refusal(png_bomb(1001, 1000), settings)


def test_truncated_jpeg_is_refused() -> None:
    data = encode(gradient(640, 480), "JPEG", quality=90)
    assert "damaged or incomplete" in refusal(data[: len(data) // 2])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_truncated_files_of_every_format_are_refused(fmt: str) -> None:
    data = encode(gradient(400, 300), fmt)
    for fraction in (0.2, 0.5, 0.9):
        assert "damaged or incomplete" in refusal(data[: int(len(data) * fraction)])


def test_text_file_is_not_an_image() -> None:
    reason = refusal(b"Dear bot,\nplease make me an astronaut.\n" * 20)
    assert "not an image" in reason
    assert "JPEG, PNG, WebP or HEIC" in reason


def test_empty_file_is_refused() -> None:
    assert "empty" in refusal(b"")


def test_one_pixel_image_is_too_small() -> None:
    reason = refusal(encode(Image.new("RGB", (1, 1), "red"), "PNG"))
    assert "image too small (1x1)" in reason
    assert "128 pixels" in reason


def test_short_side_below_minimum_is_refused() -> None:
    assert "too small" in refusal(encode(gradient(500, 127), "PNG"))
    assert decode_image(encode(gradient(500, 128), "PNG"), SETTINGS).size == (500, 128)


def test_oversized_file_is_refused_before_decoding() -> None:
    settings = IntakeSettings(max_file_mb=0.01)  # 10,485 bytes
    data = encode(noise(320, 240), "PNG")  # noise does not compress: about 230 KB
    assert len(data) > settings.max_file_bytes
    reason = refusal(data, settings)
    assert "file too large" in reason
    assert "at most 0.01 MB" in reason
    # The size check comes first: even garbage of that size gets the size reason.
    assert "file too large" in refusal(b"\0" * (settings.max_file_bytes + 1), settings)


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "AVIF"])
def test_formats_outside_the_allowed_list_are_refused(fmt: str) -> None:
    if fmt == "AVIF" and not features.check("avif"):
        pytest.skip("this Pillow build cannot write AVIF")
    data = encode(gradient(), fmt)
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == fmt  # a perfectly valid file, just not an allowed format
    reason = refusal(data)
    assert f"{fmt} images are not accepted" in reason
    assert "JPEG, PNG, WebP or HEIC" in reason
    # Cut short, it is still named for what it is rather than called damaged.
    assert f"{fmt} images are not accepted" in refusal(data[:64])


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIF"])
def test_corrupted_bytes_only_ever_raise_photo_refused(fmt: str) -> None:
    """Random cuts, byte flips and deletions: any outcome but an unexpected exception."""
    data = encode(gradient(300, 200), fmt)
    rng = random.Random(fmt)
    for i in range(60):
        mutated = bytearray(data)
        if i % 3 == 0:
            mutated = mutated[: rng.randrange(len(mutated))]
        elif i % 3 == 1:
            for _ in range(rng.randrange(1, 20)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        else:
            at = rng.randrange(len(mutated))
            del mutated[at : at + rng.randrange(1, 200)]
        try:
            img = decode_image(bytes(mutated), SETTINGS)
        except PhotoRefused as refused:
            assert refused.reason
        else:
            assert img.mode == "RGB"


# --- ordinary input --------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_allowed_formats_decode_to_rgb(fmt: str) -> None:
    img = decode_image(encode(gradient(320, 240), fmt), SETTINGS)
    assert img.mode == "RGB"
    assert img.size == (320, 240)


def test_heic_decodes() -> None:
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("this libheif build has no HEIF encoder to make a test file")
    data = encode(gradient(320, 240), "HEIF", quality=90)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.format == "HEIF"
    img = decode_image(data, SETTINGS)
    assert img.mode == "RGB"
    assert img.size == (320, 240)
    # Colours survive: the left edge is low in red, the right edge high.
    assert img.getpixel((5, 120))[0] < 40  # type: ignore[index]
    assert img.getpixel((314, 120))[0] > 215  # type: ignore[index]


def test_greyscale_jpeg_becomes_rgb() -> None:
    img = decode_image(encode(gradient().convert("L"), "JPEG"), SETTINGS)
    assert img.mode == "RGB"


def test_exif_orientation_is_applied() -> None:
    # Stored landscape with a red top-left corner; Orientation 6 means "rotate 90 degrees
    # clockwise to display", so the photo is portrait and the red corner is top-right.
    stored = Image.new("RGB", (300, 200), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 40))
    data = encode(stored, "JPEG", quality=95, exif=exif_with_gps(orientation=6).tobytes())
    img = decode_image(data, SETTINGS)
    assert img.size == (200, 300)
    red, _, blue = img.getpixel((200 - 10, 10))  # type: ignore[misc]
    assert red > 200 and blue < 60
    red, _, blue = img.getpixel((10, 10))  # type: ignore[misc]
    assert red < 60 and blue > 200


def _with_all_metadata(fmt: str) -> bytes:
    img = gradient(320, 240)
    exif = exif_with_gps(orientation=1).tobytes()
    if fmt == "JPEG":
        return encode(
            img, "JPEG", exif=exif, icc_profile=srgb_icc(), xmp=XMP_PACKET, comment=COMMENT
        )
    if fmt == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_itxt("XML:com.adobe.xmp", XMP_PACKET.decode())
        text.add_text("Comment", COMMENT.decode())
        return encode(img, "PNG", exif=exif, icc_profile=srgb_icc(), pnginfo=text)
    return encode(img, fmt, exif=exif, icc_profile=srgb_icc(), xmp=XMP_PACKET)


ENCODERS: dict[str, Callable[[Image.Image], bytes]] = {"jpeg": encode_jpeg, "png": encode_png}


@pytest.mark.parametrize("source", ["JPEG", "PNG", "WEBP", "HEIF"])
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_reencoding_carries_no_metadata(source: str, encoder: str) -> None:
    data = _with_all_metadata(source)
    with Image.open(io.BytesIO(data)) as original:  # the input really carries it all
        assert "icc_profile" in original.info
        assert original.getexif().get_ifd(0x8825)  # GPS
        assert b"SECRET-XMP-CREATOR" in data and b"SecretCam" in data

    decoded = decode_image(data, SETTINGS)
    assert decoded.info == {}
    assert len(decoded.getexif()) == 0

    out = ENCODERS[encoder](decoded)
    with Image.open(io.BytesIO(out)) as img:
        for key in ("exif", "icc_profile", "xmp", "comment", "XML:com.adobe.xmp", "Comment"):
            assert key not in img.info, key
        assert len(img.getexif()) == 0
        assert not img.getexif().get_ifd(0x8825)
        assert img.size == (320, 240)
    for marker in (b"SECRET-XMP-CREATOR", COMMENT, b"SecretCam", b"Exif\0\0", b"ICC_PROFILE"):
        assert marker not in out, marker


def test_rgba_png_flattens_to_rgb_on_white() -> None:
    rgba = Image.new("RGBA", (200, 200), (0, 0, 0, 0))  # transparent black
    rgba.paste((255, 0, 0, 255), (50, 50, 150, 150))  # opaque red square
    img = decode_image(encode(rgba, "PNG"), SETTINGS)
    assert img.mode == "RGB"
    assert img.getpixel((5, 5)) == (255, 255, 255)
    assert img.getpixel((100, 100)) == (255, 0, 0)


def test_palette_png_with_transparency_flattens_to_rgb() -> None:
    img = decode_image(encode(gradient().convert("P"), "PNG", transparency=0), SETTINGS)
    assert img.mode == "RGB"
