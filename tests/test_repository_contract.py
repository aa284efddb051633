"""The repository contract: what every `storage.ports.Repository` backend must do.

Behaviour through the interface only: users and what they own, erasure, models and
pictures made once per job, the review queue, settings, the audit log, and the
moderation store (bans, quotas, strikes, blocklist edits, figures).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from storage_backends import BACKENDS, Backend, open_backend

from engine.jobs import ImagineRequest, ImagineResult, TrainRequest
from storage import NewPhoto, ports

PICTURE = ImagineRequest("a portrait", count=3)
TRAINING = TrainRequest(("c" * 64,), "zovaka", "tiny", seed=1, sample_every=0, checkpoint_every=1)
LORA = {"base_model": "tiny", "family": "tiny", "trigger_word": "zovaka", "recipe": {"rank": 4}}


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    async with open_backend(request.param, tmp_path) as backend:
        yield backend


@pytest.fixture
def repo(backend: Backend) -> ports.Repository:
    return backend.repo


def _photo(image: str, descriptor: bytes = b"\1" * 512) -> NewPhoto:
    return NewPhoto("f" * 64, image, "b" * 64, descriptor, "0" * 16, (1, 2, 3, 4), 100.0)


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat(timespec="milliseconds")


async def test_a_user_is_made_once_and_found_three_ways(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("telegram", "42")
    assert await repo.get_or_create_user("telegram", "42") == ann
    assert await repo.find_user("telegram", "42") == ann
    assert await repo.find_user("discord", "42") is None
    assert await repo.get_user(ann.id) == ann
    assert ann.trigger_word is None and ann.ban_reason is None
    await repo.set_trigger_word(ann.id, "zovaka")
    found = await repo.find_user_by_trigger("zovaka")
    assert found is not None and found.id == ann.id and found.trigger_word == "zovaka"


async def test_consent_is_the_latest_accepted_text(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    assert await repo.active_consent(ann.id) is None
    first = await repo.add_consent(ann.id, "1", "a" * 64, "cli")
    second = await repo.add_consent(ann.id, "2", "b" * 64, "cli")
    assert (first.version, second.version) == ("1", "2")
    assert await repo.active_consent(ann.id) == second


async def test_photos_and_what_the_face_index_reads(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    bob = await repo.get_or_create_user("cli", "bob")
    assert await repo.photo_stamp() == (0, 0)
    a_ids = await repo.add_photos(ann.id, [_photo("1" * 64), _photo("2" * 64)])
    (b_id,) = await repo.add_photos(bob.id, [_photo("3" * 64, b"\2" * 512)])
    assert [p.image_blob for p in await repo.photos(ann.id)] == ["1" * 64, "2" * 64]
    assert await repo.photo_stamp() == (3, b_id)
    assert await repo.photo_counts() == {ann.id: 2, bob.id: 1}
    assert await repo.photo_descriptors(after_id=a_ids[-1]) == [(b_id, bob.id, True, b"\2" * 512)]
    assert [r[0] for r in await repo.photo_descriptors(user_id=ann.id)] == a_ids
    assert not repo.busy_writing()


async def test_erasing_a_user_leaves_nothing_that_names_them(
    backend: Backend, repo: ports.Repository
) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    bob = await repo.get_or_create_user("cli", "bob")
    await repo.add_consent(ann.id, "1", "a" * 64, "cli")
    await repo.add_photos(ann.id, [_photo("1" * 64)])
    await repo.add_photos(bob.id, [_photo("1" * 64)])
    await repo.add_lora(ann.id, blob="4" * 64, sha256="4" * 64, **LORA)  # type: ignore[arg-type]
    job = await backend.queue.enqueue(ann.id, PICTURE)
    await repo.add_image(job.id, ann.id, blob="5" * 64, seed=1, width=8, height=8)
    await repo.add_strike(ann.id, "sexual", _iso(timedelta()))
    await repo.add_review_item("prompt", ann.id, {"prompt": "x"})
    # Bob's withheld picture showed Ann's face: that pointer goes, Bob's item stays.
    bobs = await repo.add_review_item("image", bob.id, {"other_user": ann.id, "distance": 0.3})
    assert await repo.blob_keys_of(ann.id) == {"1" * 64, "b" * 64, "4" * 64, "5" * 64}

    await repo.delete_user(ann.id)
    await repo.checkpoint()

    assert await repo.get_user(ann.id) is None and await repo.find_user("cli", "ann") is None
    assert await repo.active_consent(ann.id) is None
    assert (await repo.photos(ann.id), await repo.loras(ann.id)) == ([], [])
    assert (await repo.jobs(ann.id), await backend.queue.get(job.id)) == ([], None)
    assert await repo.images_of_job(job.id) == []
    assert await repo.strike_count(ann.id) == 0
    assert await repo.blob_keys_of(ann.id) == set()
    assert await repo.blob_in_use("1" * 64)  # Bob sent the same photo
    assert not await repo.blob_in_use("4" * 64)
    items = await repo.review_items()
    assert [i.id for i in items] == [bobs] and "other_user" not in items[0].detail
    # Ids are never reused: an old reference can never point at a new user.
    assert (await repo.get_or_create_user("cli", "cy")).id > bob.id


async def test_models_are_versions_and_one_is_active(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    assert await repo.active_lora(ann.id) is None
    v1 = await repo.add_lora(ann.id, blob="1" * 64, sha256="1" * 64, **LORA)  # type: ignore[arg-type]
    v2 = await repo.add_lora(ann.id, blob="2" * 64, sha256="2" * 64, **LORA)  # type: ignore[arg-type]
    assert (v1.version, v2.version) == (1, 2)
    assert (await repo.active_lora(ann.id)).blob == "2" * 64  # type: ignore[union-attr]
    assert await repo.set_active_lora(ann.id, 1)
    assert (await repo.active_lora(ann.id)).version == 1  # type: ignore[union-attr]
    assert not await repo.set_active_lora(ann.id, 7)
    assert (await repo.active_lora(ann.id)).version == 1  # type: ignore[union-attr]
    assert [x.version for x in await repo.loras(ann.id)] == [1, 2]


async def test_what_a_job_made_is_stored_once_however_often_it_is_reported(
    backend: Backend, repo: ports.Repository
) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    training = await backend.queue.enqueue(ann.id, TRAINING)
    first = await repo.add_lora(ann.id, blob="1" * 64, sha256="1" * 64, job_id=training.id, **LORA)  # type: ignore[arg-type]
    again = await repo.add_lora(ann.id, blob="1" * 64, sha256="1" * 64, job_id=training.id, **LORA)  # type: ignore[arg-type]
    assert again == first and len(await repo.loras(ann.id)) == 1
    picture = await backend.queue.enqueue(ann.id, PICTURE)
    for key in ("2" * 64, "2" * 64, "3" * 64):
        await repo.add_image(picture.id, ann.id, blob=key, seed=5, width=64, height=32)
    images = await repo.images_of_job(picture.id)
    assert [(i.blob, i.seed, i.width, i.height) for i in images] == [
        ("2" * 64, 5, 64, 32),
        ("3" * 64, 5, 64, 32),
    ]
    assert await repo.image_count(ann.id) == 2
    assert await repo.delete_job_images(picture.id) == ["2" * 64, "3" * 64]
    assert await repo.images_of_job(picture.id) == []
    assert [j.id for j in await repo.jobs(ann.id)] == [training.id, picture.id]


async def test_a_review_item_is_resolved_once(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    first = await repo.add_review_item("prompt", ann.id, {"prompt": "a"})
    second = await repo.add_review_item("image", ann.id, {"classes": []}, blob="6" * 64)
    assert await repo.has_open_review(ann.id, "prompt")
    assert await repo.blob_in_use("6" * 64)
    assert await repo.resolve_review_item(first, "approved", "cli:operator")
    assert not await repo.resolve_review_item(first, "rejected", "cli:other")
    item = await repo.review_item(first)
    assert item is not None and (item.status, item.resolved_by) == ("approved", "cli:operator")
    assert [i.id for i in await repo.review_items()] == [second]
    assert [i.id for i in await repo.review_items("approved")] == [first]
    assert not await repo.has_open_review(ann.id, "prompt")
    assert await repo.review_item(second + 100) is None


async def test_settings_are_set_replaced_and_removed(repo: ports.Repository) -> None:
    assert await repo.setting("queue_paused") is None
    await repo.set_setting("queue_paused", "maintenance")
    await repo.set_setting("queue_paused", "upgrade")
    assert await repo.setting("queue_paused") == "upgrade"
    await repo.set_setting("queue_paused", None)
    assert await repo.setting("queue_paused") is None


async def test_the_audit_log_reads_newest_first(repo: ports.Repository) -> None:
    await repo.audit("cli:operator", "admin.pause", {"reason": "x"})
    await repo.audit("system", "user.suspended")
    entries = await repo.audit_entries()
    assert [(e.actor, e.action) for e in entries] == [
        ("system", "user.suspended"),
        ("cli:operator", "admin.pause"),
    ]
    assert len(await repo.audit_entries(1)) == 1


async def test_a_ban_is_set_and_lifted_once(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    until = _iso(timedelta(days=1))
    await repo.set_ban(ann.id, "spam", until)
    banned = await repo.get_user(ann.id)
    assert banned is not None and (banned.ban_reason, banned.banned_until) == ("spam", until)
    assert await repo.lift_ban(ann.id)
    assert not await repo.lift_ban(ann.id)
    lifted = await repo.get_user(ann.id)
    assert lifted is not None and (lifted.ban_reason, lifted.banned_until) == (None, None)


async def test_quotas_change_only_what_is_given(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    await repo.set_quotas(ann.id, 10, None)
    await repo.set_quotas(ann.id, None, 0)
    user = await repo.get_user(ann.id)
    assert user is not None and (user.images_per_day, user.trainings_per_week) == (10, 0)


async def test_strikes_count_all_or_within_a_window(repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    await repo.add_strike(ann.id, "sexual", _iso(-timedelta(days=2)))
    await repo.add_strike(ann.id, "hate", _iso(-timedelta(minutes=5)))
    assert await repo.strike_count(ann.id) == 2
    assert await repo.strike_count(ann.id, _iso(-timedelta(hours=1))) == 1


async def test_jobs_that_count_against_a_quota(backend: Backend, repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    kept = await backend.queue.enqueue(ann.id, PICTURE)
    failed = await backend.queue.enqueue(ann.id, PICTURE)
    cancelled = await backend.queue.enqueue(ann.id, PICTURE)
    await backend.queue.enqueue(ann.id, TRAINING)
    await backend.queue.finish(failed.id, "failed", error="boom")
    await backend.queue.finish(cancelled.id, "cancelled")
    since = _iso(-timedelta(days=1))
    counted = await repo.productive_jobs_since(ann.id, "imagine", since)
    assert [j.id for j in counted] == [kept.id] and counted[0].request() == PICTURE
    assert await repo.productive_jobs_since(ann.id, "imagine", _iso(timedelta(hours=1))) == []


async def test_the_last_blocklist_edit_of_a_term_wins(repo: ports.Repository) -> None:
    await repo.set_blocklist_term(
        "crowbar", "violence", removed=False, by="a", at=_iso(timedelta())
    )
    await repo.set_blocklist_term("nude", "sexual", removed=True, by="a", at=_iso(timedelta()))
    await repo.set_blocklist_term("crowbar", "violence", removed=True, by="b", at=_iso(timedelta()))
    edits = await repo.blocklist_terms()
    assert [(e.term, e.category, e.removed) for e in edits] == [
        ("crowbar", "violence", True),
        ("nude", "sexual", True),
    ]


async def test_service_figures(backend: Backend, repo: ports.Repository) -> None:
    ann = await repo.get_or_create_user("cli", "ann")
    await repo.get_or_create_user("cli", "bob")
    queue = backend.queue
    await queue.enqueue(ann.id, PICTURE)
    running = await queue.enqueue(ann.id, PICTURE)
    done = await queue.enqueue(ann.id, PICTURE)
    failed = await queue.enqueue(ann.id, TRAINING)
    for job in (running, done, failed):
        await queue.mark_running(job.id)
    await queue.finish(done.id, "succeeded", result=ImagineResult(()))
    await queue.finish(failed.id, "failed", error="boom")
    await repo.add_review_item("prompt", ann.id, {})
    stats = await repo.service_stats()
    assert (stats.queued, stats.running, stats.users, stats.open_reviews) == (1, 1, 2, 1)
    assert (stats.finished_last_hour, stats.failed_last_day) == (2, 1)
    assert set(stats.average_seconds) == {"imagine"} and stats.average_seconds["imagine"] >= 0


async def test_the_style_library_holds_one_style_per_name(repo: ports.Repository) -> None:
    assert await repo.styles() == []
    ikea = await repo.add_style(
        "ikea", blob="6" * 64, sha256="6" * 64, weight=0.7, trigger="flat pack",
        family="sd15", added_by="cli:operator",
    )  # fmt: skip
    assert ikea is not None
    assert (ikea.name, ikea.blob, ikea.sha256, ikea.weight) == ("ikea", "6" * 64, "6" * 64, 0.7)
    assert (ikea.trigger, ikea.family, ikea.added_by) == ("flat pack", "sd15", "cli:operator")
    assert ikea.added_at
    # A name is taken once: the second file is not added, the first stays as it was.
    taken = await repo.add_style(
        "ikea", blob="7" * 64, sha256="7" * 64, weight=1.0, trigger="",
        family="sd15", added_by="telegram:1",
    )  # fmt: skip
    assert taken is None and await repo.style("ikea") == ikea
    await repo.add_style(
        "anime", blob="7" * 64, sha256="7" * 64, weight=1.0, trigger="",
        family="sd15", added_by="telegram:1",
    )  # fmt: skip
    assert [s.name for s in await repo.styles()] == ["anime", "ikea"]
    # A style's file is in use, though no user owns it: an erasure leaves it alone.
    assert await repo.blob_in_use("6" * 64)
    ann = await repo.get_or_create_user("cli", "ann")
    assert await repo.blob_keys_of(ann.id) == set()

    assert await repo.remove_style("ikea") == ikea
    assert await repo.remove_style("ikea") is None
    assert await repo.style("ikea") is None and not await repo.blob_in_use("6" * 64)
    assert [s.name for s in await repo.styles()] == ["anime"]


async def test_an_attached_picture_is_in_use_while_its_job_may_read_it(
    backend: Backend,
) -> None:
    repo, queue = backend.repo, backend.queue
    ann = await repo.get_or_create_user("cli", "ann")
    bob = await repo.get_or_create_user("cli", "bob")
    job = await queue.enqueue(ann.id, ImagineRequest("me", source="7" * 64, strength=0.5))
    assert await repo.blob_in_use("7" * 64)
    assert await repo.blob_keys_of(ann.id) == {"7" * 64}
    assert await repo.blob_keys_of(bob.id) == set()
    await queue.mark_running(job.id)
    assert await repo.blob_in_use("7" * 64)
    await queue.finish(job.id, "failed", error="engine lost")
    assert not await repo.blob_in_use("7" * 64)  # over: nothing will read it again
    assert await repo.blob_keys_of(ann.id) == {"7" * 64}  # the erasure still finds it
    await repo.delete_user(ann.id)
    assert await repo.blob_keys_of(ann.id) == set()
