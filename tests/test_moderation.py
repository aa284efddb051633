"""Moderation in the core: rate limits, strikes and suspension, bans, quotas, likeness rules."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from bot.config import Config
from bot.core import Booth, BoothError, ConsentRequired, Identity, ImagineRequest, open_booth
from bot.core.moderation import TokenBuckets, format_wait, parse_duration
from bot.core.types import RateLimited, Suspended
from engine.jobs import Variation
from engine.safety.classifier import MODEL_PATH
from storage import NewPhoto

ALICE = Identity("telegram", "4401")
BOB = Identity("discord", "99120")
OPERATOR = Identity("cli", "operator")


def quick(prompt: str, **options: Any) -> ImagineRequest:
    return ImagineRequest(prompt, steps=2, **options)


def moderated(config: Config, **changes: object) -> Config:
    return dataclasses.replace(config, moderation=dataclasses.replace(config.moderation, **changes))


@pytest.fixture
async def mbooth(config: Config) -> AsyncIterator[Booth]:
    config = dataclasses.replace(
        config, training=dataclasses.replace(config.training, min_photos=2)
    )
    async with open_booth(config) as booth:
        yield booth


async def enrol(booth: Booth, who: Identity, *, photos: int = 0, model: bool = False) -> int:
    """A consenting user with stored photos (one face) and optionally a trained model."""
    await booth.accept_consent(who)
    user = await booth.repo.find_user(who.platform, who.user_id)
    assert user is not None
    rng = np.random.default_rng(user.id)
    face = rng.normal(0, 0.05, 128).astype("<f4")
    rows = []
    for n in range(photos):
        key = await booth.blobs.put(f"{who}-{n}".encode())
        rows.append(
            NewPhoto(
                sha256=f"{user.id}-{n}",
                image_blob=key,
                crop_blob=key,
                descriptor=(face + rng.normal(0, 0.01, 128)).astype("<f4").tobytes(),
                dhash=f"{n:016x}",
                face_box=(0, 0, 10, 10),
                sharpness=100.0,
            )
        )
    if rows:
        await booth.repo.add_photos(user.id, rows)
    if model:
        word = await booth.requests._new_trigger_word(user)
        blob = await booth.blobs.put(b"lora weights of " + who.user_id.encode())
        await booth.repo.add_lora(
            user.id,
            base_model="tiny",
            family="tiny",
            trigger_word=word,
            blob=blob,
            sha256="0" * 64,
            recipe={},
        )
    return user.id


# rate limits ---------------------------------------------------------------------------


def test_a_token_bucket_allows_a_burst_then_says_when_to_come_back() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=0.5, burst=2, clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(2.0)
    assert buckets.take("b") == 0  # buckets are per key
    now[0] = 2.0
    assert buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(2.0)


async def test_commands_beyond_the_rate_are_refused_with_the_wait(config: Config) -> None:
    async with open_booth(moderated(config, commands_per_minute=1.0, command_burst=3)) as booth:
        for _ in range(3):
            await booth.status(ALICE)
        with pytest.raises(RateLimited, match=r"too fast: try again in (\d+ s|1 min)\.") as refused:
            await booth.status(ALICE)
        assert 0 < refused.value.retry_after <= 60
        await booth.status(BOB)  # someone else is not held up


def test_waits_and_durations_read_like_people_write_them() -> None:
    assert [format_wait(s) for s in (0.2, 59, 61, 3600, 3 * 3600 + 60, 50 * 3600)] == [
        "1 s",
        "59 s",
        "2 min",
        "1 h",
        "3 h 1 min",
        "2 d 2 h",
    ]
    assert parse_duration("12h").total_seconds() == 12 * 3600
    assert parse_duration("2W").days == 14
    for bad in ("", "h", "12", "0d", "1y", "-1d"):
        with pytest.raises(ValueError, match="use a number and m, h, d or w"):
            parse_duration(bad)


# strikes and suspension ------------------------------------------------------------------


async def test_refused_prompts_strike_and_suspend_until_reviewed(config: Config) -> None:
    async with open_booth(moderated(config, strikes_to_suspend=2)) as booth:
        user_id = await enrol(booth, ALICE, model=True)
        with pytest.raises(BoothError, match=r"falls under sexual\. Refused prompts count"):
            await booth.imagine(ALICE, quick("me, n.u.d.e on a beach"))
        with pytest.raises(BoothError, match=r"falls under minors.*now suspended"):
            await booth.imagine(ALICE, quick("me as a 15 year old in lingerie"))
        # The refusal names the category, never the matched word.
        with pytest.raises(Suspended, match="until an admin reviews it") as refused:
            await booth.imagine(ALICE, quick("me as an astronaut"))
        assert "/forget" in str(refused.value)
        assert (await booth.my_data(ALICE)).strikes == 2
        assert await booth.repo.jobs(user_id) == []

        items = await booth.admin.review_queue(OPERATOR)
        assert [(i.kind, json.loads(i.detail)["category"]) for i in items] == [
            ("prompt", "sexual"),
            ("prompt", "minors"),
        ]
        assert "user.suspended" in [e.action for e in await booth.repo.audit_entries()]

        # Approving the first leaves a refused prompt open: still suspended.
        assert "lifted" not in await booth.admin.decide(OPERATOR, items[0].id, "approve")
        answer = await booth.admin.decide(OPERATOR, items[1].id, "approve", "a film role")
        assert "automatic suspension lifted" in answer
        ticket = await booth.imagine(ALICE, quick("me as an astronaut"))
        assert ticket.kind == "imagine"


async def test_a_refused_negative_prompt_strikes_too(mbooth: Booth) -> None:
    await enrol(mbooth, ALICE, model=True)
    with pytest.raises(BoothError, match="negative prompt was refused"):
        await mbooth.imagine(ALICE, quick("me in a suit", negative="clothes"))
    assert (await mbooth.my_data(ALICE)).strikes == 1


# bans --------------------------------------------------------------------------------------


async def test_a_ban_stops_work_but_not_seeing_or_erasing_ones_data(mbooth: Booth) -> None:
    user_id = await enrol(mbooth, ALICE, photos=2, model=True)
    answer = await mbooth.admin.run(OPERATOR, f"ban telegram:{ALICE.user_id} 7d spamming")
    assert f"User #{user_id} is banned until" in answer

    for attempt in (
        mbooth.imagine(ALICE, quick("me")),
        mbooth.train(ALICE),
        mbooth.export(ALICE),
        mbooth.use_model(ALICE, 1),
        mbooth.ready_to_upload(ALICE),  # chats ask before they download anything
    ):
        with pytest.raises(Suspended, match=r"suspended until \d{4}-\d\d-\d\d .*spamming"):
            await attempt
    mine = await mbooth.my_data(ALICE)
    assert mine.ban_reason == "spamming" and mine.photos == 2
    assert (await mbooth.status(ALICE)).photos == 2

    entry = (await mbooth.repo.audit_entries())[0]
    assert (entry.actor, entry.action) == ("cli:operator", "admin.ban")
    assert json.loads(entry.detail)["reason"] == "spamming"

    assert "may use the bot again" in await mbooth.admin.run(OPERATOR, f"unban #{user_id} ok")
    await mbooth.imagine(ALICE, quick("me as a knight"))


async def test_a_ban_for_a_time_ends_by_itself(mbooth: Booth) -> None:
    user_id = await enrol(mbooth, ALICE, model=True)
    await mbooth.admin.run(OPERATOR, f"ban #{user_id} 1h cooling off")
    with pytest.raises(Suspended):
        await mbooth.imagine(ALICE, quick("me"))
    # An hour later (the ban's end moved into the past):
    await mbooth.repo.db.conn.execute(
        "UPDATE users SET banned_until = '2000-01-01T00:00:00+00:00' WHERE id = ?", (user_id,)
    )
    await mbooth.imagine(ALICE, quick("me"))


async def test_a_ban_needs_a_reason_and_a_real_user(mbooth: Booth) -> None:
    await enrol(mbooth, ALICE)
    with pytest.raises(BoothError, match="Say why"):
        await mbooth.admin.run(OPERATOR, f"ban telegram:{ALICE.user_id}")
    with pytest.raises(BoothError, match="no user telegram:1"):
        await mbooth.admin.run(OPERATOR, "ban telegram:1 reason")
    with pytest.raises(BoothError, match="is not a user"):
        await mbooth.admin.run(OPERATOR, "ban alice reason")
    with pytest.raises(BoothError, match="no admin command 'bann'"):
        await mbooth.admin.run(OPERATOR, "bann #1 x")


# quotas ------------------------------------------------------------------------------------


async def test_the_daily_image_quota_counts_what_was_made(config: Config) -> None:
    async with open_booth(moderated(config, images_per_day=3)) as booth:
        user_id = await enrol(booth, ALICE, model=True)
        first = await booth.imagine(ALICE, quick("me", count=2))
        with pytest.raises(RateLimited, match="3 images a day and 1 are left") as refused:
            await booth.imagine(ALICE, quick("me", count=2))
        assert 23 * 3600 < refused.value.retry_after <= 24 * 3600
        # A cancelled job made nothing, so it uses none of the quota.
        await booth.cancel(ALICE, first.job_id)
        await booth.imagine(ALICE, quick("me", count=3))

        answer = await booth.admin.run(OPERATOR, f"quota #{user_id} images=10 trainings=0")
        assert answer == f"User #{user_id}: 10 images a day, 0 training(s) a week."
        await booth.cancel(ALICE)
        await booth.imagine(ALICE, quick("me", count=4))


async def test_the_weekly_training_quota(config: Config) -> None:
    config = dataclasses.replace(
        moderated(config, trainings_per_week=1),
        training=dataclasses.replace(config.training, min_photos=2),
    )
    async with open_booth(config) as booth:
        await enrol(booth, ALICE, photos=2)
        ticket = await booth.train(ALICE)
        await booth.repo.db.conn.execute(
            "UPDATE jobs SET status = 'succeeded' WHERE id = ?", (ticket.job_id,)
        )
        with pytest.raises(RateLimited, match="1 training\\(s\\) a week: try again in 7 d"):
            await booth.train(ALICE)


# likeness ----------------------------------------------------------------------------------


async def test_training_checks_again_that_the_photos_show_one_person(mbooth: Booth) -> None:
    user_id = await enrol(mbooth, ALICE, photos=3)
    # A photo of somebody else slipped in (say, accepted under a looser threshold).
    other = np.random.default_rng(7).normal(0, 0.05, 128).astype("<f4") + 0.3
    key = await mbooth.blobs.put(b"stranger")
    await mbooth.repo.add_photos(
        user_id, [NewPhoto("x", key, key, other.tobytes(), "f" * 16, (0, 0, 9, 9), 90.0)]
    )
    with pytest.raises(BoothError, match="1 of your photos do not look like the same person"):
        await mbooth.train(ALICE)
    assert await mbooth.repo.jobs(user_id) == []


async def test_nobody_generates_with_or_exports_another_users_model(mbooth: Booth) -> None:
    await enrol(mbooth, ALICE, model=True)
    await enrol(mbooth, BOB, model=True)
    alice = await mbooth.repo.active_lora(1)
    bob = await mbooth.repo.active_lora(2)
    assert alice is not None and bob is not None

    with pytest.raises(BoothError, match="names another person's model"):
        await mbooth.imagine(BOB, quick(f"{alice.trigger_word} at the beach"))
    ticket = await mbooth.imagine(BOB, quick(f"{bob.trigger_word} at the beach"))
    job = await mbooth.jobs.get(ticket.job_id)
    request = job.request() if job is not None else None
    assert isinstance(request, ImagineRequest) and request.model is not None
    assert request.model.blob == bob.blob

    export = await mbooth.export(BOB, "diffusers")
    assert export.data == b"lora weights of " + BOB.user_id.encode()
    assert export.filename == f"selfiebooth-{bob.trigger_word}-v1.safetensors"
    with pytest.raises(BoothError, match="There is no export format 'zip': kohya or diffusers"):
        await mbooth.export(BOB, "zip")
    with pytest.raises(ConsentRequired):
        await mbooth.export(Identity("telegram", "someone-new"))
    with pytest.raises(ConsentRequired):
        await mbooth.ready_to_upload(Identity("telegram", "someone-new"))
    assert (await mbooth.ready_to_upload(BOB)).consent_current

    with pytest.raises(BoothError, match="only its owner"):
        await mbooth.reroll(ALICE, ticket.job_id)
    assert (await mbooth.reroll(BOB, ticket.job_id)).kind == "imagine"


async def test_a_new_consent_version_blocks_training_until_accepted(
    mbooth: Booth, config: Config
) -> None:
    await enrol(mbooth, ALICE, photos=2)
    newer = dataclasses.replace(
        config,
        consent=dataclasses.replace(config.consent, version="2"),
        training=dataclasses.replace(config.training, min_photos=2),
    )
    async with open_booth(newer) as booth2:
        with pytest.raises(ConsentRequired, match="has changed"):
            await booth2.train(ALICE)
        await booth2.accept_consent(ALICE)
        assert (await booth2.train(ALICE)).kind == "train"
        consent = (await booth2.my_data(ALICE)).consent
        assert consent is not None and consent.version == "2"
        assert consent.text_sha256 == booth2.consent_text.sha256


# reports and erasure -------------------------------------------------------------------------


async def test_a_report_reaches_the_review_queue_and_reject_removes_the_pictures(
    mbooth: Booth, config: Config
) -> None:
    owner = await enrol(mbooth, ALICE, model=True)
    ticket = await mbooth.imagine(ALICE, quick("me on the moon"))
    picture = await mbooth.blobs.put(b"a generated png")
    await mbooth.repo.add_image(ticket.job_id, owner, blob=picture, seed=1, width=8, height=8)

    item = await mbooth.report(BOB, ticket.job_id, "this is not the sender")
    with pytest.raises(BoothError, match="no picture job 999"):
        await mbooth.report(BOB, 999)
    listing = await mbooth.admin.run(OPERATOR, "review")
    assert f"{item}. user #{owner}" in listing and "this is not the sender" in listing

    answer = await mbooth.admin.run(OPERATOR, f"review reject {item} not consented")
    assert answer == f"Review item {item} rejected. 1 image(s) removed."
    assert await mbooth.repo.images_of_job(ticket.job_id) == []
    assert not (config.blob_dir / picture[:2] / picture).exists()
    with pytest.raises(BoothError, match=f"no open review item {item}"):
        await mbooth.admin.decide(OPERATOR, item, "approve")


async def test_purge_erases_a_user_and_keeps_only_who_purged_and_why(
    mbooth: Booth, config: Config
) -> None:
    user_id = await enrol(mbooth, ALICE, photos=2, model=True)
    with pytest.raises(BoothError):
        await mbooth.imagine(ALICE, quick("me naked"))
    await mbooth.report(BOB, (await mbooth.imagine(ALICE, quick("me"))).job_id)

    answer = await mbooth.admin.run(OPERATOR, f"purge #{user_id} court order 17")
    assert answer.startswith(f"User #{user_id} purged: 2 photo(s), 1 model(s), 1 job(s)")
    for table in ("users", "consents", "photos", "loras", "jobs", "strikes", "review_items"):
        column = "id" if table == "users" else "user_id"
        async with mbooth.repo.db.conn.execute(
            f"SELECT count(*) FROM {table} WHERE {column} = ?", (user_id,)
        ) as cur:
            assert (await cur.fetchone())[0] == 0, table
    assert [p for p in config.blob_dir.rglob("*") if p.is_file()] == []
    entries = [(e.actor, e.action) for e in await mbooth.repo.audit_entries()]
    assert entries[:2] == [("cli:operator", "admin.purge"), ("user", "user.purged")]


# the prompt filter's lists -----------------------------------------------------------------


async def test_admins_edit_the_blocklist_but_not_the_hard_rules(mbooth: Booth) -> None:
    await enrol(mbooth, ALICE, model=True)
    await mbooth.imagine(ALICE, quick("me holding a crowbar"))
    assert "blocked as violence" in await mbooth.admin.run(
        OPERATOR, "blocklist add violence crowbar"
    )
    with pytest.raises(BoothError, match="falls under violence"):
        await mbooth.imagine(ALICE, quick("me holding a CROWBAR"))
    assert await mbooth.admin.run(OPERATOR, "check-prompt a crowbar") == (
        "refused: violence (in the prompt, by the rules)"
    )
    assert await mbooth.admin.run(OPERATOR, "blocklist") == "violence: + crowbar"

    await mbooth.admin.run(OPERATOR, "blocklist remove violence crowbar")
    await mbooth.admin.run(OPERATOR, "blocklist remove sexual nude")
    assert await mbooth.admin.check_prompt(OPERATOR, "a crowbar") == "allowed"
    assert await mbooth.admin.check_prompt(OPERATOR, "me nude") == (
        "refused: sexual (in the prompt, by the rules)"
    )
    with pytest.raises(BoothError, match="Unknown category 'spam'"):
        await mbooth.admin.run(OPERATOR, "blocklist add spam buy now")
    actions = [e.action for e in await mbooth.repo.audit_entries()]
    assert actions.count("admin.blocklist.add") == 1
    assert actions.count("admin.blocklist.remove") == 2


async def test_the_blocklist_survives_a_restart(mbooth: Booth, config: Config) -> None:
    await mbooth.admin.blocklist_add(OPERATOR, "hate", "grobnik")
    async with open_booth(config) as again:
        assert (await again.prompt_filter()).check("a grobnik").category == "hate"


async def test_pause_and_stats(mbooth: Booth) -> None:
    await enrol(mbooth, ALICE, model=True)
    await mbooth.imagine(ALICE, quick("me"))
    assert "paused" in await mbooth.admin.run(OPERATOR, "pause maintenance")
    stats = await mbooth.admin.run(OPERATOR, "stats")
    assert "queue: 1 waiting, 0 running (paused: maintenance)" in stats
    assert "open review items: 0" in stats
    await mbooth.admin.run(OPERATOR, "resume")
    assert "paused" not in await mbooth.admin.run(OPERATOR, "stats")


async def test_the_audit_log_reads_back(mbooth: Booth) -> None:
    await mbooth.admin.run(OPERATOR, "pause upgrade")
    assert "cli:operator admin.pause" in await mbooth.admin.run(OPERATOR, "audit 5")


async def test_variations_and_rerolls_reuse_the_owners_settings(mbooth: Booth) -> None:
    owner = await enrol(mbooth, ALICE, model=True)
    asked = quick("me in Lisbon", seed=77, count=2, negative="hats", aspect_ratio="3:2")
    ticket = await mbooth.imagine(ALICE, asked)
    for n in (1, 2):
        blob = await mbooth.blobs.put(f"picture {n}".encode())
        await mbooth.repo.add_image(ticket.job_id, owner, blob=blob, seed=76 + n, width=8, height=8)

    varied = await mbooth.variations(ALICE, ticket.job_id, 2)
    rerolled = await mbooth.reroll(ALICE, ticket.job_id)
    for job_id, count in ((varied.job_id, 4), (rerolled.job_id, 2)):
        job = await mbooth.jobs.get(job_id)
        assert job is not None
        request = job.request()
        assert isinstance(request, ImagineRequest)
        assert (request.prompt, request.negative, request.aspect_ratio) == (
            "me in Lisbon",
            "hats",
            "3:2",
        )
        assert request.seed is None and request.count == count
    varied_job = await mbooth.jobs.get(varied.job_id)
    assert varied_job is not None
    varied_request = varied_job.request()
    assert isinstance(varied_request, ImagineRequest)
    assert varied_request.variation == Variation(seed=78, strength=0.25)
    with pytest.raises(BoothError, match="has no image 3"):
        await mbooth.variations(ALICE, ticket.job_id, 3)
    with pytest.raises(BoothError, match="only its owner"):
        await mbooth.variations(BOB, ticket.job_id, 1)


async def test_admins_edit_contexts_and_public_figures_but_cannot_hide_hard_terms(
    mbooth: Booth,
) -> None:
    assert "blocked as public-figure" in await mbooth.admin.run(
        OPERATOR, "blocklist add public-figure Zorblax Quint"
    )
    assert await mbooth.admin.check_prompt(OPERATOR, "me hugging zorblax quint --ar 3:2") == (
        "refused: public-figure (in the prompt, by the rules)"
    )
    await mbooth.admin.run(OPERATOR, "blocklist add sport quidditch")
    # The sport context lifts the violence rule; only the classifier may still object.
    lifted = await mbooth.admin.check_prompt(OPERATOR, "me at quidditch, covered in blood")
    assert "by the rules" not in lifted
    with pytest.raises(BoothError, match="cannot lift those"):
        await mbooth.admin.run(OPERATOR, "blocklist add safe naked beach")
    assert await mbooth.admin.check_prompt(OPERATOR, "me on a beach --no clothes") == (
        "refused: sexual (in the negative prompt, by the rules)"
    )


async def test_review_decisions_become_training_rows(mbooth: Booth) -> None:
    await enrol(mbooth, ALICE, model=True)
    for prompt in ("me nude on a sofa", "me naked in the sea"):
        with pytest.raises(BoothError, match="falls under sexual"):
            await mbooth.imagine(ALICE, quick(prompt))
    items = await mbooth.admin.review_queue(OPERATOR)
    await mbooth.admin.decide(OPERATOR, items[0].id, "approve")
    await mbooth.admin.decide(OPERATOR, items[1].id, "reject")
    assert sorted(await mbooth.admin.review_decisions(OPERATOR)) == [
        ("allow", "me nude on a sofa"),
        ("sexual", "me naked in the sea"),
    ]


async def test_a_deployment_uses_its_own_prompt_classifier(config: Config, tmp_path: Path) -> None:
    """`moderation.classifier_file`: a model that calls everything sexual refuses a
    garden; a file not written yet leaves the packaged model in use."""
    tensors = load_file(str(MODEL_PATH))
    with safe_open(str(MODEL_PATH), "np") as model:
        metadata = model.metadata()
    sexual = json.loads(metadata["categories"]).index("sexual")
    tensors["bias"][sexual] = 50.0
    strict = tmp_path / "strict.safetensors"
    save_file(tensors, str(strict), metadata=metadata)
    garden = "me in a garden"
    for file, allowed in (
        ("", True),
        (str(strict), False),
        (str(tmp_path / "no.safetensors"), True),
    ):
        async with open_booth(moderated(config, classifier_file=file)) as booth:
            verdict = (await booth.moderation.current_filter()).check(garden)
            assert verdict.allowed is allowed, (file, verdict)
            if not allowed:
                assert (verdict.category, verdict.layer) == ("sexual", "classifier")
