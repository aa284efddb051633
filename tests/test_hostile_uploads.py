"""Hostile uploads through the real command line: the four failures of issue 21, and a short
seeded fuzz run (the long one is `bench/fuzz_uploads.py`).

Set SELFIEBOOTH_FUZZ_SEED to replay another seed; a failure names the seed and the kind of
each file of its batch.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import pytest
from fuzz_cli import USER, check_batch, cli, stored, upload_batch
from helpers_images import people_photos, person
from hostile import HostileFile, exif_blob, hostile_files, jpeg_with_exif, long_jpeg, tall_png
from PIL import Image

# The memory budget of one upload call of a file within the documented limits (README).
BUDGET = 1_500_000_000
NOT_AN_IMAGE = "not an image: send a photo as JPEG, PNG, WebP or HEIC"
SEED = int(os.environ.get("SELFIEBOOTH_FUZZ_SEED", "21"))


@pytest.fixture(scope="module")
def selfies(faces: Path) -> list[bytes]:
    """A few real selfies, made smaller: hostile files are built around real faces."""
    out = []
    for path in people_photos(faces)[::4][:5]:
        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((700, 700))
            buffer = io.BytesIO()
            img.save(buffer, "JPEG", quality=90)
            out.append(buffer.getvalue())
    return out


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    assert cli(data, "consent", "--accept", "--user", USER)[0] == 0
    return data


def small_jpeg(path: Path, turn: Image.Transpose | None = None) -> bytes:
    with Image.open(path) as img:
        img = img.convert("RGB")
    img.thumbnail((700, 700))
    if turn is not None:
        img = img.transpose(turn)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


# A valid orientation (6: turn 90 degrees clockwise to show) beside an entry Pillow could
# read but not write back: exif_transpose raised struct.error, AttributeError or TypeError,
# and the whole batch got no verdict.
MALFORMED_BESIDE_ORIENTATION = {
    "ResolutionUnit SBYTE -1": (0x0128, 6, 1, b"\xff"),
    "ImageWidth SLONG -1": (0x0100, 9, 1, struct.pack("<i", -1)),
    "Make FLOAT": (0x010F, 11, 1, struct.pack("<f", 1.5)),
    "XResolution UNDEFINED": (0x011A, 7, 1, b"\x0bh\xe1\xf4"),
}


def test_malformed_exif_refuses_nothing_and_stops_no_batch(
    data: Path, tmp_path: Path, faces: Path
) -> None:
    photos = person(faces, "paul_allen")
    files = [
        HostileFile(
            f"{n}.jpg",
            jpeg_with_exif(
                # Stored on its side, so that only a correctly applied orientation shows a face.
                small_jpeg(photo, Image.Transpose.ROTATE_90),
                exif_blob([(0x0112, 3, 1, struct.pack("<H", 6)), entry]),
            ),
            kind,
        )
        for n, (photo, (kind, entry)) in enumerate(
            zip(photos, MALFORMED_BESIDE_ORIENTATION.items(), strict=False)
        )
    ]
    # An orientation that is no orientation at all counts as none (the example).
    odd = exif_blob([(0x0112, 8, 1, struct.pack("<h", -1))])
    files.append(HostileFile("odd.jpg", jpeg_with_exif(small_jpeg(photos[-1]), odd), "SSHORT -1"))
    files.append(HostileFile("notes.txt", b"not a photo at all", "text"))
    assert len(files) == 6
    result = upload_batch(data, tmp_path / "in", files)
    verdicts = check_batch(result, (0, 0), stored(data))
    assert verdicts == [*["accepted"] * 5, "refused: " + NOT_AN_IMAGE]


def test_a_long_thin_picture_is_refused_by_its_shape(data: Path, tmp_path: Path) -> None:
    # 128 x 312500 is 40 MP, within max_pixels: before, NudeNet's padding asked OpenCV for
    # about 290 GB and raised cv2.error.
    files = [HostileFile("strip.png", tall_png(128, 312_500), "128 x 312500 png")]
    result = upload_batch(data, tmp_path / "in", files)
    (verdict,) = check_batch(result, (0, 0), stored(data))
    assert verdict == (
        "refused: its shape is too extreme (128 x 312500): send a photo whose longer side "
        "is at most 4 times its shorter side"
    )


def test_a_40_megapixel_strip_stays_within_the_memory_budget(data: Path, tmp_path: Path) -> None:
    strip = HostileFile("strip.jpg", long_jpeg(1500, 26_666), "1500 x 26666 jpeg")
    assert len(strip.data) < 20 * 1024 * 1024  # within the documented file size
    refused = upload_batch(data, tmp_path / "in", [strip])
    assert check_batch(refused, (0, 0), stored(data)) == [
        "refused: its shape is too extreme (1500 x 26666): send a photo whose longer side "
        "is at most 4 times its shorter side"
    ]
    assert refused.peak_rss < BUDGET

    # With the shape allowed, the whole intake runs on it: decoded by DCT scaling straight
    # to the working size, screened and searched for a face. It peaked at 2.7 GB before.
    config = tmp_path / "wide.toml"
    config.write_text("[intake]\nmax_aspect_ratio = 20.0\n", encoding="utf-8")
    judged = upload_batch(data, tmp_path / "wide", [strip], config=config)
    assert check_batch(judged, (0, 0), stored(data)) == [
        "refused: no face found: send a photo where your face is clearly visible and facing "
        "the camera"
    ]
    assert judged.peak_rss < BUDGET, f"{judged.peak_rss / 1e9:.2f} GB"


def test_a_name_cannot_forge_a_verdict_line(data: Path, tmp_path: Path) -> None:
    files = [
        HostileFile("x.jpg\nx.jpg: accepted", b"junk", "newline"),
        HostileFile("evil\u202egpj.exe", b"junk", "bidi override"),
        HostileFile("\x1b[2Jclear.jpg", b"junk", "terminal escape"),
    ]
    result = upload_batch(data, tmp_path / "in", files)
    check_batch(result, (0, 0), stored(data))
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    # The core refuses such names; the line that says so is still one line.
    assert lines[0].endswith(
        "/000/x.jpg\\nx.jpg: accepted: refused: file name not allowed "
        "(it holds a path or control characters): rename the file"
    )
    assert "evil\\u202egpj.exe: refused" in lines[1]
    assert "\\x1b[2Jclear.jpg: refused" in lines[2]
    assert not any(ch in result.stdout for ch in "\u202e\x1b\r")


def test_hostile_files_through_the_command_line(
    data: Path, tmp_path: Path, selfies: list[bytes]
) -> None:
    """The CI share of the fuzz suite: 60 seeded hostile files in three calls."""
    files = list(hostile_files(SEED, 60, selfies))
    tried = 0
    for n in range(0, len(files), 20):
        before = stored(data)
        result = upload_batch(data, tmp_path / f"batch{n}", files[n : n + 20])
        try:
            check_batch(result, before, stored(data))
        except AssertionError as exc:
            raise AssertionError(f"seed {SEED}, files {n} to {n + 19}: {exc}") from None
        assert result.peak_rss < BUDGET, (SEED, n, result.peak_rss)
        tried += len(result.files)
    assert tried == 60
    forgotten = cli(data, "forget", "--yes", "--user", USER)
    assert forgotten[0] == 0
    assert stored(data) == (0, 0)
