"""The whole journey on Discord, as a user clicks through it: consent, selfies as
attachments, training, pictures with options, the result buttons (also after a restart
of the bot, and pressed by someone else), and erasure. The real discord.py client talks
to the fake Discord; the core runs the real engine on the tiny model."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

from discord_harness import (
    ADMIN,
    ANN,
    BOB,
    EDIT_INTERVAL,
    MANAGE_GUILD,
    TIMEOUT,
    results_of,
    running_bot,
    who,
)
from fakes.discord_api import EPHEMERAL, FakeDiscord, FakeMessage
from helpers_c2pa import assert_selfiebooth_manifest
from helpers_images import person
from helpers_styles import same_model_file
from PIL import Image

from bot.config import Config
from engine.intake import FaceAnalyzer

ANSWER = 4  # an interaction callback that answers with a message


async def test_the_whole_journey(
    fake: FakeDiscord, discord_config: Config, analyzer: FaceAnalyzer, faces: Path
) -> None:
    async with running_bot(discord_config, fake, analyzer) as bot:
        names = {c["name"]: c for c in fake.commands[None]}
        assert set(names) >= {"consent", "upload", "train", "imagine", "admin", "forget"}
        assert int(names["admin"]["default_member_permissions"]) == MANAGE_GUILD

        # Consent: ephemeral text with its buttons.
        shown = await fake.reply(await fake.command(ANN, "consent"))
        assert shown.ephemeral and "Consent, version 1" in shown.content
        await fake.press(ANN, shown, shown.button("Accept"))
        await fake.wait_for(lambda: "accepted" in shown.content, "consent accepted")
        assert shown.components == []

        # Selfies as attachments: four of one person, one of someone else, one too large.
        obama = person(faces, "barack_obama")
        photos = [*obama[:2], person(faces, "joe_biden")[0], *obama[2:]]
        attachments = [fake.attachment(p.name, p.read_bytes()) for p in photos]
        huge = fake.attachment("huge.jpg", b"never fetched", size=30 * 1024 * 1024)
        options = {f"photo{n}": a for n, a in enumerate([*attachments, huge], start=1)}
        verdicts = await fake.reply(await fake.command(ANN, "upload", options))
        assert verdicts.ephemeral
        lines = verdicts.content.splitlines()
        assert [line.endswith(": accepted") for line in lines[:6]] == [
            True,
            True,
            False,
            True,
            True,
            False,
        ]
        assert "not the same person" in lines[2] and "file too large" in lines[5]
        assert "4 of 6 accepted" in verdicts.content
        assert not any("huge" in key for key in fake.downloads)

        # Training waits while an admin holds the queue: the message shows its position.
        held = await fake.reply(await fake.command(ADMIN, "admin", {"command": "pause"}))
        assert "paused" in held.content
        training = await fake.command(ANN, "train")
        progress = await fake.reply(training, "the training's first message")
        assert progress.ephemeral and "position 1" in progress.content
        assert progress.button("Cancel").startswith("sb:cancel:")
        await fake.reply(await fake.command(ADMIN, "admin", {"command": "resume"}))
        await fake.wait_for(
            lambda: "version 1 is ready" in progress.content, "the trained model", TIMEOUT
        )
        shown_states = [content for _, content, _ in progress.history]
        assert any("step 2 of 4" in s or "step 4 of 4" in s for s in shown_states)
        # The last sample stays on the ready message, sent then if the pacer skipped it.
        assert [a["filename"] for a in progress.attachments] == ["preview.png"]
        # The likeness, and privately the samples it was measured on.
        assert "No face found in the 4 validation samples" in progress.content
        samples = await fake.wait_for(
            lambda: next(iter(fake.followups(training)), None), "the validation samples"
        )
        assert samples.ephemeral and "validation samples" in samples.content
        assert len(samples.attachments) == 4
        _assert_throttled(progress)
        assert progress.components == []

        # Pictures with options: progress privately, results for the channel.
        imagine = await fake.command(
            ANN,
            "imagine",
            {
                "prompt": "a portrait in the rain",
                "negative": "blurry",
                "seed": 7,
                "aspect_ratio": "4:5",
                "steps": 2,
                "count": 2,
            },
        )
        results = await results_of(fake, imagine)
        job_id = int(results.button("Reroll").split(":")[2])
        assert not results.ephemeral
        assert f"AI-generated image (selfiebooth job {job_id})" in results.content
        assert "a portrait in the rain" in results.content
        assert len(results.attachments) == 2
        first = Image.open(io.BytesIO(fake.file(results.attachments[0])))
        assert first.width < first.height  # 4:5
        assert "AI-generated" in str(first.info)  # provenance kept in the PNG
        assert_selfiebooth_manifest(fake.file(results.attachments[0]), job_id)
        assert [c.split(":")[1] for c in results.custom_ids()] == [
            "vary",
            "vary",
            "reroll",
            "file",
            "delete",
            "report",
            "upscale",
            "upscale",
        ]
        done = fake.original(imagine)
        assert done is not None and done.ephemeral
        await fake.wait_for(lambda: "below" in done.content, "the progress message's last words")

        # Someone else may report the pictures, but not use the owner's buttons.
        refused = await fake.press(BOB, results, results.button("Reroll"))
        answer = await fake.reply(refused)
        assert refused.callback_type == ANSWER and answer.flags & EPHEMERAL
        assert "Only the person who asked" in answer.content
        report = await fake.reply(await fake.press(BOB, results, results.button("Report")))
        assert "Thank you" in report.content
        items = await bot.booth.repo.review_items("open")
        assert [(i.kind, i.job_id) for i in items] == [("report", job_id)]

    # A restart of the bot: the old buttons still work, with no view kept in memory.
    async with running_bot(discord_config, fake, analyzer) as bot:
        originals = await bot.booth.job_images(who(ANN), job_id)
        limit = min(len(png) for png in originals) * 2 // 3
        reroll = await fake.press(ANN, results, results.button("Reroll"), size_limit=limit)
        rerolled = await results_of(fake, reroll)
        assert rerolled.id != results.id and "made smaller to fit" in rerolled.content
        assert all(a["size"] <= limit for a in rerolled.attachments)
        new_job = int(rerolled.button("Reroll").split(":")[2])
        assert new_job != job_id
        # The smaller copies are signed again: the same job, and a resize.
        for attachment in rerolled.attachments:
            assert_selfiebooth_manifest(fake.file(attachment), new_job, resized=True)

        as_files = await fake.reply(
            await fake.press(ANN, rerolled, rerolled.button("Send as file"))
        )
        assert as_files.ephemeral
        sent = [fake.file(a) for a in as_files.attachments]
        assert sent == await bot.booth.job_images(who(ANN), new_job)

        varied = await results_of(
            fake, await fake.press(ANN, rerolled, rerolled.button("Variations 2"))
        )
        assert len(varied.attachments) == 4 and "AI-generated image" in varied.content

        await fake.press(ANN, results, results.button("Delete"))
        await fake.wait_for(lambda: results.deleted, "the first results to be deleted")
        assert not rerolled.deleted

        # What is stored, and the model itself, privately.
        data = await fake.reply(await fake.command(ANN, "mydata"))
        assert data.ephemeral and "Selfies: 4" in data.content and "Models: 1" in data.content
        export = await fake.reply(await fake.command(ANN, "export"))
        assert export.ephemeral and export.attachments[0]["filename"].endswith(".safetensors")
        assert same_model_file(
            fake.file(export.attachments[0]), (await bot.booth.export(who(ANN))).data
        )

        # Erasure with its confirm button.
        confirm = await fake.reply(await fake.command(ANN, "forget"))
        await fake.press(ANN, confirm, confirm.button("Delete everything"))
        await fake.wait_for(lambda: "Forgotten" in confirm.content, "the erasure")
        status = await fake.reply(await fake.command(ANN, "status"))
        assert "Nothing is stored about you" in status.content
        await fake.settled()


def _assert_throttled(message: FakeMessage) -> None:
    # The first state is Discord's "thinking", before the bot's first edit.
    times = [at for at, _, _ in message.history[1:]]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps and min(gaps) >= EDIT_INTERVAL * 0.9, gaps
