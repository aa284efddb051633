"""The image filter with NudeNet's real 320n model: the verdicts, uploads it refuses (and the
review items they leave), generated images the engine withholds, and erasure of what was
kept for review.

NudeNet calls every face in ../shared/faces FACE_FEMALE (with scores 0.45 to 0.84), so a
configured face class stands in for the classes that block by default: the plumbing is the
same, and with the default classes the same photo passes.
"""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import nudenet.nudenet
import pytest
from helpers_images import person
from PIL import Image

from bot.config import Config, ConfigError, ImageFilterConfig, load_config
from bot.core import Booth, Identity, Upload, open_booth
from bot.core.app import engine_options
from bot.core.booth import FILTER_REFUSED
from bot.core.dispatcher import Dispatcher
from engine.generation.spec import GeneratedImage
from engine.intake import FaceAnalyzer
from engine.jobs import ImagineRequest, ImagineResult
from engine.process import EngineProcess
from engine.protocol import Generated
from engine.safety import NUDENET_LABELS, ImageFilter
from engine.worker import screen_results

ANN = Identity("telegram", "ann-1")
BLOCK_FACES = {"FACE_FEMALE": 0.5}  # paul_allen/1.jpg scores 0.80


@pytest.fixture(scope="module")
def photo(faces: Path) -> Path:
    return person(faces, "paul_allen")[0]


@pytest.fixture(scope="module")
def selfie(photo: Path) -> bytes:
    return photo.read_bytes()


@pytest.fixture(scope="module")
def face_filter() -> ImageFilter:
    return ImageFilter(BLOCK_FACES)


def filtered(config: Config, classes: dict[str, float], *, keep: bool = False) -> Config:
    return dataclasses.replace(
        config,
        image_filter=ImageFilterConfig(enabled=True, blocked_classes=classes),
        moderation=dataclasses.replace(config.moderation, keep_blocked_images=keep),
    )


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def test_the_labels_are_nudenets() -> None:
    assert set(NUDENET_LABELS) == set(getattr(nudenet.nudenet, "__labels"))
    assert len(NUDENET_LABELS) == 18


def test_config_names_only_nudenet_classes(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[image_filter]\nblocked_classes = { FACE_FEMALES = 0.5 }\n")
    with pytest.raises(ConfigError, match=r"image_filter\.blocked_classes = .*FACE_FEMALE,"):
        load_config(path, environ={})
    path.write_text("[image_filter]\nblocked_classes = { ANUS_EXPOSED = 1.5 }\n")
    with pytest.raises(ConfigError, match="thresholds above 0, at most 1"):
        load_config(path, environ={})
    path.write_text("[image_filter]\nblocked_classes = { FACE_MALE = 0.7 }\n")
    assert load_config(path, environ={}).image_filter.blocked_classes == {"FACE_MALE": 0.7}
    with pytest.raises(ValueError, match="'FACE' is not a NudeNet class"):
        ImageFilter({"FACE": 0.5})


def test_a_configured_class_blocks_a_real_photo_and_the_defaults_pass_it(
    photo: Path, face_filter: ImageFilter
) -> None:
    image = Image.open(photo).convert("RGB")
    verdict = face_filter.check(image)
    assert not verdict.allowed and verdict.blocked_by == ("FACE_FEMALE",)
    assert 0.5 <= verdict.scores()["FACE_FEMALE"] <= 1.0
    face = next(d for d in verdict.detections if d.label == "FACE_FEMALE")
    x, y, w, h = face.box
    assert 0 <= x < x + w <= image.width and 0 <= y < y + h <= image.height

    default = ImageFilter(load_config(None, environ={}).image_filter.blocked_classes)
    passed = default.check(image)
    assert passed.allowed and passed.blocked_by == ()
    assert "FACE_FEMALE" in {d.label for d in passed.detections}  # seen, but not blocked
    assert ImageFilter({"FACE_FEMALE": 0.95}).check(image).allowed  # a threshold above it


async def test_an_upload_the_filter_blocks_is_refused_and_reviewed(
    config: Config, analyzer: FaceAnalyzer, selfie: bytes
) -> None:
    async with open_booth(filtered(config, BLOCK_FACES), analyzer) as booth:
        await booth.accept_consent(ANN)
        [verdict] = await booth.upload(ANN, [Upload("me.jpg", selfie)])
        assert not verdict.accepted and verdict.reason == FILTER_REFUSED
        [item] = await booth.repo.review_items()
        user = await booth.repo.find_user(ANN.platform, ANN.user_id)
        assert user is not None and item.user_id == user.id
        assert (item.kind, item.blob, item.job_id) == ("image", None, None)
        detail = json.loads(item.detail)
        assert detail["source"] == "upload" and detail["classes"] == ["FACE_FEMALE"]
        assert await booth.repo.photos(user.id) == []
        assert files_under(config.blob_dir) == []  # not kept: nothing stored anywhere


async def test_with_the_default_classes_the_same_photo_is_accepted(
    booth: Booth, selfie: bytes
) -> None:
    assert booth.image_filter is not None  # the default config filters uploads
    await booth.accept_consent(ANN)
    [verdict] = await booth.upload(ANN, [Upload("me.jpg", selfie)])
    assert verdict.accepted, verdict.reason
    assert await booth.repo.review_items() == []


async def test_a_kept_upload_is_erased_with_its_user(
    config: Config, analyzer: FaceAnalyzer, selfie: bytes
) -> None:
    async with open_booth(filtered(config, BLOCK_FACES, keep=True), analyzer) as booth:
        await booth.accept_consent(ANN)
        [verdict] = await booth.upload(ANN, [Upload("me.jpg", selfie)])
        assert verdict.reason == FILTER_REFUSED
        [item] = await booth.repo.review_items()
        assert item.blob is not None
        kept = Image.open(io.BytesIO(await booth.blobs.get(item.blob)))
        assert kept.size == Image.open(io.BytesIO(selfie)).size and not kept.getexif()
        erasure = await booth.forget(ANN)
        assert erasure.files == 1
        assert await booth.repo.review_items() == []
        assert files_under(config.blob_dir) == []


def _as_generated(path: Path, seed: int) -> GeneratedImage:
    """A real photo standing in for a generated picture (the tiny model's are noise)."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((512, 512))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return GeneratedImage(out.getvalue(), seed, image.width, image.height)


def test_the_engine_writes_only_what_the_filter_allows(
    tmp_path: Path, photo: Path, face_filter: ImageFilter
) -> None:
    plain = Image.new("RGB", (256, 256), (90, 140, 200))  # nothing for NudeNet to see
    buf = io.BytesIO()
    plain.save(buf, format="PNG")
    images = [_as_generated(photo, 7), GeneratedImage(buf.getvalue(), 8, 256, 256)]

    allowed, blocked = screen_results(images, tmp_path, face_filter, keep_blocked=False)
    assert [a["seed"] for a in allowed] == [8] and allowed[0]["path"].endswith("image-2.png")
    assert [b["seed"] for b in blocked] == [7] and "path" not in blocked[0]
    assert set(blocked[0]["classes"]) == {"FACE_FEMALE"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image-2.png"]

    kept = tmp_path / "kept"
    kept.mkdir()
    _, blocked = screen_results(images, kept, face_filter, keep_blocked=True)
    assert blocked[0]["path"] == str(kept / "blocked-1.png")
    assert (kept / "blocked-1.png").read_bytes() == images[0].png

    unfiltered, none = screen_results(images, kept, None, keep_blocked=False)
    assert len(unfiltered) == 2 and none == []


@pytest.mark.parametrize("keep", [False, True])
async def test_withheld_results_become_review_items_and_go_with_their_user(
    config: Config, photo: Path, face_filter: ImageFilter, keep: bool
) -> None:
    """The dispatcher's side, on a result the engine's screening made from a real photo."""
    config = filtered(config, BLOCK_FACES, keep=keep)
    async with open_booth(config) as booth:
        await booth.accept_consent(ANN)
        user = await booth.repo.find_user(ANN.platform, ANN.user_id)
        assert user is not None
        job = await booth.jobs.enqueue(user.id, ImagineRequest("a portrait"))
        # Not started: the test hands it the result the engine's screening made.
        dispatcher = Dispatcher(
            booth.repo,
            booth.jobs,
            booth.blobs,
            EngineProcess(engine_options(config)),
            config.work_dir,
            max_attempts=1,
        )
        out = dispatcher.job_dir(job.id) / "out"
        out.mkdir(parents=True)
        images, blocked = screen_results(
            [_as_generated(photo, 5)], out, face_filter, keep_blocked=keep
        )
        generated: Generated = {
            "images": images,
            "blocked": blocked,
            "prompt": "a portrait",
            "seconds": 1.0,
        }
        await dispatcher._complete(job, generated, None)

        finished = await booth.jobs.get(job.id)
        assert finished is not None and finished.status == "succeeded"
        assert finished.outcome() == ImagineResult((), withheld=1, model_prompt="a portrait")
        assert await booth.repo.images_of_job(job.id) == []
        [item] = await booth.repo.review_items()
        assert (item.kind, item.job_id, item.user_id) == ("image", job.id, user.id)
        assert json.loads(item.detail)["source"] == "generation"
        assert (item.blob is not None) == keep
        if item.blob is not None:
            assert await booth.blobs.get(item.blob) == _as_generated(photo, 5).png

        await booth.forget(ANN)
        assert await booth.repo.review_items() == []
        assert files_under(config.blob_dir) == []


def test_importing_the_core_loads_neither_nudenet_nor_torch() -> None:
    code = (
        "import sys, bot.core, engine.safety, engine.provenance\n"
        "loaded = {'torch', 'onnxruntime', 'nudenet', 'cv2'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
