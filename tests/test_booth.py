"""The core: consent before anything is stored, uploads judged as a set, erasure of everything."""

from __future__ import annotations

import dataclasses
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers_images import person
from PIL import Image

from bot.config import Config
from bot.core import Booth, BoothError, ConsentRequired, Identity, Upload, open_booth
from bot.core.booth import BAD_NAME, CONFIRMATION_TTL
from engine.intake import FaceAnalyzer

ALICE = Identity("telegram", "alice-7731")
BOB = Identity("telegram", "bob-5520")


def uploads(paths: list[Path]) -> list[Upload]:
    return [Upload(p.name, p.read_bytes()) for p in paths]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []


def rows_of(db_path: Path, user_id: int) -> dict[str, int]:
    conn = sqlite3.connect(db_path)
    try:
        counts = {
            table: conn.execute(
                f"SELECT count(*) FROM {table} WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            for table in (
                "consents",
                "photos",
                "loras",
                "jobs",
                "images",
                "strikes",
                "review_items",
            )
        }
        counts["users"] = conn.execute(
            "SELECT count(*) FROM users WHERE id = ?", (user_id,)
        ).fetchone()[0]
        return counts
    finally:
        conn.close()


async def test_upload_before_consent_is_refused_and_stores_nothing(
    booth: Booth, config: Config, faces: Path
) -> None:
    with pytest.raises(ConsentRequired, match="accept the consent text"):
        await booth.upload(ALICE, uploads(person(faces, "paul_allen")[:2]))
    assert await booth.repo.find_user(ALICE.platform, ALICE.user_id) is None
    assert files_under(config.blob_dir) == []


async def test_a_persons_set_is_accepted_and_stored_without_metadata(
    booth: Booth, config: Config, faces: Path
) -> None:
    await booth.accept_consent(ALICE)
    verdicts = await booth.upload(ALICE, uploads(person(faces, "steve_wozniak")))
    assert [v.reason for v in verdicts] == [None] * 5
    status = await booth.status(ALICE)
    assert status.photos == 5 and status.consent_current

    user = await booth.repo.find_user(ALICE.platform, ALICE.user_id)
    assert user is not None
    for photo in await booth.repo.photos(user.id):
        stored = Image.open(io.BytesIO(await booth.blobs.get(photo.image_blob)))
        assert not stored.getexif() and "icc_profile" not in stored.info
        crop = Image.open(io.BytesIO(await booth.blobs.get(photo.crop_blob)))
        assert crop.size == (booth.family.resolution,) * 2


async def test_someone_else_in_the_set_is_refused(booth: Booth, faces: Path) -> None:
    await booth.accept_consent(ALICE)
    obama = person(faces, "barack_obama")
    batch = uploads([*obama[:2], person(faces, "joe_biden")[0], *obama[2:]])
    verdicts = await booth.upload(ALICE, batch)
    assert [v.accepted for v in verdicts] == [True, True, False, True, True]
    assert "not the same person" in (verdicts[2].reason or "")
    # Later uploads are judged against the photos already kept.
    later = await booth.upload(ALICE, uploads(person(faces, "joe_biden")[1:]))
    assert not later[0].accepted and "not the same person" in (later[0].reason or "")


async def test_file_names_with_paths_are_refused_and_nothing_written(
    booth: Booth, config: Config, faces: Path
) -> None:
    await booth.accept_consent(ALICE)
    data = person(faces, "paul_allen")[0].read_bytes()
    names = ["../../etc/passwd.jpg", "..\\evil.jpg", "a/b.jpg", "..", "bad\x00name.jpg"]
    verdicts = await booth.upload(ALICE, [Upload(n, data) for n in names])
    assert [v.reason for v in verdicts] == [BAD_NAME] * len(names)
    assert files_under(config.blob_dir) == []
    assert (await booth.status(ALICE)).photos == 0


async def test_hostile_files_are_refused_and_nothing_written(booth: Booth, config: Config) -> None:
    await booth.accept_consent(ALICE)
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")
    verdicts = await booth.upload(
        ALICE,
        [
            Upload("bomb.png", bomb.getvalue()),
            Upload("notes.jpg", b"just some text, not a photo\n"),
            Upload("empty.jpg", b""),
        ],
    )
    assert all(not v.accepted and v.reason for v in verdicts)
    assert files_under(config.blob_dir) == []


async def test_a_new_consent_version_asks_again(
    booth: Booth, config: Config, analyzer: FaceAnalyzer, faces: Path
) -> None:
    await booth.accept_consent(ALICE)
    newer = dataclasses.replace(config, consent=dataclasses.replace(config.consent, version="2"))
    async with open_booth(newer, analyzer) as booth2:
        assert not (await booth2.status(ALICE)).consent_current
        with pytest.raises(ConsentRequired, match="has changed"):
            await booth2.upload(ALICE, uploads(person(faces, "paul_allen")[:1]))
        await booth2.accept_consent(ALICE)
        verdicts = await booth2.upload(ALICE, uploads(person(faces, "paul_allen")[:1]))
        assert verdicts[0].accepted


async def test_forget_leaves_no_row_and_no_file_of_the_user(
    booth: Booth, config: Config, faces: Path
) -> None:
    await booth.accept_consent(ALICE)
    await booth.upload(ALICE, uploads(person(faces, "guido_van_rossum")))
    user = await booth.repo.find_user(ALICE.platform, ALICE.user_id)
    assert user is not None and rows_of(config.database_path, user.id)["photos"] == 5
    assert files_under(config.blob_dir)

    erasure = await booth.forget(ALICE)

    assert erasure.photos == 5 and erasure.files == 10
    assert set(rows_of(config.database_path, user.id).values()) == {0}
    assert files_under(config.blob_dir) == []
    # Nothing of the user survives in the database files either, not even in free pages.
    for path in config.data_dir.glob("selfiebooth.sqlite3*"):
        assert ALICE.user_id.encode() not in path.read_bytes(), path
    entries = await booth.repo.audit_entries()
    assert [e.action for e in entries] == ["user.forgotten"]
    assert ALICE.user_id not in entries[0].detail
    assert (await booth.forget(ALICE)).photos == 0


async def test_withdrawing_consent_erases_everything(
    booth: Booth, config: Config, faces: Path
) -> None:
    await booth.accept_consent(ALICE)
    await booth.upload(ALICE, uploads(person(faces, "paul_allen")[:2]))
    erasure = await booth.withdraw_consent(ALICE)
    assert erasure.photos == 2
    assert await booth.repo.find_user(ALICE.platform, ALICE.user_id) is None
    assert files_under(config.blob_dir) == []
    with pytest.raises(ConsentRequired):
        await booth.upload(ALICE, uploads(person(faces, "paul_allen")[2:3]))


async def test_forget_keeps_files_another_user_still_needs(
    booth: Booth, config: Config, faces: Path
) -> None:
    photo = uploads(person(faces, "joe_biden")[:1])
    for who in (ALICE, BOB):
        await booth.accept_consent(who)
        assert (await booth.upload(who, photo))[0].accepted
    assert len(files_under(config.blob_dir)) == 2  # stored once: image and crop

    erasure = await booth.forget(ALICE)

    assert erasure.files == 0
    assert len(files_under(config.blob_dir)) == 2
    assert (await booth.status(BOB)).photos == 1


async def test_an_erasure_confirmation_is_good_for_ten_minutes(booth: Booth) -> None:
    now = datetime.now(UTC)
    booth.check_confirmation(now - CONFIRMATION_TTL + timedelta(seconds=5))
    with pytest.raises(BoothError, match="confirmation is too old"):
        booth.check_confirmation(now - CONFIRMATION_TTL - timedelta(seconds=5))
