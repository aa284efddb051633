"""Image builders and the shared-photo location used by the intake tests (not a test module)."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageCms

FACES_ENV = "SELFIEBOOTH_FACES_DIR"
_NOT_IN_REPO = "(the shared test photos are not part of the repository)"
FACES_ABSENT = f"../shared/faces is absent {_NOT_IN_REPO}"

# A minimal XMP packet: the marker strings are searched for in encoded bytes.
XMP_PACKET = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" '
    b'dc:creator="SECRET-XMP-CREATOR"/></rdf:RDF></x:xmpmeta>'
    b'<?xpacket end="w"?>'
)
COMMENT = b"SECRET-JPEG-COMMENT"


def faces_dir() -> Path:
    """The shared test photos: $SELFIEBOOTH_FACES_DIR, else ../shared/faces beside the repo."""
    override = os.environ.get(FACES_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1].parent / "shared" / "faces"


def faces_absent_reason() -> str:
    override = os.environ.get(FACES_ENV)
    if override:
        return f"{FACES_ENV}={override} is absent {_NOT_IN_REPO}"
    return FACES_ABSENT


def person(root: Path, name: str) -> list[Path]:
    return sorted((root / "people" / name).glob("*.jpg"))


def people_photos(root: Path) -> list[Path]:
    return sorted(root.glob("people/*/*.jpg"))


def gradient(width: int = 320, height: int = 240) -> Image.Image:
    """An RGB image with different content in every corner (for orientation checks)."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, 255 - x], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def noise(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def encode(img: Image.Image, fmt: str, **params: Any) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **params)
    return out.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid single-colour PNG of `width` x `height`, 1 bit per pixel, compressed to a few KB.

    Written chunk by chunk with zlib: Pillow would need the whole bitmap in memory to save
    it, which is exactly what the decoder must never allocate.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    """EXIF with an orientation, a camera make and a GPS IFD (a position on a map)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "SecretCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (52.0, 22.0, 31.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (4.0, 53.0, 58.0)
    return exif


def srgb_icc() -> bytes:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    return bytes(profile.tobytes())
