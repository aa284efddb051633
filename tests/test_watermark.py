"""The invisible watermark: a job id read back from what the real engine returns, from a
real photo after JPEG, resizing and cropping, and never from a picture that carries none."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from helpers_images import person
from PIL import Image

from bot.config import Config
from bot.core import FINAL_STATES, Booth, Identity, ImagineRequest, JobUpdate, open_booth
from engine.provenance import MIN_SIDE, ecc, embed, inspect, read, read_job_id
from storage import NewPhoto

ANN = Identity("cli", "ann")
JOB = 3_141_592_653  # needs all 32 bits
TIMEOUT = 180


def _encoded(image: Image.Image, fmt: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def _jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    return Image.open(io.BytesIO(_encoded(image, "JPEG", quality=quality))).convert("RGB")


def _psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(10 * np.log10(255**2 / np.mean(diff**2)))


@pytest.fixture(scope="module")
def generated(faces: Path) -> Image.Image:
    """A real photo at 512 pixels, standing in for a generated picture."""
    image = Image.open(person(faces, "joe_biden")[1]).convert("RGB")
    return image.resize((512, 512), Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def marked(generated: Image.Image) -> Image.Image:
    return embed(generated, JOB)


# the real engine -----------------------------------------------------------------------


@pytest.fixture
async def engine_booth(config: Config) -> AsyncIterator[Booth]:
    training = dataclasses.replace(config.training, min_photos=2, steps=2, checkpoint_every=2)
    async with open_booth(dataclasses.replace(config, training=training), dispatch=True) as booth:
        yield booth


async def _with_photos(booth: Booth, who: Identity) -> None:
    """A consenting user with two accepted crops (noise: the engine needs no faces)."""
    await booth.accept_consent(who)
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    rng = np.random.default_rng(0)
    side = booth.family.resolution
    rows = []
    for n in range(2):
        crop = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
        key = await booth.blobs.put(_encoded(crop, "PNG"))
        rows.append(NewPhoto(f"{n:064x}", key, key, b"\0" * 512, f"{n:016x}", (0, 0, 9, 9), 99.0))
    await booth.repo.add_photos(user.id, rows)


async def _finish(booth: Booth, job_id: int, previews: list[bytes] | None = None) -> JobUpdate:
    async def watch() -> JobUpdate:
        async for update in booth.updates(ANN, job_id):
            if update.state == "sample" and update.preview is not None and previews is not None:
                previews.append(update.preview)
            if update.state in FINAL_STATES:
                return update
        raise AssertionError("the updates ended without a final state")

    return await asyncio.wait_for(watch(), TIMEOUT)


async def test_generated_images_and_previews_carry_their_job_id(engine_booth: Booth) -> None:
    booth = engine_booth
    await _with_photos(booth, ANN)
    trained = await _finish(booth, (await booth.train(ANN)).job_id)
    assert trained.state == "succeeded", trained
    ticket = await booth.imagine(ANN, ImagineRequest("a portrait", seed=4, count=2, steps=4))
    previews: list[bytes] = []
    final = await _finish(booth, ticket.job_id, previews)
    assert final.state == "succeeded", final
    assert final.outcome is not None and final.outcome.withheld == 0
    pngs = await booth.job_images(ANN, ticket.job_id)
    assert len(pngs) == 2
    for png in pngs:
        assert Image.open(io.BytesIO(png)).size == (256, 256)
        assert read_job_id(png) == ticket.job_id
    assert previews and all(read_job_id(p) == ticket.job_id for p in previews)


# a real photo --------------------------------------------------------------------------


def test_the_mark_is_invisible_and_reads_back(generated: Image.Image, marked: Image.Image) -> None:
    assert marked.size == generated.size and marked.mode == "RGB"
    assert _psnr(generated, marked) > 40.0
    reading = inspect(marked)
    assert reading.job_id == JOB and reading.scale == pytest.approx(1.0, abs=0.003)
    assert read(generated) is None


def test_jpeg_at_quality_75(marked: Image.Image) -> None:
    assert read(_jpeg(marked)) == JOB


def test_resized_to_1280(marked: Image.Image) -> None:
    assert read(marked.resize((1280, 1280), Image.Resampling.LANCZOS)) == JOB


@pytest.mark.parametrize(
    "box",
    [(26, 26, 486, 486), (0, 0, 461, 461), (51, 0, 512, 512)],
    ids=["5%-each-side", "10%-off-a-corner", "10%-off-the-left"],
)
def test_cropped_by_10_percent(marked: Image.Image, box: tuple[int, int, int, int]) -> None:
    reading = inspect(marked.crop(box))
    assert reading.job_id == JOB, reading


def test_encoded_bytes_are_read_through_the_safe_decoder(marked: Image.Image) -> None:
    assert read_job_id(_encoded(marked, "PNG")) == JOB
    assert read_job_id(_encoded(marked, "WEBP", quality=90)) == JOB
    assert read_job_id(b"not an image at all") is None
    assert read_job_id(_encoded(marked, "GIF")) is None  # a format intake does not open


def test_pictures_without_a_mark_read_none(faces: Path) -> None:
    photos = sorted(faces.rglob("*.jpg"))
    assert len(photos) >= 25
    for path in photos:
        with Image.open(path) as image:
            assert read(image.convert("RGB")) is None, path
    noise = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    assert read(Image.fromarray(noise)) is None
    assert read(Image.new("RGB", (512, 512), (128, 128, 128))) is None


def test_small_images_carry_no_mark(generated: Image.Image) -> None:
    small = generated.resize((200, 120))
    with pytest.raises(ValueError, match=rf"image is 200x120: a mark needs at least {MIN_SIDE}"):
        embed(small, 1)
    assert read(small) is None
    with pytest.raises(ValueError, match="job id must be 0 to 4294967295, got -1"):
        embed(generated, -1)


def test_the_code_corrects_errors_and_the_check_catches_the_rest() -> None:
    rng = np.random.default_rng(2)
    coded = ecc.encode(JOB, key=7)
    assert coded.size == ecc.CODED_BITS
    flipped = coded.copy()
    flipped[5::20] *= -1  # six coded bits wrong, one in every twenty
    assert ecc.decode(flipped, key=7) == JOB
    assert ecc.decode(coded + rng.normal(0.0, 0.5, coded.size), key=7) == JOB
    assert ecc.decode(coded, key=8) is None  # another key: another mark
    assert ecc.decode(rng.normal(size=coded.size), key=7) is None


# geometry: mirrors, rotations, big crops -----------------------------------------------

_MIRROR = Image.Transpose.FLIP_LEFT_RIGHT


def _turned(image: Image.Image, degrees: float) -> Image.Image:
    """Rotated about its centre, the size kept, the corners filled black (a phone's
    straighten tool, before it crops)."""
    return image.rotate(degrees, resample=Image.Resampling.BICUBIC)


def _crop_area(image: Image.Image, share: float) -> Image.Image:
    """A crop keeping `share` of the area at the top-right corner."""
    w, h = image.size
    side = share**0.5
    return image.crop((w - round(w * side), 0, w, round(h * side)))


@pytest.mark.parametrize(
    ("attack", "mirrored", "degrees"),
    [
        (lambda m: m.transpose(_MIRROR), True, 0.0),
        (lambda m: _jpeg(m.transpose(_MIRROR)), True, 0.0),
        (lambda m: _turned(m, 5), False, 5.0),
        (lambda m: _turned(m, -5), False, -5.0),
        (lambda m: _jpeg(_turned(m, 2)), False, 2.0),
        (lambda m: _jpeg(_crop_area(m, 0.6)), False, 0.0),
        (lambda m: _jpeg(_crop_area(_turned(m.transpose(_MIRROR), 3), 0.6)), True, 3.0),
        (lambda m: _jpeg(_turned(m, -4).resize((800, 800), Image.Resampling.LANCZOS)), False, -4.0),
        (lambda m: _jpeg(_crop_area(m, 0.6).resize((400, 400))), False, 0.0),
    ],
    ids=[
        "mirror",
        "mirror+jpeg",
        "rotate+5",
        "rotate-5",
        "rotate+2+jpeg",
        "crop60%+jpeg75",
        "mirror+rotate+3+crop60%+jpeg75",
        "rotate-4+resize+jpeg",
        "crop60%+resize+jpeg",
    ],
)
def test_mirrors_rotations_and_big_crops(
    marked: Image.Image,
    attack: Callable[[Image.Image], Image.Image],
    mirrored: bool,
    degrees: float,
) -> None:
    reading = inspect(attack(marked))
    assert reading.job_id == JOB, reading
    assert reading.mirrored == mirrored and reading.angle == pytest.approx(degrees, abs=0.3)


def test_unmarked_pictures_read_none_after_the_same_attacks(generated: Image.Image) -> None:
    for attacked in (
        generated.transpose(_MIRROR),
        _jpeg(_turned(generated, 3)),
        _jpeg(_crop_area(_turned(generated.transpose(_MIRROR), -4), 0.6)),
    ):
        assert read(attacked) is None
