"""Safe decoding of untrusted image bytes, and re-encoding without any metadata.

Only JPEG, PNG, WebP and HEIC/HEIF are opened. Dimensions are checked from the header
before any pixel is decoded, and Pillow's decompression-bomb warning is an error here.
EXIF orientation is applied, colours are converted to sRGB, and the result is a fresh
RGB image that carries no EXIF, GPS, XMP, ICC profile or comment.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from engine.intake.errors import PhotoRefused
from engine.intake.settings import IntakeSettings

__all__ = ["ALLOWED_FORMATS", "decode_image", "encode_jpeg", "encode_png"]

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
_DAMAGED = "the image is damaged or incomplete: send the original photo again"


def decode_image(data: bytes, settings: IntakeSettings) -> Image.Image:
    """Decode `data` into a metadata-free RGB image, or raise PhotoRefused."""
    if not data:
        raise PhotoRefused("the file is empty: send the photo again")
    if len(data) > settings.max_file_bytes:
        raise PhotoRefused(
            f"file too large ({len(data) / 1048576:.1f} MB): "
            f"send a photo of at most {settings.max_file_mb:g} MB"
        )
    try:
        with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
            _check_dimensions(img.size, settings)
            img.load()
            return _normalise(img)
    except PhotoRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PhotoRefused(_too_many_pixels(settings)) from None
    except UnidentifiedImageError:
        raise PhotoRefused(_unidentified_reason(data)) from None
    except (OSError, SyntaxError, ValueError, EOFError):
        # Pillow reports truncated and corrupt data with these.
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


def _check_dimensions(size: tuple[int, int], settings: IntakeSettings) -> None:
    width, height = size
    if width * height > settings.max_pixels:
        raise PhotoRefused(_too_many_pixels(settings))
    if min(width, height) < settings.min_side_px:
        raise PhotoRefused(
            f"image too small ({width}x{height}): send a photo at least "
            f"{settings.min_side_px} pixels on its shorter side"
        )


def _too_many_pixels(settings: IntakeSettings) -> str:
    return f"image too large: send a photo of at most {settings.max_pixels / 1e6:g} megapixels"


def _normalise(img: Image.Image) -> Image.Image:
    icc = img.info.get("icc_profile")
    img = ImageOps.exif_transpose(img)
    if img.mode not in ("RGB", "L"):
        # Flatten transparency onto white rather than black: selfies with alpha are rare,
        # and black backgrounds fool the face detector more often.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("RGB")
    if icc:
        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            converted = ImageCms.profileToProfile(img, source, _SRGB, outputMode="RGB")
            if converted is not None:
                img = converted
        except (ImageCms.PyCMSError, OSError):
            pass  # a broken profile: keep the pixels as they are
    # A fresh image holds pixels only: no info dict, no EXIF, no XMP, no profile.
    clean = Image.new("RGB", img.size)
    clean.paste(img)
    return clean


def encode_jpeg(img: Image.Image, quality: int = 95) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def encode_png(img: Image.Image) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
