"""Storage: migrations, the append-only audit log, cascading erasure, and the blob store."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.jobs import ImagineRequest
from storage import Database, LocalBlobStore, NewPhoto, Repository
from storage.blobs import BlobStore, InvalidBlobKey
from storage.database import migrations
from storage.jobs import JobQueue


async def test_migrations_apply_once_and_record_the_version(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with Database(path) as db:
        assert await db.schema_version() == len(migrations())
    # A second start finds the schema current and changes nothing.
    async with Database(path) as db:
        assert await db.schema_version() == len(migrations())
    tables = {
        row[0]
        for row in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert {"users", "consents", "photos", "loras", "jobs", "audit_log"} <= tables


async def test_audit_log_is_append_only(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite3") as db:
        repo = Repository(db)
        await repo.audit("admin:1", "user.banned", {"why": "spam"})
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.conn.execute("UPDATE audit_log SET action = 'nothing'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.conn.execute("DELETE FROM audit_log")
        entries = await repo.audit_entries()
        assert [(e.actor, e.action) for e in entries] == [("admin:1", "user.banned")]


async def test_deleting_a_user_cascades_to_everything_they_own(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite3") as db:
        repo = Repository(db)
        alice = await repo.get_or_create_user("cli", "alice")
        bob = await repo.get_or_create_user("cli", "bob")
        assert await repo.get_or_create_user("cli", "alice") == alice
        for user in (alice, bob):
            await repo.add_consent(user.id, "1", "0" * 64, "cli")
            await repo.add_photos(user.id, [_photo("a" * 64)])
        assert await repo.blob_keys_of(alice.id) == {"a" * 64, "b" * 64}

        await repo.delete_user(alice.id)

        assert await repo.find_user("cli", "alice") is None
        assert await repo.active_consent(alice.id) is None
        assert await repo.photos(alice.id) == []
        assert len(await repo.photos(bob.id)) == 1
        assert await repo.blob_in_use("a" * 64)  # bob still uses it
        # Ids are never reused, so an old reference can never point at a new user.
        carol = await repo.get_or_create_user("cli", "carol")
        assert carol.id > bob.id


def _photo(image_key: str) -> NewPhoto:
    return NewPhoto(
        sha256="f" * 64,
        image_blob=image_key,
        crop_blob="b" * 64,
        descriptor=b"\0" * 512,
        dhash="0" * 16,
        face_box=(1, 2, 3, 4),
        sharpness=100.0,
    )


# The blob store contract: every BlobStore backend must pass these.
@pytest.fixture(params=["local"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    assert request.param == "local"
    return LocalBlobStore(tmp_path / "blobs")


async def test_blob_round_trip_is_content_addressed(store: BlobStore) -> None:
    key = await store.put(b"hello")
    assert key == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    assert await store.put(b"hello") == key
    assert await store.get(key) == b"hello"
    assert await store.exists(key)
    await store.delete(key)
    assert not await store.exists(key)
    await store.delete(key)  # absent keys are fine
    with pytest.raises(KeyError):
        await store.get(key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "A" * 64, "a" * 63, "", "a" * 64 + "/x"])
async def test_blob_keys_cannot_name_other_paths(store: BlobStore, key: str) -> None:
    with pytest.raises(InvalidBlobKey):
        await store.get(key)


async def test_local_blobs_are_written_atomically(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    key = await store.put(b"x" * 10_000)
    path = store.path(key)
    assert path.read_bytes() == b"x" * 10_000
    assert path.parent.parent == tmp_path / "blobs"
    # No temporary file is left behind.
    assert [p.name for p in path.parent.iterdir()] == [key]


async def test_service_figures_count_only_jobs_within_their_window(tmp_path: Path) -> None:
    async with Database(tmp_path / "db.sqlite3") as db:
        repo = Repository(db)
        queue = JobQueue(db)
        ann = await repo.get_or_create_user("cli", "ann")
        recent = await queue.enqueue(ann.id, ImagineRequest("a portrait"))
        earlier = await queue.enqueue(ann.id, ImagineRequest("a portrait"))
        for job in (recent, earlier):
            await queue.mark_running(job.id)
            await queue.finish(job.id, "failed", error="boom")
        # Stored times carry a "T" and an offset: the window must not compare them as text.
        two_hours_ago = (datetime.now(UTC) - timedelta(hours=2)).isoformat(timespec="milliseconds")
        await db.conn.execute(
            "UPDATE jobs SET finished_at = ? WHERE id = ?", (two_hours_ago, earlier.id)
        )
        stats = await repo.service_stats()
        assert (stats.finished_last_hour, stats.failed_last_day) == (1, 2)
