"""Pictures attached to /imagine (image-to-image) in the core: screened like selfies, with the
likeness rule, kept only while their job needs them.

Ann is paul_allen (three photos through the real intake). A fourth photo of his passes;
steve_wozniak, a stranger to the bot, is refused; so are a decompression bomb and, with a
face class configured to block (NudeNet calls these faces FACE_FEMALE, see
test_image_filter), a picture the image filter refuses. A picture with no face passes.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers_images import encode, gradient, person, png_bomb
from PIL import Image

from bot.config import Config, ImageFilterConfig
from bot.core import Booth, BoothError, Identity, Upload, open_booth
from bot.core.options import chosen_fields, parse_imagine
from bot.core.sources import FILTER_REFUSED, NOT_YOU
from engine.intake import FaceAnalyzer
from engine.jobs import STRENGTH, ImagineRequest, nearest_aspect

ANN = Identity("telegram", "ann")


def files_under(path: Path) -> set[Path]:
    return {p for p in path.rglob("*") if p.is_file()} if path.exists() else set()


async def enrol(booth: Booth, faces: Path) -> None:
    """Ann's three photos accepted, and a model version (a row: no job here runs)."""
    await booth.accept_consent(ANN)
    photos = person(faces, "paul_allen")[:3]
    verdicts = await booth.upload(ANN, [Upload(p.name, p.read_bytes()) for p in photos])
    assert all(v.accepted for v in verdicts), verdicts
    user = await booth.repo.find_user(ANN.platform, ANN.user_id)
    assert user is not None
    await booth.repo.set_trigger_word(user.id, "zovaka")
    key = await booth.blobs.put(b"a model file")
    await booth.repo.add_lora(
        user.id,
        base_model="tiny",
        family="tiny",
        trigger_word="zovaka",
        blob=key,
        sha256="0" * 64,
        recipe={},
    )


@pytest.fixture
async def ann(config: Config, analyzer: FaceAnalyzer, faces: Path) -> AsyncIterator[Booth]:
    async with open_booth(config, analyzer) as booth:
        await enrol(booth, faces)
        yield booth


async def source_of(booth: Booth, job_id: int) -> str:
    job = await booth.jobs.get(job_id)
    assert job is not None
    request = job.request()
    assert isinstance(request, ImagineRequest) and request.source is not None
    return request.source


async def test_own_face_is_kept_without_metadata_at_its_nearest_aspect(
    ann: Booth, config: Config, faces: Path
) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    ticket = await ann.imagine(ANN, ImagineRequest("me as a knight", strength=0.5), own)
    source = await source_of(ann, ticket.job_id)
    job = await ann.jobs.get(ticket.job_id)
    assert job is not None
    request = job.request()
    assert isinstance(request, ImagineRequest) and request.strength == 0.5
    with (
        Image.open(io.BytesIO(await ann.blobs.get(source))) as kept,
        Image.open(io.BytesIO(own)) as sent,
    ):
        assert kept.format == "JPEG" and not kept.getexif() and "icc_profile" not in kept.info
        assert abs(kept.width / kept.height - sent.width / sent.height) < 0.01
    with Image.open(io.BytesIO(own)) as sent:
        assert request.aspect_ratio == nearest_aspect(*sent.size)

    # An aspect ratio the user chose stays; a picture without a face is allowed.
    landscape = encode(gradient(480, 320), "PNG")
    chosen = await ann.imagine(
        ANN, ImagineRequest("a castle", aspect_ratio="1:1"), landscape, chosen={"aspect_ratio"}
    )
    job = await ann.jobs.get(chosen.job_id)
    assert job is not None and json.loads(job.params)["aspect_ratio"] == "1:1"
    free = await ann.imagine(ANN, ImagineRequest("a castle"), landscape)
    job = await ann.jobs.get(free.job_id)
    assert job is not None and json.loads(job.params)["aspect_ratio"] == "3:2"


async def test_a_strangers_face_is_refused_and_nothing_is_kept(
    ann: Booth, config: Config, faces: Path
) -> None:
    before = files_under(config.blob_dir)
    stranger = person(faces, "steve_wozniak")[0].read_bytes()
    with pytest.raises(BoothError) as refused:
        await ann.imagine(ANN, ImagineRequest("me as a knight"), stranger)
    assert str(refused.value) == NOT_YOU
    group = (faces / "multi" / "two_people.jpg").read_bytes()
    with pytest.raises(BoothError, match="not yours"):
        await ann.imagine(ANN, ImagineRequest("us at the beach"), group)
    assert files_under(config.blob_dir) == before
    assert [j.kind for j in (await ann.status(ANN)).jobs] == []


async def test_a_bomb_is_refused_as_an_upload_is(ann: Booth, config: Config) -> None:
    before = files_under(config.blob_dir)
    with pytest.raises(BoothError) as refused:
        await ann.imagine(ANN, ImagineRequest("me"), png_bomb(20_000, 20_000))
    assert "image too large: send a photo of at most 40 megapixels" in str(refused.value)
    with pytest.raises(BoothError, match="not an image"):
        await ann.imagine(ANN, ImagineRequest("me"), b"MZ\x90\x00 not a picture at all")
    assert files_under(config.blob_dir) == before


async def test_a_source_the_image_filter_blocks_is_refused_and_reviewed(
    config: Config, analyzer: FaceAnalyzer, faces: Path
) -> None:
    async with open_booth(config, analyzer) as booth:
        await enrol(booth, faces)
    blocking = dataclasses.replace(
        config, image_filter=ImageFilterConfig(enabled=True, blocked_classes={"FACE_FEMALE": 0.5})
    )
    async with open_booth(blocking, analyzer) as booth:
        before = files_under(config.blob_dir)
        own = person(faces, "paul_allen")[0].read_bytes()  # scores 0.80 as FACE_FEMALE
        with pytest.raises(BoothError) as refused:
            await booth.imagine(ANN, ImagineRequest("me"), own)
        assert str(refused.value) == FILTER_REFUSED
        [item] = await booth.repo.review_items()
        detail = json.loads(item.detail)
        assert (item.kind, item.blob) == ("image", None)
        assert detail["source"] == "attachment" and detail["classes"] == ["FACE_FEMALE"]
        assert files_under(config.blob_dir) == before


async def test_strength_is_checked_and_needs_a_picture(ann: Booth, faces: Path) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    text = "me as a knight --strength 0.97"
    with pytest.raises(BoothError) as refused:
        await ann.imagine(ANN, parse_imagine(text), own, chosen=chosen_fields(text))
    assert f"strength must be {STRENGTH.range}, got 0.97" in str(refused.value)
    text = "me as a knight --strength 0.4"
    assert chosen_fields(text) == {"strength"} and parse_imagine(text).strength == 0.4
    with pytest.raises(BoothError) as refused:
        await ann.imagine(ANN, parse_imagine(text), chosen=chosen_fields(text))
    assert "--strength 0.4" in str(refused.value) and "attach a picture" in str(refused.value)
    assert (await ann.status(ANN)).jobs == ()


async def test_the_source_goes_when_its_job_is_cancelled_and_with_forget(
    ann: Booth, config: Config, faces: Path
) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    first = await ann.imagine(ANN, ImagineRequest("me"), own)
    second = await ann.imagine(ANN, ImagineRequest("me again"), own)
    key = await source_of(ann, first.job_id)
    assert key == await source_of(ann, second.job_id)  # the same picture, stored once
    await ann.cancel(ANN, first.job_id)
    assert await ann.blobs.exists(key)  # the second job still needs it
    with pytest.raises(BoothError, match="not kept once its job is done"):
        await ann.reroll(ANN, first.job_id)
    await ann.forget(ANN)
    assert not await ann.blobs.exists(key)
    assert files_under(config.blob_dir) == set()
