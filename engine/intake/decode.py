"""Safe decoding of untrusted image bytes, and re-encoding without any metadata.

Only JPEG, PNG, WebP and HEIC/HEIF are opened. Size, pixel count, shorter side and aspect
ratio are checked from the header before any pixel is decoded, and Pillow's
decompression-bomb warning is an error here. Large JPEGs are decoded straight to about the
working size with libjpeg's DCT scaling (`draft`); anything else is scaled down to it right
after decoding, so memory per upload stays bounded. EXIF orientation is applied when it
can be read (a damaged or odd one counts as none), colours are converted to sRGB, and the
result is a fresh RGB image that carries no EXIF, GPS, XMP, ICC profile or comment.

One rule for every step: whatever goes wrong while reading or normalising a file becomes a
PhotoRefused for that file, never an exception that would cost the rest of its batch.
"""

from __future__ import annotations

import io
import logging
import math
import warnings

import numpy as np
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from engine.intake.errors import PhotoRefused
from engine.intake.settings import IntakeSettings

__all__ = ["ALLOWED_FORMATS", "check_header", "decode_image", "encode_jpeg", "encode_png"]

_log = logging.getLogger(__name__)

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    _HEIF_FORMATS: tuple[str, ...] = ("HEIF",)
except ImportError:  # pragma: no cover - pillow-heif is a dependency, but keep going without it
    _HEIF_FORMATS = ()

ALLOWED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", *_HEIF_FORMATS)
_FORMAT_LIST = "JPEG, PNG, WebP or HEIC"
_SRGB = ImageCms.createProfile("sRGB")
# Pillow's bomb guard is a warning by default; here it is always an error. Set once for the
# process, because catch_warnings() is not safe while decoding runs in worker threads.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
# Pillow warns about what it skips in a malformed file (EXIF entries, APNG frames...); a
# crafted file makes hundreds, and on the command line each would reach the user as a line
# of Pillow's source. The file's verdict says what matters.
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
_DAMAGED = "the image is damaged or incomplete: send the original photo again"
# EXIF orientation -> the transposition that shows the photo upright (EXIF 2.32, 4.6.4).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# Sample formats of more than 8 bits (16-bit PNGs), brought down to 8-bit grey.
_DEEP_MODES = ("I", "F", "I;16", "I;16L", "I;16B", "I;16N")


def decode_image(data: bytes, settings: IntakeSettings) -> Image.Image:
    """Decode `data` into a metadata-free RGB image of at most the working size, or raise
    PhotoRefused; nothing else ever comes out of it."""
    if not data:
        raise PhotoRefused("the file is empty: send the photo again")
    if len(data) > settings.max_file_bytes:
        raise PhotoRefused(
            f"file too large ({len(data) / 1048576:.1f} MB): "
            f"send a photo of at most {settings.max_file_mb:g} MB"
        )
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            check_header(img.size, settings)
            _draft(img, settings.working_max_side)
            img.load()
            return _normalise(img, settings.working_max_side)
    except PhotoRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoRefused(_too_many_pixels(settings)) from None
    except UnidentifiedImageError:
        raise PhotoRefused(_unidentified_reason(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # Pillow reports truncated and corrupt data with these.
        raise PhotoRefused(_DAMAGED) from None
    except Exception:
        # Anything else a crafted file provokes in a decoder (struct.error, IndexError,
        # MemoryError...): this file is refused, the batch goes on. The traceback goes to
        # the log at INFO, which the command line does not print.
        _log.info("an upload could not be decoded", exc_info=True)
        raise PhotoRefused(_DAMAGED) from None


# Major brands of HEIF files (ISO/IEC 23008-12); AVIF ("avif") is not among them.
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1")
# Formats people do send, recognised by their first bytes only: nothing else is parsed.
_OTHER_FORMATS = ((b"GIF8", "GIF"), (b"II*\0", "TIFF"), (b"MM\0*", "TIFF"))


def _unidentified_reason(data: bytes) -> str:
    """Why Pillow could not open `data`: a damaged allowed file, another format, or no image."""
    head = data[:16]
    # An ISO media file (HEIF, AVIF) names its brands in its first box.
    ftyp = data[8 : min(int.from_bytes(data[:4], "big"), 64)] if head[4:8] == b"ftyp" else b""
    name = next((n for magic, n in _OTHER_FORMATS if head.startswith(magic)), None)
    if name is None and head[:2] == b"BM" and len(data) > 18 and data[14] in (12, 40, 56, 108, 124):
        name = "BMP"
    if name is None and b"avif" in ftyp:
        name = "AVIF"
    if name is not None:
        return f"{name} images are not accepted: send the photo as {_FORMAT_LIST}"
    if (
        head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (bool(_HEIF_FORMATS) and ftyp[:4] in _HEIF_BRANDS)
    ):
        return _DAMAGED
    return f"not an image: send a photo as {_FORMAT_LIST}"


def check_header(size: tuple[int, int], settings: IntakeSettings) -> None:
    """Refuse a picture by the dimensions its header announces, before any pixel is decoded.

    The guard for every picture a user sends, whatever it is for.
    """
    width, height = size
    if width * height > settings.max_pixels:
        raise PhotoRefused(_too_many_pixels(settings))
    if min(width, height) < settings.min_side_px:
        raise PhotoRefused(
            f"image too small ({width}x{height}): send a photo at least "
            f"{settings.min_side_px} pixels on its shorter side"
        )
    if max(width, height) > settings.max_aspect_ratio * min(width, height):
        raise PhotoRefused(
            f"its shape is too extreme ({width} x {height}): send a photo whose longer side "
            f"is at most {settings.max_aspect_ratio:g} times its shorter side"
        )


def _too_many_pixels(settings: IntakeSettings) -> str:
    return f"image too large: send a photo of at most {settings.max_pixels / 1e6:g} megapixels"


def _draft(img: Image.Image, max_side: int) -> None:
    """Have libjpeg decode a large JPEG at 1/2, 1/4 or 1/8 scale, still at least `max_side`
    on its longer side: a 40 MP photo then never exists at full size in memory."""
    if img.format != "JPEG" or max(img.size) <= max_side:
        return
    scale = max_side / max(img.size)
    img.draft(img.mode, (math.ceil(img.width * scale), math.ceil(img.height * scale)))


def _normalise(img: Image.Image, max_side: int) -> Image.Image:
    icc = img.info.get("icc_profile")
    upright = _UPRIGHT.get(_orientation(img))
    if img.mode in _DEEP_MODES:
        img = _eight_bit(_shrink(img.convert("I") if img.mode != "F" else img, max_side))
    if img.mode == "RGB":
        img = _shrink(img, max_side)  # converting would copy all its pixels first
    elif img.mode == "L":
        img = _shrink(img, max_side).convert("RGB")
    else:
        # Flatten transparency onto white rather than black: selfies with alpha are rare,
        # and black backgrounds fool the face detector more often. Scaled first, because
        # Pillow scales RGBA premultiplied and the flattening then works on few pixels.
        rgba = _shrink(img.convert("RGBA"), max_side)
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    if upright is not None:
        img = img.transpose(upright)
    if icc:
        img = _to_srgb(img, icc)
    # A fresh image holds pixels only: no info dict, no EXIF, no XMP, no profile.
    clean = Image.new("RGB", img.size)
    clean.paste(img)
    return clean


def _orientation(img: Image.Image) -> int:
    """The EXIF (or XMP) orientation, 1 to 8; 1 (as stored) when absent, damaged or odd."""
    try:
        value = img.getexif().get(ExifTags.Base.Orientation)
    except Exception:  # malformed IFDs raise struct.error, ValueError, KeyError...
        _log.info("unreadable EXIF: orientation taken as none", exc_info=True)
        return 1
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]  # a count of 1 given as a list
    if isinstance(value, int) and not isinstance(value, bool) and value in _UPRIGHT:
        return value
    return 1


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    longest = max(img.size)
    if longest <= max_side:
        return img
    scale = max_side / longest
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _eight_bit(img: Image.Image) -> Image.Image:
    """A 16-bit (or float) grey image as 8-bit grey: scaled, not clipped to white."""
    values = np.asarray(img, dtype=np.float32)
    top = float(values.max()) if values.size else 0.0
    if img.mode == "F" and top <= 1.0:
        values = values * 255.0
    elif top > 255.0:
        values = values * (255.0 / (65535.0 if top <= 65535.0 else top))
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L")


def _to_srgb(img: Image.Image, icc: bytes) -> Image.Image:
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
    except Exception:  # a broken or foreign (CMYK, grey) profile: keep the pixels as they are
        return img
    return converted if converted is not None else img


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def encode_png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
