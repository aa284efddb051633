"""A seeded generator of hostile uploads (not a test module).

`hostile_files(seed, count, selfies)` yields files of every kind a stranger might send:
decompression bombs and extreme shapes, EXIF with every TIFF type and wrong counts and
offsets, ICC and XMP garbage, PNG chunks with lying lengths, APNG and animated WebP,
HEIC, palettes with bad indices, 16-bit and CMYK, polyglots, and truncations and bit flips
of all of them at random offsets; many are made from real selfies, so that a file whose
only fault is its metadata can be seen to be accepted. Names are hostile too. The same
seed gives the same files, so a failure replays.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from helpers_images import XMP_PACKET, encode, gradient, png_bomb
from PIL import Image

__all__ = [
    "FIXED_NAMES",
    "HostileFile",
    "exif_blob",
    "hostile_files",
    "jpeg_with_exif",
    "long_jpeg",
    "tall_png",
]

# TIFF field types 1 to 12 (TIFF 6.0), 13 (IFD), 16 to 18 (BigTIFF), and nonsense.
TIFF_TYPES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 17, 18, 99, 0xFFFF)
COUNTS = (0, 1, 2, 3, 7, 255, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF)
# Orientation, the sub-IFD pointers, and tags Pillow reads on its own.
TAGS = (0x0112, 0x8769, 0x8825, 0xA005, 0x010F, 0x011A, 0x0128, 0x0131, 0x9286, 0x927C, 0x0)
# Names a person could give a file: a forged verdict line, bidirectional overrides,
# terminal escapes, invisible characters, undecodable bytes, length.
FIXED_NAMES = (
    "x.jpg\nx.jpg: accepted",
    "cr\rover.jpg",
    "evil\u202egpj.exe",
    "\x1b[2J\x1b[31mred.jpg",
    "zero\u200bwidth\ufeff.png",
    "line\u2028sep\u2029.webp",
    "tab\there.jpg",
    "undecodable-\udcff\udcfe.jpg",
    "é" * 100 + ".jpg",
    "-rf.jpg",
    "..jpg",
    " spaced .jpg",
)


@dataclass(frozen=True, slots=True)
class HostileFile:
    name: str  # as the sender named it
    data: bytes
    kind: str  # what was done to it, for the report of a failure


# --- builders --------------------------------------------------------------------------


def exif_blob(
    entries: Sequence[tuple[int, int, int, bytes]],
    *,
    order: str = "<",
    ifd_offset: int = 8,
    next_ifd: int = 0,
    tail: bytes = b"",
) -> bytes:
    """An APP1/eXIf payload: "Exif\\0\\0", a TIFF header and one IFD of raw entries
    (tag, type, count, the 4 value-or-offset bytes), then `tail` (data offsets point to)."""
    head = (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "I", ifd_offset)
    ifd = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        ifd += struct.pack(order + "HHI", tag, kind, count) + value.ljust(4, b"\0")[:4]
    ifd += struct.pack(order + "I", next_ifd)
    return b"Exif\0\0" + head + ifd + tail


def jpeg_with_exif(jpeg: bytes, exif: bytes) -> bytes:
    """`jpeg` with an APP1 segment holding `exif` right after its SOI marker."""
    body = exif[: 0xFFFF - 2]
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def png_chunk(
    kind: bytes, body: bytes, *, length: int | None = None, crc: int | None = None
) -> bytes:
    length = len(body) if length is None else length
    crc = zlib.crc32(kind + body) if crc is None else crc
    return (
        struct.pack(">I", length & 0xFFFFFFFF) + kind + body + struct.pack(">I", crc & 0xFFFFFFFF)
    )


def png_raw(
    width: int, height: int, depth: int, colour: int, rows: bytes, extra: Sequence[bytes] = ()
) -> bytes:
    """A PNG from raw scanlines (each with its filter byte) and extra chunks before IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + b"".join(extra)
        + png_chunk(b"IDAT", zlib.compress(rows, 9))
        + png_chunk(b"IEND", b"")
    )


def tall_png(width: int = 128, height: int = 312_500) -> bytes:
    """A 1-bit PNG of `width` x `height` with a pattern (not one colour), a few hundred KB."""
    compressor = zlib.compressobj(9)
    parts = []
    row_bytes = (width + 7) // 8
    for y in range(height):
        parts.append(compressor.compress(b"\0" + bytes([0xAA if y % 16 < 8 else 0x55]) * row_bytes))
    idat = b"".join(parts) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def long_jpeg(width: int = 1500, height: int = 26_666) -> bytes:
    """A real baseline JPEG of `width` x `height` with texture, encoded in strips of rows so
    that the generator never holds more than the encoder needs."""
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    grey = (127 + 60 * np.sin(x / 17.0) + 60 * np.cos(y / 23.0)).astype(np.uint8)
    img = Image.fromarray(grey, "L").convert("RGB")
    return encode(img, "JPEG", quality=85)


def header_only_jpeg(width: int, height: int) -> bytes:
    """A JPEG whose SOF announces `width` x `height` and whose scan is a few bytes."""
    small = encode(gradient(16, 16), "JPEG", quality=50)
    at = small.index(b"\xff\xc0")
    sof = bytearray(small)
    struct.pack_into(">HH", sof, at + 5, height & 0xFFFF, width & 0xFFFF)
    return bytes(sof)


def webp_canvas(width: int, height: int) -> bytes:
    """An extended WebP whose VP8X chunk announces a canvas of `width` x `height`."""
    flags = b"\x00\x00\x00\x00"
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + struct.pack("<I", 10) + flags + canvas
    body = b"WEBP" + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- kinds of hostile file ---------------------------------------------------------------

Maker = Callable[[random.Random, bytes], tuple[str, bytes]]


def _small(rng: random.Random) -> Image.Image:
    return gradient(rng.randrange(128, 400), rng.randrange(128, 400))


def _exif_orientation(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    kind = rng.choice(TIFF_TYPES)
    count = rng.choice((1, 1, 1, 0, 2, 0xFFFF))
    value = rng.choice(
        (struct.pack("<h", -1), struct.pack("<H", 9), struct.pack("<H", 0), struct.pack("<I", 6),
         struct.pack("<f", 6.0), b"\xff\xff\xff\xff", struct.pack("<H", rng.randrange(1, 9)))
    )  # fmt: skip
    blob = exif_blob([(0x0112, kind, count, value)])
    return f"exif orientation type {kind} count {count} value {value.hex()}", jpeg_with_exif(
        selfie, blob
    )


def _exif_entries(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    order = rng.choice("<>")
    entries = []
    if rng.random() < 0.5:
        # A valid orientation: the photo is turned, and then (before the fix) Pillow wrote the
        # other, malformed entries back and raised struct.error, TypeError, AttributeError.
        entries.append((0x0112, 3, 1, struct.pack(order + "H", rng.randrange(2, 9))))
    for _ in range(rng.randrange(1, 12)):
        value = rng.choice(
            (rng.randbytes(4), struct.pack(order + "I", rng.choice((8, 0, 0xFFFFFFF0, 26, 10_000))))
        )
        entries.append((rng.choice(TAGS), rng.choice(TIFF_TYPES), rng.choice(COUNTS), value))
    tail = rng.randbytes(rng.randrange(0, 64))
    blob = exif_blob(
        entries,
        order=order,
        ifd_offset=rng.choice((8, 8, 8, 0, 4, 0xFFFFFFFF, 2)),
        next_ifd=rng.choice((0, 0, 8, 0xFFFFFFFF)),  # 8: an IFD that is its own successor
        tail=tail,
    )
    return f"exif {len(entries)} raw entries ({order})", jpeg_with_exif(selfie, blob)


def _exif_in_other_formats(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    blob = exif_blob([(0x0112, 8, 1, struct.pack("<h", -1)), (0x8769, 4, 1, b"\xff\xff\xff\x7f")])
    with Image.open(io.BytesIO(selfie)) as img:
        img = img.convert("RGB")
        fmt = rng.choice(("PNG", "WEBP"))
        return f"malformed exif in {fmt}", encode(img, fmt, exif=blob[6:] if fmt == "PNG" else blob)


def _icc_garbage(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    profile = rng.choice(
        (rng.randbytes(rng.randrange(1, 4000)), _srgb()[: rng.randrange(1, 400)],
         bytes(128) + rng.randbytes(200), b"\0" * 64)
    )  # fmt: skip
    with Image.open(io.BytesIO(selfie)) as img:
        img = img.convert("RGB")
        fmt = rng.choice(("JPEG", "PNG", "WEBP"))
        return f"icc garbage in {fmt}", encode(img, fmt, icc_profile=profile)


def _srgb() -> bytes:
    from PIL import ImageCms

    return bytes(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())


def _xmp_garbage(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    orientation = rng.choice((b"-1", b"99999999999999999999", b"abc", b"6", b"", b"1e9"))
    laughs = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
    packet = rng.choice(
        (XMP_PACKET.replace(b"/>", b' tiff:Orientation="' + orientation + b'"/>'),
         laughs + XMP_PACKET, rng.randbytes(rng.randrange(10, 3000)), XMP_PACKET[:40])
    )  # fmt: skip
    with Image.open(io.BytesIO(selfie)) as img:
        img = img.convert("RGB")
        fmt = rng.choice(("JPEG", "WEBP"))
        return f"xmp garbage in {fmt}", encode(img, fmt, xmp=packet)


def _png_chunks(rng: random.Random, _: bytes) -> tuple[str, bytes]:
    width, height = rng.randrange(128, 300), rng.randrange(128, 300)
    rows = b"".join(b"\0" + rng.randbytes(width * 3) for _ in range(height))
    choice = rng.randrange(8)
    if choice == 0:  # a chunk whose length says more than there is
        extra = [png_chunk(b"tEXt", b"k\0v", length=rng.choice((0x7FFFFFFF, 0xFFFFFFF0, 1 << 20)))]
    elif choice == 1:  # a compressed text bomb
        extra = [png_chunk(b"zTXt", b"bomb\0\0" + zlib.compress(b"\0" * (64 << 20), 9))]
    elif choice == 2:  # an ICC profile bomb
        extra = [png_chunk(b"iCCP", b"icc\0\0" + zlib.compress(b"\0" * (64 << 20), 9))]
    elif choice == 3:  # a wrong checksum
        extra = [png_chunk(b"gAMA", struct.pack(">I", 45455), crc=rng.getrandbits(32))]
    elif choice == 4:  # a second header
        extra = [png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1 << 30, 1 << 30, 8, 2, 0, 0, 0))]
    elif choice == 5:  # a palette chunk in a truecolour image, of odd length
        extra = [png_chunk(b"PLTE", rng.randbytes(rng.randrange(0, 800)))]
    elif choice == 6:  # a physical size and an eXIf of nonsense
        extra = [png_chunk(b"pHYs", rng.randbytes(9)), png_chunk(b"eXIf", rng.randbytes(60))]
    else:  # many tiny unknown chunks
        extra = [png_chunk(b"zzZz", b"") for _ in range(5000)]
    return f"png chunks {choice}", png_raw(width, height, 8, 2, rows, extra)


def _palette(rng: random.Random, _: bytes) -> tuple[str, bytes]:
    width, height = rng.randrange(128, 300), rng.randrange(128, 300)
    entries = rng.randrange(1, 17)
    plte = png_chunk(b"PLTE", rng.randbytes(entries * 3))
    trns = png_chunk(b"tRNS", rng.randbytes(rng.randrange(0, 300)))  # maybe longer than PLTE
    # Indices far beyond the palette's entries.
    rows = b"".join(b"\0" + bytes(rng.randrange(256) for _ in range(width)) for _ in range(height))
    return f"palette of {entries} with bad indices", png_raw(
        width, height, 8, 3, rows, [plte, trns]
    )


def _deep_and_odd_modes(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    with Image.open(io.BytesIO(selfie)) as img:
        rgb = img.convert("RGB")
    w, h = rgb.size
    choice = rng.randrange(8)
    if choice == 0:  # 16-bit grey
        grey = (np.asarray(rgb.convert("L"), np.uint16) * 257).astype(">u2")
        rows = b"".join(b"\0" + grey[y].tobytes() for y in range(h))
        return "16-bit grey png", png_raw(w, h, 16, 0, rows)
    if choice == 1:  # 16-bit RGBA
        arr = np.dstack([np.asarray(rgb, np.uint16) * 257, np.full((h, w), 65535, np.uint16)])
        rows = b"".join(b"\0" + arr[y].astype(">u2").tobytes() for y in range(h))
        return "16-bit rgba png", png_raw(w, h, 16, 6, rows)
    if choice == 2:
        return "cmyk jpeg", encode(rgb.convert("CMYK"), "JPEG", quality=90)
    if choice == 3:
        return "la png", encode(rgb.convert("LA"), "PNG")
    if choice == 4:
        return "1-bit png", encode(rgb.convert("1"), "PNG")
    if choice == 5:
        return "palette png with transparency", encode(rgb.convert("P"), "PNG", transparency=3)
    if choice == 6:
        return "grey jpeg", encode(rgb.convert("L"), "JPEG")
    return "rgba webp", encode(rgb.convert("RGBA"), "WEBP", lossless=True)


def _animated(rng: random.Random, _: bytes) -> tuple[str, bytes]:
    frames = [_small(rng).resize((200, 200)) for _ in range(rng.randrange(2, 6))]
    fmt = rng.choice(("PNG", "WEBP"))
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=40, loop=0)
    if fmt == "PNG" and rng.random() < 0.5:
        # acTL announcing far more frames than there are
        at = data.index(b"acTL")
        mutable = bytearray(data)
        struct.pack_into(">I", mutable, at + 4, 0xFFFFFFFF)
        data = bytes(mutable)
    return f"animated {fmt}", data


def _heic(rng: random.Random, _: bytes) -> tuple[str, bytes]:
    try:
        return "heic", encode(_small(rng), "HEIF", quality=60)
    except (KeyError, OSError, ValueError):  # no HEIF encoder in this build
        return "heic-less png", encode(_small(rng), "PNG")


def _bombs_and_shapes(rng: random.Random, _: bytes) -> tuple[str, bytes]:
    choice = rng.randrange(6)
    if choice == 0:
        return "png bomb 20000x20000", png_bomb(20_000, 20_000)
    if choice == 1:
        side = rng.choice((65_000, 40_000, 7_000))
        return f"jpeg header {side}x{side}", header_only_jpeg(side, side)
    if choice == 2:
        return "webp canvas 16383x16383", webp_canvas(16_383, 16_383)
    if choice == 3:
        return "png 128x20000", png_bomb(128, 20_000)
    if choice == 4:
        return "png 20000x128", png_bomb(20_000, 128)
    return "png 1x30000", png_bomb(1, 30_000)


def _polyglot(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    choice = rng.randrange(5)
    if choice == 0:
        return "jpeg + zip", selfie + b"PK\x03\x04" + rng.randbytes(200)
    if choice == 1:
        png = encode(_small(rng), "PNG")
        return "png + html", png + b"<html><script>alert(1)</script></html>"
    if choice == 2:
        return "gif magic, jpeg body", b"GIF89a" + selfie[6:]
    if choice == 3:
        return "pdf + jpeg", b"%PDF-1.7\n" + selfie
    return "jpeg magic, png body", b"\xff\xd8\xff" + encode(_small(rng), "PNG")


def _mangled(rng: random.Random, selfie: bytes) -> tuple[str, bytes]:
    """A valid file of any kind, then cut, flipped or spliced at random offsets."""
    name, base = rng.choice(_VALID)(rng, selfie)
    data = bytearray(base)
    how = rng.randrange(4)
    if how == 0:
        data = data[: rng.randrange(1, len(data))]
    elif how == 1:
        for _ in range(rng.randrange(1, 24)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif how == 2:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        at = rng.randrange(len(data))
        data[at:at] = rng.randbytes(rng.randrange(1, 300))
    return f"{name}, mangled {how}", bytes(data)


_VALID: tuple[Maker, ...] = (
    _exif_orientation,
    _exif_entries,
    _exif_in_other_formats,
    _icc_garbage,
    _xmp_garbage,
    _deep_and_odd_modes,
    _animated,
    _heic,
    _palette,
)
_MAKERS: tuple[Maker, ...] = (
    *_VALID,
    _png_chunks,
    _bombs_and_shapes,
    _polyglot,
    _mangled,
    _mangled,
)


def hostile_files(seed: int, count: int, selfies: Sequence[bytes]) -> Iterator[HostileFile]:
    """`count` hostile files, the same for the same seed and selfies."""
    rng = random.Random(seed)
    for n in range(count):
        maker = _MAKERS[n % len(_MAKERS)] if n < len(_MAKERS) else rng.choice(_MAKERS)
        kind, data = maker(rng, rng.choice(selfies))
        ext = rng.choice(("jpg", "png", "webp", "heic", "jpeg", "JPG", ""))
        name = FIXED_NAMES[n % len(FIXED_NAMES)] if rng.random() < 0.3 else f"f{n}.{ext}"
        yield HostileFile(name, data, f"#{n} {kind}")
