"""Content Credentials as c2pa-python's own reader sees them, and a picture whose pixels
change after signing while its manifest stays."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import c2pa

from engine.provenance import DIGITAL_SOURCE_TYPE


def c2pa_manifest(data: bytes, mime: str = "image/png") -> tuple[str, dict[str, Any]]:
    """The reader's validation state ("Valid", "Invalid", "Trusted") and active manifest."""
    with c2pa.Reader(mime, io.BytesIO(data)) as reader:
        return reader.get_validation_state() or "", reader.get_active_manifest() or {}


def assert_selfiebooth_manifest(
    data: bytes, job_id: int, *, edited: bool = False, resized: bool = False
) -> None:
    """A valid manifest of a selfiebooth picture of `job_id`, with what C2PA readers and
    the issue ask for, and nothing that names the user."""
    state, manifest = c2pa_manifest(data)
    assert state == "Valid", state
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    actions = assertions["c2pa.actions.v2"]["actions"]
    assert actions[0]["action"] == "c2pa.created"
    assert actions[0]["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    later = ["c2pa.edited"] * edited + ["c2pa.resized"] * resized
    assert [a["action"] for a in actions[1:]] == later
    assert manifest["claim_generator_info"][0]["name"] == "selfiebooth"
    assert manifest["claim_generator_info"][0]["version"]
    job = assertions["org.selfiebooth.job"]
    assert (job["job_id"], job["model_family"]) == (job_id, "tiny") and job["tool"]
    assert "user" not in repr(manifest).lower()


def with_other_pixels(png: bytes) -> bytes:
    """`png` with every pixel's red channel changed and every other chunk (the C2PA
    manifest's caBX among them) kept as it was."""
    chunks = list(_chunks(png))
    header = next(body for kind, body in chunks if kind == b"IHDR")
    width, height, depth, colour = struct.unpack(">IIBB", header[:10])
    assert (depth, colour) == (8, 2), "an 8-bit RGB PNG"
    raw = bytearray(zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT")))
    stride = 1 + 3 * width
    for row in range(height):
        raw[row * stride] = 0  # filter "none" for every row, then new red values
        for x in range(width):
            raw[row * stride + 1 + 3 * x] = (x * 7 + row) % 256
    out = bytearray(png[:8])
    written = False
    for kind, body in chunks:
        if kind == b"IDAT":
            if not written:
                out += _chunk(b"IDAT", zlib.compress(bytes(raw)))
                written = True
            continue
        out += _chunk(kind, body)
    return bytes(out)


def _chunks(png: bytes) -> Any:
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        yield png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        pos += 12 + length


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
