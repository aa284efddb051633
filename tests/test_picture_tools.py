"""The picture tools in the core, before any engine runs: /edit's masks (from the faces
found, or drawn), edge control from an attached picture, and upscale of a result, with
their refusals; what each result lets its owner do next; and that every attached picture
goes with /forget.

Ann is paul_allen with three accepted photos and a model row (see test_sources).
"""

from __future__ import annotations

import dataclasses
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from helpers_images import encode, gradient, person
from PIL import Image
from test_sources import ANN, enrol, files_under

from bot.config import Config, ModelConfig
from bot.core import Booth, BoothError, Identity, JobOutcome, open_booth
from bot.core.options import OptionError, chosen_fields, parse_edit, parse_imagine
from bot.core.sources import NOT_YOU, release_source
from engine.intake import FaceAnalyzer
from engine.jobs import EDIT_STRENGTH, UPSCALE_STRENGTH, ImagineRequest, ImagineResult

BOB = Identity("telegram", "bob")


@pytest.fixture
async def ann(config: Config, analyzer: FaceAnalyzer, faces: Path) -> AsyncIterator[Booth]:
    async with open_booth(config, analyzer) as booth:
        await enrol(booth, faces)
        yield booth


async def queued(booth: Booth, job_id: int) -> ImagineRequest:
    job = await booth.jobs.get(job_id)
    assert job is not None
    request = job.request()
    assert isinstance(request, ImagineRequest)
    return request


async def mask_of(booth: Booth, request: ImagineRequest) -> np.ndarray:
    assert request.mask is not None
    with Image.open(io.BytesIO(await booth.blobs.get(request.mask))) as mask:
        assert mask.mode == "L"
        return np.asarray(mask)


async def test_edit_masks_the_background_or_the_face_found_in_the_picture(
    ann: Booth, faces: Path
) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    with Image.open(io.BytesIO(own)) as sent:
        size = sent.size
    ticket = await ann.edit(ANN, ImagineRequest("on a beach at sunset"), own, region="background")
    background = await queued(ann, ticket.job_id)
    assert background.tool == "edit" and background.strength == EDIT_STRENGTH
    assert background.source is not None and background.source != background.mask
    repaint = await mask_of(ann, background)
    assert repaint.shape == (size[1], size[0])
    # The top corners are background (repainted); the middle of the picture is the face.
    h, w = repaint.shape
    assert repaint[2, 2] == 255 and repaint[2, w - 3] == 255
    user = await ann.repo.find_user(ANN.platform, ANN.user_id)
    assert user is not None
    face_ticket = await ann.edit(
        ANN, parse_imagine("smiling --strength 0.5"), own, region="face", chosen={"strength"}
    )
    face = await queued(ann, face_ticket.job_id)
    assert face.strength == 0.5
    only_face = await mask_of(ann, face)
    # Exactly the opposite corners: the face is repainted, the corners kept; and the
    # face's part is inside the person that the background edit keeps.
    assert only_face[2, 2] == 0 and only_face[h - 3, w - 3] == 0
    inside = only_face > 128
    assert 0.01 < inside.mean() < 0.5
    assert (repaint[inside] < 128).mean() > 0.95


async def test_a_drawn_mask_is_kept_as_black_and_white(ann: Booth, faces: Path) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    drawn = Image.new("RGB", (200, 150), "black")
    drawn.paste((250, 250, 250), (0, 0, 100, 150))  # the left half, nearly white
    drawn.paste((90, 90, 90), (100, 0, 200, 150))  # grey counts as keep
    ticket = await ann.edit(ANN, ImagineRequest("a red jacket"), own, mask=encode(drawn, "PNG"))
    mask = await mask_of(ann, await queued(ann, ticket.job_id))
    assert set(np.unique(mask)) == {0, 255}
    assert mask[:, : mask.shape[1] // 2 - 2].min() == 255
    assert mask[:, mask.shape[1] // 2 + 2 :].max() == 0


async def test_edit_refusals_queue_and_keep_nothing(
    ann: Booth, config: Config, faces: Path
) -> None:
    before = files_under(config.blob_dir)
    own = person(faces, "paul_allen")[3].read_bytes()
    stranger = person(faces, "steve_wozniak")[0].read_bytes()
    landscape = encode(gradient(480, 320), "PNG")
    dark = encode(Image.new("L", (200, 200), 0), "PNG")
    refusals = [
        ({"region": "background"}, stranger, NOT_YOU),
        ({"region": "face"}, landscape, "found no face in your picture"),
        ({"region": "hair"}, own, "no region 'hair'"),
        ({"mask": dark}, own, "mask is all dark"),
        ({"mask": b"GIF89a not really"}, own, "Your mask was refused"),
        ({"region": "face", "mask": dark}, own, "one of them, not both"),
        ({}, own, "Say what to repaint"),
    ]
    for where, picture, reason in refusals:
        with pytest.raises(BoothError, match=re.escape(reason)):
            await ann.edit(ANN, ImagineRequest("a beach"), picture, **where)  # type: ignore[arg-type]
    assert files_under(config.blob_dir) == before
    assert (await ann.status(ANN)).jobs == ()


def test_the_edit_syntax_names_what_to_repaint_first() -> None:
    what, request = parse_edit("background a beach at sunset --seed 4")
    assert (what, request.prompt, request.seed) == ("background", "a beach at sunset", 4)
    assert parse_edit("MASK a red jacket")[0] == "mask"
    with pytest.raises(OptionError, match="Say what to repaint first"):
        parse_edit("a beach")
    with pytest.raises(OptionError, match="--edges is for /imagine"):
        parse_edit("face smiling --edges")
    assert chosen_fields("me as a knight --edges --ar 3:2") == {"edges", "aspect_ratio"}
    with pytest.raises(OptionError, match="--edges takes no value"):
        parse_imagine("me --edges please")


async def test_edges_follow_an_attached_picture_where_edge_control_is_set_up(
    ann: Booth, config: Config, analyzer: FaceAnalyzer, faces: Path
) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    text = "me as a knight --edges"
    ticket = await ann.imagine(ANN, parse_imagine(text), own, chosen=chosen_fields(text))
    request = await queued(ann, ticket.job_id)
    assert request.tool == "edges" and request.source is None and request.edges is not None
    with pytest.raises(BoothError, match="--edges is about an attached picture"):
        await ann.imagine(ANN, parse_imagine(text), chosen=chosen_fields(text))
    text = "me --edges --strength 0.5"
    with pytest.raises(BoothError, match="use one of them"):
        await ann.imagine(ANN, parse_imagine(text), own, chosen=chosen_fields(text))

    off = dataclasses.replace(config, model=ModelConfig(controlnet=""))
    async with open_booth(off, analyzer) as booth:
        with pytest.raises(BoothError, match="Edge control is not set up on this bot"):
            await booth.imagine(ANN, ImagineRequest("me"), own, chosen={"edges"})


async def finished(booth: Booth, job_id: int, seeds: tuple[int, ...]) -> list[str]:
    """Job `job_id` succeeded with one picture per seed (rows only: no engine here)."""
    job = await booth.jobs.get(job_id)
    assert job is not None
    keys = [await booth.blobs.put(f"picture {job_id} {seed}".encode()) for seed in seeds]
    await booth.jobs.mark_running(job_id)
    await booth.jobs.finish(job_id, "succeeded", result=ImagineResult(tuple(keys), 0, "p"))
    for key, seed in zip(keys, seeds, strict=True):
        await booth.repo.add_image(job_id, job.user_id, blob=key, seed=seed, width=64, height=64)
    return keys


async def test_upscale_redraws_one_result_lightly_with_its_seed(ann: Booth) -> None:
    first = await ann.imagine(ANN, ImagineRequest("me as a knight", seed=5, count=2, steps=20))
    keys = await finished(ann, first.job_id, (5, 6))
    ticket = await ann.upscale(ANN, first.job_id, 2)
    request = await queued(ann, ticket.job_id)
    assert request.tool == "upscale" and request.upscale == 2 and request.count == 1
    assert (request.source, request.seed, request.steps) == (keys[1], 6, 20)
    assert request.strength == UPSCALE_STRENGTH and request.prompt == "me as a knight"
    assert request.model is not None and request.model.version == 1

    with pytest.raises(BoothError, match="has no image 3"):
        await ann.upscale(ANN, first.job_id, 3)
    with pytest.raises(BoothError, match="You have no job"):
        await ann.upscale(BOB, first.job_id, 1)
    await finished(ann, ticket.job_id, (6,))
    with pytest.raises(BoothError, match="is an upscale already"):
        await ann.upscale(ANN, ticket.job_id, 1)
    # The upscale's source is a result: its job ending does not delete it.
    await release_source(ann.repo, ann.blobs, request)
    assert await ann.blobs.exists(keys[1])


def test_what_a_result_lets_its_owner_do_depends_on_its_tool() -> None:
    def actions(tool: str) -> tuple[str, ...]:
        return JobOutcome(1, "imagine", "succeeded", pictures=(b"png",), tool=tool).actions

    assert actions("imagine") == ("reroll", "vary", "style", "upscale", "file", "report")
    for tool in ("img2img", "edit", "edges"):
        assert actions(tool) == ("upscale", "file", "report")
    assert actions("upscale") == ("file", "report")
    assert JobOutcome(1, "imagine", "failed", tool="imagine").actions == ()


async def test_every_attached_picture_goes_with_forget(
    ann: Booth, config: Config, faces: Path
) -> None:
    own = person(faces, "paul_allen")[3].read_bytes()
    await ann.edit(ANN, ImagineRequest("a beach"), own, region="background")
    await ann.imagine(ANN, ImagineRequest("a knight"), own, chosen={"edges"})
    assert files_under(config.blob_dir)
    await ann.forget(ANN)
    assert files_under(config.blob_dir) == set()
