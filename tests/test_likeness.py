"""The likeness guard: the face index on its own, then real photos through the real intake,
a real SQLite repository and the dispatcher's result path.

Users A (guido_van_rossum) and B (steve_wozniak) enrol through `upload`; B's other photos,
given as the output of A's job, are withheld and reviewed; A's own photos and a face of
nobody known (paul_allen) pass; once B is erased, B's photos pass too.
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers_images import person
from PIL import Image

from bot.config import Config
from bot.core import Booth, Identity, Upload, open_booth
from bot.core.admin import format_review
from bot.core.app import engine_options
from bot.core.dispatcher import Dispatcher
from bot.core.likeness import ATTACHMENT_REFUSED, LIKENESS_REASON, LikenessGuard
from engine.intake import FaceAnalyzer
from engine.jobs import ImagineRequest, ImagineResult
from engine.process import EngineProcess
from engine.protocol import Generated, OutputImage
from engine.safety.likeness import FaceIndex
from storage import Database, NewPhoto, Repository

A = Identity("telegram", "guido")
B = Identity("discord", "woz")


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=128)
    return (v / np.linalg.norm(v)).astype(np.float32)


def near(v: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A point `distance` away from `v`."""
    step = rng.normal(size=128)
    return (v + distance * step / np.linalg.norm(step)).astype(np.float32)


# the index ------------------------------------------------------------------------------


def test_a_face_near_another_user_matches_them_and_nobody_known_matches_no_one() -> None:
    rng = np.random.default_rng(1)
    index = FaceIndex(0.6)
    a, b = unit(rng), unit(rng)
    for _ in range(3):
        index.add(1, near(a, 0.3, rng))
        index.add(2, near(b, 0.3, rng))
    found = index.match(near(b, 0.2, rng), requester=1)
    assert found is not None and found.user_id == 2 and found.distance < 0.6
    assert index.match(near(a, 0.2, rng), requester=1) is None  # the requester's own face
    assert index.match(unit(rng), requester=1) is None  # nobody known (about 1.4 away)
    assert index.match(near(b, 0.2, rng), requester=None) is not None  # no requester at all


def test_a_user_who_looks_like_another_keeps_their_own_pictures() -> None:
    rng = np.random.default_rng(2)
    index = FaceIndex(0.6)
    a = unit(rng)
    b = near(a, 0.5, rng)  # two users closer than the threshold: lookalikes
    index.add(1, a)
    index.add(2, b)
    own = a + 0.1 * (b - a)  # nearer A, but within 0.6 of B as well
    assert np.linalg.norm(own - b) < 0.6
    assert index.match(own, requester=1) is None
    assert index.match(own, requester=2) is not None  # B's job showing A's face


def test_removing_a_user_overwrites_their_row_and_keeps_the_others() -> None:
    rng = np.random.default_rng(3)
    index = FaceIndex(0.6, capacity=2)  # forces growth too
    faces = {user: unit(rng) for user in range(1, 6)}
    for user, face in faces.items():
        index.add(user, face)
    index.remove(2)
    index.remove(5)  # the last row
    index.remove(42)  # not there: nothing happens
    assert index.users() == {1, 3, 4} and len(index) == 3 and index.photos == 3
    for user in (1, 3, 4):
        found = index.match(faces[user], requester=None)
        assert found is not None and found.user_id == user and found.distance < 1e-3
    assert index.match(faces[2], requester=None) is None
    # Nothing of the removed users is left in the arrays beyond the live rows.
    assert not index._means[3:].any() and not index._sums[3:].any()


def test_the_mean_follows_photos_added_later_and_bad_descriptors_are_refused() -> None:
    index = FaceIndex(0.6)
    index.add(7, np.full(128, 0.1, np.float32))
    index.add(7, np.full(128, 0.3, np.float32))
    found = index.match(np.full(128, 0.2, np.float32), requester=None)
    assert found is not None and found.distance < 1e-3
    assert index.photos_of(7) == 2
    with pytest.raises(ValueError, match=r"128 finite numbers, got shape \(127,\)"):
        index.add(7, np.zeros(127, np.float32))
    with pytest.raises(ValueError, match="threshold must be above 0 and below 2, got 0"):
        FaceIndex(0)


# the index follows the database ---------------------------------------------------------


def photo_row(n: int, descriptor: np.ndarray) -> NewPhoto:
    return NewPhoto(
        f"{n:064x}", "key", "key", descriptor.astype("<f4").tobytes(), f"{n:016x}", (0, 0, 9, 9), 99
    )


async def test_photos_and_erasures_of_another_process_reach_the_index(booth: Booth) -> None:
    rng = np.random.default_rng(4)
    guard = booth.likeness
    face_a, face_b = unit(rng), unit(rng)
    user_a = await booth.repo.get_or_create_user("cli", "a")
    await booth.repo.add_photos(user_a.id, [photo_row(1, face_a)])
    await guard.refresh()
    assert guard.index.users() == {user_a.id}

    # Another process (the command line) works on the same file through its own connection.
    async with Database(booth.repo.db.path) as other_db:
        other = Repository(other_db)
        user_b = await other.get_or_create_user("cli", "b")
        await other.add_photos(user_b.id, [photo_row(2, face_b), photo_row(3, face_b)])
        # A photo that was not accepted is counted but never stands for anybody.
        await other_db.conn.execute(
            "INSERT INTO photos (user_id, sha256, image_blob, crop_blob, descriptor, dhash,"
            " face_box, sharpness, verdict, created_at) VALUES (?, 'x', 'k', 'k', ?, '0',"
            " '[]', 0, 'rejected', 'now')",
            (user_a.id, face_b.astype("<f4").tobytes()),
        )
        await guard.refresh()
        assert guard.index.users() == {user_a.id, user_b.id}
        assert guard.index.photos_of(user_b.id) == 2 and guard.index.photos_of(user_a.id) == 1
        await other.delete_user(user_b.id)
    await guard.refresh()
    assert guard.index.users() == {user_a.id}
    assert guard.index.match(face_b, requester=user_a.id) is None


# real photos ----------------------------------------------------------------------------

ENROL = 3  # photos each user uploads; the rest of theirs stand in for generated pictures


def as_png(path: Path, side: int = 512) -> bytes:
    """A real photo at the size a model draws, standing in for a generated picture."""
    image = Image.open(path).convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


async def enrol(booth: Booth, who: Identity, photos: list[Path]) -> int:
    await booth.accept_consent(who)
    verdicts = await booth.upload(who, [Upload(p.name, p.read_bytes()) for p in photos])
    assert all(v.accepted for v in verdicts), verdicts
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    return user.id


async def run_result(booth: Booth, user_id: int, pngs: list[bytes]) -> dict[str, Any]:
    """The dispatcher's result path for a generation of `user_id` that drew `pngs`."""
    job = await booth.jobs.enqueue(user_id, ImagineRequest("a portrait"))
    config = booth.config
    # Not started: the test hands it the result the engine would have sent.
    dispatcher = Dispatcher(
        booth.repo,
        booth.jobs,
        booth.blobs,
        EngineProcess(engine_options(config)),
        config.work_dir,
        max_attempts=1,
        likeness=booth.likeness,
    )
    out = dispatcher.job_dir(job.id) / "out"
    out.mkdir(parents=True)
    images: list[OutputImage] = []
    for n, png in enumerate(pngs, start=1):
        (out / f"image-{n}.png").write_bytes(png)
        images.append({"path": str(out / f"image-{n}.png"), "seed": n, "width": 1, "height": 1})
    generated: Generated = {"images": images, "blocked": [], "prompt": "a portrait", "seconds": 1}
    await dispatcher._complete(job, generated, None)
    finished = await booth.jobs.get(job.id)
    assert finished is not None and finished.status == "succeeded"
    result = finished.outcome()
    assert isinstance(result, ImagineResult)
    stored = set(json.loads(finished.result or "{}"))
    return {"images": result.images, "withheld": result.withheld, "job_id": job.id, "keys": stored}


@pytest.fixture
def keeping(config: Config) -> Config:
    moderation = dataclasses.replace(config.moderation, keep_blocked_images=True)
    return dataclasses.replace(config, moderation=moderation)


async def test_another_users_face_is_withheld_and_reviewed_until_they_are_erased(
    keeping: Config, analyzer: FaceAnalyzer, faces: Path
) -> None:
    guido, woz = person(faces, "guido_van_rossum"), person(faces, "steve_wozniak")
    allen = person(faces, "paul_allen")
    async with open_booth(keeping, analyzer) as booth:
        user_a = await enrol(booth, A, guido[:ENROL])
        user_b = await enrol(booth, B, woz[:ENROL])
        # B's photos that were never uploaded, A's own, and someone who is no user.
        pngs = [as_png(p) for p in [*woz[ENROL:], *guido[ENROL:], allen[0]]]
        others = len(woz) - ENROL

        summary = await run_result(booth, user_a, pngs)
        assert summary["withheld"] == others
        assert len(summary["images"]) == len(pngs) - others
        # What the requester's result holds: pictures, a count, the prompt; nobody's number.
        assert summary["keys"] == {"v", "kind", "images", "withheld", "model_prompt"}
        stored = await booth.repo.images_of_job(summary["job_id"])
        assert [i.seed for i in stored] == list(range(others + 1, len(pngs) + 1))

        items = await booth.repo.review_items()
        assert len(items) == others
        for n, item in enumerate(items, start=1):
            detail = json.loads(item.detail)
            assert (item.kind, item.user_id, item.job_id) == ("image", user_a, summary["job_id"])
            assert detail["reason"] == LIKENESS_REASON and detail["other_user"] == user_b
            assert 0 < detail["distance"] <= keeping.intake.identity_threshold
            assert detail["seed"] == n
            assert item.blob is not None and await booth.blobs.get(item.blob) == pngs[n - 1]
        listing = format_review(items)
        assert f"{LIKENESS_REASON}: user #{user_b}" in listing

        # B's own job showing B passes; showing A is withheld the other way round.
        mirrored = await run_result(booth, user_b, [pngs[0], pngs[others]])
        assert (len(mirrored["images"]), mirrored["withheld"]) == (1, 1)

        await booth.forget(B)
        assert user_b not in booth.likeness.index
        # A's review items stay (they are about A) without B's number; B's went with B.
        details = [json.loads(i.detail) for i in await booth.repo.review_items()]
        assert len(details) == others
        assert all("other_user" not in d and d["reason"] == LIKENESS_REASON for d in details)
        after = await run_result(booth, user_a, pngs)
        assert after["withheld"] == 0 and len(after["images"]) == len(pngs)


async def test_attachments_and_previews_are_checked_the_same_way(
    booth: Booth, faces: Path, tmp_path: Path
) -> None:
    guido, woz = person(faces, "guido_van_rossum"), person(faces, "steve_wozniak")
    user_a = await enrol(booth, A, guido[:ENROL])
    await enrol(booth, B, woz[:ENROL])
    guard: LikenessGuard = booth.likeness

    assert await guard.check_picture(user_a, woz[-1].read_bytes()) == ATTACHMENT_REFUSED
    assert await guard.check_picture(user_a, guido[-1].read_bytes()) is None
    assert await guard.check_picture(user_a, person(faces, "paul_allen")[0].read_bytes()) is None
    refusal = await guard.check_picture(user_a, b"GIF89a not really")
    assert refusal is not None and refusal != ATTACHMENT_REFUSED  # the decoder's own reason

    assert not await guard.allows_preview(user_a, as_png(woz[-1], 256))
    assert await guard.allows_preview(user_a, as_png(guido[-1], 256))
