"""Whole journeys in Telegram, as a person types them, on the real engine (tiny model):
start, accept, an album of selfies, train, imagine with options, send as file, forget;
a 429 storm while progress is edited; the bot restarted between training and pictures."""

from __future__ import annotations

import dataclasses
import io
import itertools
from pathlib import Path

import pytest
from fakes.telegram_api import Call, FakeTelegram, Person
from helpers_c2pa import assert_selfiebooth_manifest
from helpers_images import person
from helpers_styles import same_model_file
from PIL import Image
from telegram_harness import ADMIN, Conversation, running_bot, telegram_config

from bot.config import Config
from bot.core import Identity, ImagineRequest
from engine.intake import FaceAnalyzer

# PTB 22 warns about its own RetryAfter (an int until PTB_TIMEDELTA is set) on every 429.
pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

ANN = Person(5151, "Ann")


def edits_of(fake: FakeTelegram, message: Call) -> list[Call]:
    """Every attempt to edit the message `message` sent, answered or refused."""
    key = str(message.result["message_id"])
    return [c for c in fake.of("editMessageText") if c.params["message_id"] == key]


def check_pacing(fake: FakeTelegram, chat_id: int, interval: float) -> None:
    """Edits in a chat come `interval` apart, and never before a 429's retry_after is over."""
    edits = fake.of("editMessageText", chat_id=chat_id)
    for before, after in itertools.pairwise(edits):
        assert after.at - before.at >= interval * 0.95, (before.text, after.text)
        if before.status == 429:
            assert after.at - before.at >= 1.0 * 0.95  # the fake asks for 1 s
    assert not [c for c in edits if c.status == 400]  # never "message is not modified"


def pixels(png: bytes) -> tuple[str, tuple[int, int]]:
    with Image.open(io.BytesIO(png)) as img:
        return img.format or "", img.size


async def test_the_whole_journey(
    config: Config, fake: FakeTelegram, faces: Path, analyzer: FaceAnalyzer
) -> None:
    cfg = telegram_config(config, fake)
    cfg = dataclasses.replace(cfg, training=dataclasses.replace(cfg.training, sample_every=3))
    async with running_bot(cfg, analyzer) as (booth, _):
        ann = Conversation(fake, ANN)
        await ann.accept()

        # An album, split across two getUpdates answers: one summary for all of it.
        photos = [p.read_bytes() for p in person(faces, "guido_van_rossum")[:4]]
        since = fake.mark()
        for data in photos[:2]:
            await fake.photo(ANN, data, media_group_id="album-1")
        await fake.wait_served(fake.last_update_id)
        for data in photos[2:]:
            await fake.photo(ANN, data, media_group_id="album-1")
        summary = await ann.reply(since)
        assert [f"Photo {n}: accepted" in summary.text for n in (1, 2, 3, 4)] == [True] * 4
        assert "You have 4 photo(s)" in summary.text and "/train" in summary.text
        assert len(fake.of("sendMessage", since=since)) == 1
        assert len(fake.of("getFile", since=since)) == 4

        trained_since = fake.mark()
        progress = await ann.send("/train")
        assert "queued" in progress.text and progress.buttons() == [f"cancel:{_job(progress)}"]
        done = await ann.job_done(progress, "Model version 1 is ready")
        assert "reply_markup" not in done  # no cancel button on a finished job
        # The likeness, and the samples it was measured on (the tiny model draws no face).
        assert "No face found in the 4 validation samples" in done["text"]
        samples = (await ann.reply(trained_since, "sendMediaGroup")).json("media")
        assert len(samples) == 4 and "validation samples" in samples[0]["caption"]
        steps = [c.text for c in edits_of(fake, progress) if " of " in c.text]
        assert steps and all("of 3" in text for text in steps)
        check_pacing(fake, ANN.id, cfg.telegram.edit_interval)

        since = fake.mark()
        await fake.say(
            ANN, "/imagine me on the moon --seed 42 --ar 3:2 --no glasses --steps 2 --n 2"
        )
        progress = await ann.reply(since)
        job_id = _job(progress)
        album = await ann.reply(since, "sendMediaGroup")
        media = album.json("media")
        assert [m["type"] for m in media] == ["photo", "photo"]
        assert all(
            m["caption"].startswith(
                f"AI-generated image (selfiebooth job {job_id}): me on the moon"
            )
            for m in media
        )
        buttons = await ann.reply(since, where=lambda c: f"reroll:{job_id}" in c.buttons())
        assert buttons.buttons() == [
            f"reroll:{job_id}", f"vary:{job_id}:1", f"vary:{job_id}:2",
            f"upscale:{job_id}:1", f"upscale:{job_id}:2", f"file:{job_id}", f"report:{job_id}",
        ]  # fmt: skip
        assert "done" in fake.stored(progress)["text"]
        job = await booth.jobs.get(job_id)
        assert job is not None
        request = job.request()
        assert isinstance(request, ImagineRequest)
        assert (request.seed, request.aspect_ratio, request.negative) == (42, "3:2", "glasses")
        assert (request.steps, request.count) == (2, 2)

        # Send as file: the PNGs themselves, as documents, with their caption.
        since = await ann.press(buttons, f"file:{job_id}")
        files = await ann.reply(since, "sendMediaGroup")
        documents = files.json("media")
        assert [d["type"] for d in documents] == ["document", "document"]
        sent = [files.files[d["media"].removeprefix("attach://")] for d in documents]
        assert [name for name, _ in sent] == [
            f"selfiebooth-{job_id}-1.png",
            f"selfiebooth-{job_id}-2.png",
        ]
        who = Identity("telegram", str(ANN.id))
        assert [data for _, data in sent] == await booth.job_images(who, job_id)
        fmt, (width, height) = pixels(sent[0][1])
        assert fmt == "PNG" and width > height  # 3:2
        assert_selfiebooth_manifest(sent[0][1], job_id)

        # An admin traces a picture sent back to the bot to the job that made it.
        since = fake.mark()
        await fake.document(ADMIN, sent[0][1], "found.png", "image/png", caption="/admin trace")
        trace = await fake.expect("sendMessage", chat_id=ADMIN.id, since=since)
        assert f"Watermark: job {job_id}" in trace.text, trace.text
        assert "Content Credentials (C2PA): valid" in trace.text, trace.text

        since = await ann.press(buttons, f"report:{job_id}")
        assert "Reported" in (await ann.answer(since)).params["text"]

        # Reroll: the same request with new seeds; variations: four close to picture 2.
        for data, count in [(f"reroll:{job_id}", 2), (f"vary:{job_id}:2", 4)]:
            since = await ann.press(buttons, data)
            assert "on their way" in (await ann.answer(since)).params["text"]
            again = await ann.reply(since, "sendMediaGroup")
            assert len(again.json("media")) == count
            new_job = int(again.json("media")[0]["caption"].split("job ")[1].split(")")[0])
            assert new_job > job_id and "me on the moon" in again.json("media")[0]["caption"]
            await ann.reply(since, where=lambda c, j=new_job: f"reroll:{j}" in c.buttons())

        status = await ann.send("/status")
        assert "Photos: 4" in status.text and "Model version 1" in status.text
        assert "Generated pictures: 8" in (await ann.send("/mydata")).text
        since = fake.mark()
        await fake.say(ANN, "/export")
        export = await ann.reply(since, "sendDocument")
        name, weights = export.files["document"]
        assert name.startswith("selfiebooth-") and name.endswith("-v1-kohya.safetensors")
        assert same_model_file(weights, (await booth.export(who)).data)
        assert b'"lora_unet_' in weights[:65536]  # the kohya layout
        assert "ComfyUI" in export.params["caption"]
        since = fake.mark()
        await fake.say(ANN, "/export diffusers")
        name, weights = (await ann.reply(since, "sendDocument")).files["document"]
        user = await booth.repo.find_user("telegram", str(ANN.id))
        lora = await booth.repo.active_lora(user.id) if user is not None else None
        assert lora is not None and name.endswith("-v1.safetensors")
        assert weights == await booth.blobs.get(lora.blob)  # the file the bot keeps

        confirm = await ann.send("/forget")
        since = await ann.press(confirm, "forget:yes")
        gone = await ann.reply(since, "editMessageText")
        assert "Deleted 4 selfie(s), 1 model(s), 4 job(s)" in gone.text
        assert not [p for p in cfg.blob_dir.rglob("*") if p.is_file()]
        async with booth.repo.db.conn.execute("SELECT COUNT(*) FROM users") as cur:
            assert (await cur.fetchone())[0] == 0  # type: ignore[index]


async def test_a_429_storm_while_progress_is_edited(
    config: Config, fake: FakeTelegram, faces: Path, analyzer: FaceAnalyzer
) -> None:
    cfg = telegram_config(config, fake)
    async with running_bot(cfg, analyzer):
        ann = Conversation(fake, ANN)
        await ann.accept()
        files = [(p.name, p.read_bytes()) for p in person(faces, "paul_allen")[:3]]
        await ann.upload_documents(files)

        since = fake.mark()
        await fake.say(ANN, "/train")
        progress = await ann.reply(since)
        fake.fail("editMessageText", 5, retry_after=1)
        # A network error on the way, too: the answer still arrives.
        fake.disconnect("editMessageText", 1)
        done = await ann.job_done(progress, "Model version 1 is ready")
        assert "done" in done["text"]
        edits = edits_of(fake, progress)
        assert [c.status for c in edits[:6]] == [429] * 5 + [0]
        check_pacing(fake, ANN.id, cfg.telegram.edit_interval)

        # Pictures through a 429 and a dropped connection on their way out.
        fake.fail("sendPhoto", 1, retry_after=1)
        fake.disconnect("sendPhoto", 1)
        since = fake.mark()
        await fake.say(ANN, "/imagine a portrait --steps 2")
        photo = await ann.reply(since, "sendPhoto")
        assert [c.status for c in fake.of("sendPhoto", since=since)] == [429, 0, 200]
        assert photo.params["caption"].startswith("AI-generated image (selfiebooth job")
        assert photo.files["photo"][1].startswith(b"\x89PNG")
        assert len(fake.of("sendPhoto", since=since)) == 3  # one picture, sent once


async def test_the_bot_restarts_between_training_and_pictures(
    config: Config, fake: FakeTelegram, faces: Path, analyzer: FaceAnalyzer
) -> None:
    cfg = telegram_config(config, fake)
    files = [(p.name, p.read_bytes()) for p in person(faces, "steve_wozniak")[1:4]]
    ann = Conversation(fake, ANN)
    async with running_bot(cfg, analyzer):
        await ann.accept()
        await ann.upload_documents(files)
        since = fake.mark()
        await fake.say(ANN, "/train")
        progress = await ann.reply(since)
        # Stopped mid-training: the job and its progress message are picked up again.
        await fake.expect("editMessageText", since=since, where=lambda c: "step" in c.text)

    async with running_bot(cfg, analyzer) as (booth, _):
        done = await ann.job_done(progress, "Model version 1 is ready")
        assert done["message_id"] == progress.result["message_id"]
        since = fake.mark()
        await fake.say(ANN, "/imagine me as a painting --steps 2 --seed 7")
        photo = await ann.reply(since, "sendPhoto")
        job_id = int(photo.params["caption"].split("job ")[1].split(")")[0])
        assert f"file:{job_id}" in photo.buttons()

    # The buttons under the picture outlive the bot that sent them.
    async with running_bot(cfg, analyzer) as (booth, _):
        message = {"chat": {"id": ANN.id}, "message_id": photo.result["message_id"]}
        since = fake.mark()
        await fake.press(ANN, message, f"file:{job_id}")
        document = await ann.reply(since, "sendDocument")
        assert document.files["document"][0] == f"selfiebooth-{job_id}-1.png"
        who = Identity("telegram", str(ANN.id))
        assert [document.files["document"][1]] == await booth.job_images(who, job_id)
        owed = await booth.repo.db.conn.execute_fetchall("SELECT * FROM chat_messages")
        assert list(owed) == []  # every job was answered


def _job(progress: Call) -> int:
    return int(progress.text.split("(job ")[1].split(")")[0])


async def test_a_flux_journey_in_the_chat(
    config: Config, fake: FakeTelegram, faces: Path, analyzer: FaceAnalyzer
) -> None:
    cfg = telegram_config(config, fake)
    cfg = dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, base="tiny-flux"),
        training=dataclasses.replace(cfg.training, steps=4, likeness=False),
    )
    ann = Conversation(fake, ANN)
    async with running_bot(cfg, analyzer) as (booth, _):
        await ann.accept()
        await ann.upload_documents(
            [(p.name, p.read_bytes()) for p in person(faces, "guido_van_rossum")[:4]]
        )
        progress = await ann.send("/train")
        await ann.job_done(progress, "Model version 1 is ready")

        refused = await ann.send("/imagine me on the moon --no glasses")
        assert "takes no negative prompt" in refused.text
        since = fake.mark()
        await fake.say(ANN, "/imagine me on the moon --seed 42 --ar 3:2")
        photo = await ann.reply(since, "sendPhoto")
        job_id = int(photo.params["caption"].split("job ")[1].split(")")[0])
        job = await booth.jobs.get(job_id)
        assert job is not None
        request = job.request()
        assert isinstance(request, ImagineRequest)
        # FLUX.1-dev's defaults where the user set none.
        assert (request.steps, request.guidance, request.seed) == (28, 3.5, 42)
        _, (width, height) = pixels(photo.files["photo"][1])
        assert width > height and width % 16 == 0 and height % 16 == 0
        since = fake.mark()
        await fake.say(ANN, "/imagine me as a statue --steps 3 --guidance 2")
        photo = await ann.reply(since, "sendPhoto")
        chosen = await booth.jobs.get(int(photo.params["caption"].split("job ")[1].split(")")[0]))
        assert chosen is not None
        assert (chosen.request().steps, chosen.request().guidance) == (3, 2.0)  # type: ignore[union-attr]

        since = fake.mark()
        await fake.say(ANN, "/export")
        export = await ann.reply(since, "sendDocument")
        name, weights = export.files["document"]
        assert name.endswith("-v1.safetensors")  # no kohya file: the diffusers layout
        assert b'"transformer.' in weights[:65536]
        assert "FLUX LoRA in the diffusers layout" in export.params["caption"]
