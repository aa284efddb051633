"""Slash commands without the engine: admin rights, attachment checks before download,
the 3-second rule when the core is slow, polite refusals, stale buttons, command sync."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest
from discord_harness import ADMIN, ANN, BOB, Bot, consent, running_bot, seed_photos, who
from fakes.discord_api import EPHEMERAL, FakeDiscord, FakeMessage, snowflake
from helpers_styles import lora_file

from bot.config import Config, ConfigError, Secret
from bot.core import open_booth
from bot.discord import DiscordFrontEnd

MB = 1024 * 1024


async def test_admin_commands_are_for_admins_only(fake: FakeDiscord, bot: Bot) -> None:
    stats = await fake.reply(await fake.command(ADMIN, "admin", {"command": "stats"}))
    assert stats.ephemeral and "queue: 0 waiting, 0 running" in stats.content

    refused = await fake.reply(await fake.command(BOB, "admin", {"command": "stats"}))
    assert refused.ephemeral and refused.content == "That command is for the bot's admins only."
    entries = await bot.booth.repo.audit_entries(10)
    assert [e.action for e in entries].count("admin.refused") == 1

    typed = await fake.command(ADMIN, "admin", {"command": "sta"}, focused="command")
    await fake.wait_for(lambda: typed.autocomplete is not None, "the admin's suggestions")
    assert [c["value"] for c in typed.autocomplete or []] == ["stats"]
    guessed = await fake.command(BOB, "admin", {"command": ""}, focused="command")
    await fake.wait_for(lambda: guessed.autocomplete is not None, "no suggestions")
    assert guessed.autocomplete == []
    await fake.settled()


async def test_attachment_sizes_are_checked_before_any_download(
    fake: FakeDiscord, bot: Bot
) -> None:
    photo = fake.attachment("me.png", b"\x89PNG not really")
    # Before consent nothing is fetched at all.
    early = await fake.reply(await fake.command(ANN, "upload", {"photo1": photo}))
    assert early.ephemeral and "accept the consent text" in early.content
    assert fake.downloads == []

    await consent(fake, ANN)
    over_config = fake.attachment("big.jpg", b"x", size=25 * MB)  # config: 20 MB
    over_discord = fake.attachment("mid.jpg", b"x", size=2 * MB)  # this interaction: 1 MB
    upload = await fake.command(
        ANN,
        "upload",
        {"photo1": over_config, "photo2": over_discord, "photo3": photo},
        size_limit=MB,
    )
    lines = (await fake.reply(upload)).content.splitlines()
    assert lines[0].startswith("big.jpg: refused: file too large (25.0 MB)")
    assert lines[1].startswith("mid.jpg: refused: file too large (2.0 MB)") and "1 MB" in lines[1]
    assert lines[2].startswith("me.png: refused") and "too large" not in lines[2]
    assert [key.rsplit("/", 1)[1] for key in fake.downloads] == ["me.png"]
    await fake.settled()


async def test_a_slow_core_still_gets_its_defer_in_time(fake: FakeDiscord, bot: Bot) -> None:
    await consent(fake, ANN)
    user = await bot.booth.repo.find_user("discord", str(ANN.id))
    assert user is not None
    fake.ack_deadline = 1.0  # Discord's 3 seconds, shortened: the test waits them out
    # The core serves one operation per user at a time: holding that turn keeps it busy.
    async with bot.booth._locks[user.id]:
        upload = await fake.command(
            ANN, "upload", {"photo1": fake.attachment("x.png", b"not a picture")}
        )
        await fake.wait_for(lambda: upload.callback_at, "the defer")
        dispatched = upload.dispatched_at
        assert upload.callback_type == 5 and dispatched is not None
        assert upload.callback_at - dispatched < fake.ack_deadline
        # The scenario: the core answers only after Discord's deadline is over.
        await fake.wait_for(
            lambda: time.monotonic() - dispatched > fake.ack_deadline, "the deadline to pass"
        )
        assert fake.answered(upload) is None
    answer = await fake.reply(upload)
    assert "x.png: refused" in answer.content
    await fake.settled()


async def test_core_refusals_are_short_polite_and_private(fake: FakeDiscord, bot: Bot) -> None:
    imagine = await fake.reply(await fake.command(ANN, "imagine", {"prompt": "me"}))
    assert imagine.ephemeral and imagine.content.startswith("Please read and accept")
    await consent(fake, ANN)
    train = await fake.reply(await fake.command(ANN, "train"))
    assert train.ephemeral and "training needs at least 3" in train.content
    export = await fake.reply(await fake.command(ANN, "export"))
    assert "no trained model" in export.content and export.attachments == []
    cancel = await fake.reply(await fake.command(ANN, "cancel", {"job": 99}))
    assert "no queued or running job 99" in cancel.content
    assert all(m.ephemeral for m in fake.messages_of(ANN))
    await fake.settled()


async def test_declining_consent_keeps_nothing(fake: FakeDiscord, bot: Bot) -> None:
    shown = await fake.reply(await fake.command(BOB, "consent"))
    await fake.press(BOB, shown, shown.button("Decline"))
    await fake.wait_for(lambda: "Declined" in shown.content, "the refusal")
    assert shown.components == [] and not (await bot.booth.status(who(BOB))).consent_current
    await fake.settled()


async def test_a_waiting_job_shows_its_place_and_can_be_cancelled(
    fake: FakeDiscord, bot: Bot
) -> None:
    await consent(fake, ANN)
    await seed_photos(bot.booth, ANN)
    await fake.reply(await fake.command(ADMIN, "admin", {"command": "pause"}))
    progress = await fake.reply(await fake.command(ANN, "train"))
    assert "waiting in the queue, position 1" in progress.content
    pressed = await fake.press(ANN, progress, progress.button("Cancel"))
    await fake.wait_for(lambda: "was cancelled" in progress.content, "the cancellation")
    assert pressed.callback_type == 6 and progress.components == []
    status = await bot.booth.status(who(ANN))
    assert [j.status for j in status.jobs] == ["cancelled"]
    await fake.settled()


async def test_a_stale_button_is_answered_not_ignored(fake: FakeDiscord, bot: Bot) -> None:
    old = FakeMessage(snowflake(), 1, content="from an older version")
    old.components = [
        {"type": 1, "components": [{"type": 2, "style": 2, "label": "Old", "custom_id": "sb:x:1"}]}
    ]
    fake.messages[old.id] = old
    pressed = await fake.press(ANN, old, "sb:x:1")
    answer = await fake.reply(pressed)
    assert answer.flags & EPHEMERAL and "no longer works" in answer.content
    await fake.settled()


async def test_a_command_the_bot_no_longer_has_is_answered(fake: FakeDiscord, bot: Bot) -> None:
    data = {"id": str(snowflake()), "name": "ghost", "type": 1, "options": []}
    ghost = await fake.dispatch_interaction(ANN, 2, data)
    answer = await fake.reply(ghost)
    assert answer.flags & EPHEMERAL and answer.content.startswith("Sorry")
    await fake.settled()


async def test_commands_sync_to_configured_guilds_and_work_in_dms(
    fake: FakeDiscord, discord_config: Config
) -> None:
    config = dataclasses.replace(
        discord_config, discord=dataclasses.replace(discord_config.discord, guild_ids=("42",))
    )
    async with running_bot(config, fake):
        assert None not in fake.commands and "help" in {c["name"] for c in fake.commands["42"]}
        help_ = await fake.reply(await fake.command(BOB, "help", dm=True))
        assert "/imagine" in help_.content
        await fake.settled()


async def test_a_wrong_admin_permission_stops_start_up(discord_config: Config) -> None:
    config = dataclasses.replace(
        discord_config,
        discord=dataclasses.replace(discord_config.discord, admin_permission="rule_all"),
    )
    async with open_booth(config) as booth:
        with pytest.raises(ConfigError, match="'rule_all' is not a Discord permission"):
            DiscordFrontEnd(booth, config, Secret("unused"))


async def test_the_style_option_suggests_the_library_and_refuses_unknown_styles(
    fake: FakeDiscord, bot: Bot, tmp_path: Path
) -> None:
    for name, seed in (("ikea", 1), ("ghibli", 2), ("gothic", 3)):
        data = lora_file(tmp_path / f"{name}.safetensors", seed=seed).read_bytes()
        added = await fake.command(
            ADMIN,
            "admin",
            {"command": f"style add {name}", "image": fake.attachment(f"{name}.safetensors", data)},
        )
        assert f"Style '{name}' added" in (await fake.reply(added)).content
    pickle = fake.attachment("anime.ckpt", b"\x80\x04K\x01.")
    refused = await fake.command(ADMIN, "admin", {"command": "style add anime", "image": pickle})
    assert "'anime.ckpt' is a .ckpt file" in (await fake.reply(refused)).content

    await consent(fake, ANN)
    typed = await fake.command(
        ANN, "imagine", {"prompt": "me", "style": "ikea:0.7 g"}, focused="style"
    )
    await fake.wait_for(lambda: typed.autocomplete is not None, "the library's styles")
    assert [c["value"] for c in typed.autocomplete or []] == ["ikea:0.7 ghibli", "ikea:0.7 gothic"]

    unknown = await fake.command(ANN, "imagine", {"prompt": "me", "style": "lego"})
    assert (
        "There is no style 'lego'. Styles: ghibli, gothic, ikea."
        in (await fake.reply(unknown)).content
    )
    unreadable = await fake.command(ANN, "imagine", {"prompt": "me", "style": "ikea:9"})
    answer = await fake.reply(unreadable)
    assert answer.ephemeral and "must be a number 0 to 2, not '9'" in answer.content
    await fake.settled()
