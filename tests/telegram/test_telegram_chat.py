"""The Telegram front end in conversation, without training: consent, what gets stored,
verdicts on odd uploads, groups, buttons, admins, errors. The real PTB Application polls
the fake Bot API over loopback; the core and SQLite are real."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fakes.telegram_api import BOT_USERNAME, TOKEN, FakeTelegram, Person
from telegram_harness import ADMIN, Conversation, running_bot, telegram_config

from bot.config import Config, ConfigError
from bot.core import Booth
from bot.telegram import TelegramFrontEnd
from engine.intake import FaceAnalyzer

ANN = Person(4242, "Ann")
BOB = Person(4343, "Bob")


@pytest.fixture
async def bot(config: Config, fake: FakeTelegram, analyzer: FaceAnalyzer) -> AsyncIterator[Booth]:
    async with running_bot(telegram_config(config, fake), analyzer) as (booth, _):
        yield booth


async def users(booth: Booth) -> int:
    async with booth.repo.db.conn.execute("SELECT COUNT(*) FROM users") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def stored_files(config: Config) -> list[Path]:
    return [p for p in config.blob_dir.rglob("*") if p.is_file()]


async def test_start_offers_consent_and_declining_stores_nothing(
    bot: Booth, fake: FakeTelegram, faces: Path, config: Config
) -> None:
    ann = Conversation(fake, ANN)
    start = await ann.send("/start")
    assert bot.consent_text.text[:80] in start.text
    yes, no = start.buttons()
    assert yes.startswith("consent:yes:") and no.startswith("consent:no:")
    assert await users(bot) == 0  # reading the consent text stores nothing

    # A consent message older than the text in force accepts nothing.
    since = fake.mark()
    await fake.press(ANN, start.result, "consent:yes:0.9")
    again = await ann.reply(since)
    assert "has changed since it was shown" in again.text and again.buttons() == [yes, no]
    assert await users(bot) == 0

    since = await ann.press(start, no)
    declined = await ann.reply(since)
    assert "nothing about you was stored" in declined.text
    await fake.expect("answerCallbackQuery", since=since)
    assert "reply_markup" not in fake.stored(start)  # the buttons are gone

    since = fake.mark()
    photo = (faces / "people/paul_allen/1.jpg").read_bytes()
    await fake.photo(ANN, photo)
    refusal = await ann.reply(since)
    assert "accept the consent" in refusal.text
    assert refusal.buttons()[0].startswith("consent:yes:")
    assert fake.of("getFile", since=since) == []  # not even downloaded
    assert await users(bot) == 0 and stored_files(bot.config) == []


async def test_odd_uploads_each_get_a_verdict(bot: Booth, fake: FakeTelegram, faces: Path) -> None:
    ann = Conversation(fake, ANN)
    await ann.accept()

    since = fake.mark()
    await fake.photo(ANN, (faces / "multi/two_people.jpg").read_bytes())
    verdict = await ann.reply(since)
    assert "Photo 1: refused: 2 faces in this photo" in verdict.text
    assert "send selfies as files" in verdict.text  # compressed photo: documents are better
    (get_file,) = fake.of("getFile", since=since)
    assert get_file.params["file_id"] == "file-2"  # the full size, not the thumbnail

    since = fake.mark()
    await fake.sticker(ANN)
    assert "Stickers can't be used" in (await ann.reply(since)).text

    since = fake.mark()
    await fake.voice(ANN)
    assert "voice notes" in (await ann.reply(since)).text

    since = fake.mark()
    await fake.document(ANN, b"%PDF-1.7\n1 0 obj <<>> endobj\n", "cv.pdf", "application/pdf")
    assert "cv.pdf: refused: not an image" in (await ann.reply(since)).text

    # Announced bigger than Telegram's 20 MB download limit: refused without a download.
    since = fake.mark()
    big = (faces / "people/paul_allen/2.jpg").read_bytes()
    await fake.document(ANN, big, "huge.jpg", "image/jpeg", file_size=25 * 1024 * 1024)
    assert "huge.jpg: refused: file too large (25.0 MB)" in (await ann.reply(since)).text
    assert fake.of("getFile", since=since) == []

    since = fake.mark()
    await fake.document(ANN, big, "me.jpg", "image/jpeg")
    accepted = await ann.reply(since)
    assert "me.jpg: accepted" in accepted.text and "You have 1 photo(s)" in accepted.text
    assert "Send at least 2 more" in accepted.text
    assert "send selfies as files" not in accepted.text


async def test_groups_get_pointed_to_a_private_chat(bot: Booth, fake: FakeTelegram) -> None:
    group = fake.group()
    since = fake.mark()
    await fake.say(ANN, f"/start@{BOT_USERNAME}", chat=group)
    answer = await fake.expect("sendMessage", chat_id=group["id"], since=since)
    assert "private chat" in answer.text
    assert answer.json("reply_markup")["inline_keyboard"][0][0]["url"] == (
        f"https://t.me/{BOT_USERNAME}"
    )

    since = fake.mark()
    await fake.photo(ANN, b"\xff\xd8\xff not looked at", chat=group)  # not for the bot
    await fake.photo(ANN, b"\xff\xd8\xff", chat=group, caption=f"@{BOT_USERNAME} me!")
    answer = await fake.expect("sendMessage", chat_id=group["id"], since=since)
    assert "private chat" in answer.text

    await fake.say(BOB, f"/imagine@{BOT_USERNAME} a cat", chat=group)
    answer = await fake.expect(
        "sendMessage", chat_id=group["id"], since=since, where=lambda c: "consent" in c.text
    )
    assert "accept the consent" in answer.text
    # One answer for the photo sent to the bot, none for the one that was not.
    assert len(fake.of("sendMessage", since=since)) == 2
    assert fake.of("getFile", since=since) == [] and await users(bot) == 0


async def test_help_commands_and_polite_refusals(bot: Booth, fake: FakeTelegram) -> None:
    (commands,) = [c for c in fake.of("setMyCommands") if "scope" not in c.params]
    names = [c["command"] for c in commands.json("commands")]
    assert {"start", "imagine", "train", "status", "cancel", "mydata", "export", "forget",
            "help", "report"} <= set(names) and "admin" not in names  # fmt: skip
    (admin_menu,) = [c for c in fake.of("setMyCommands") if "scope" in c.params]
    assert admin_menu.json("scope") == {"type": "chat", "chat_id": ADMIN.id}

    ann = Conversation(fake, ANN)
    assert "/imagine" in (await ann.send("/help")).text
    assert "Nothing is stored about you" in (await ann.send("/status")).text
    assert "I don't know that command" in (await ann.send("/frobnicate")).text
    assert "/help" in (await ann.send("hello there")).text
    assert "accept the consent" in (await ann.send("/train")).text
    assert "There is no option --stlye" in (await ann.send("/imagine me --stlye x")).text
    assert "--seed needs a whole number" in (await ann.send("/imagine me --seed soon")).text
    assert "no picture job 999" in (await ann.send("/report 999")).text
    assert "accept the consent" in (await ann.send("/export")).text
    assert await users(bot) == 0


async def test_buttons_that_are_stale_or_foreign_are_answered(
    bot: Booth, fake: FakeTelegram
) -> None:
    ann = Conversation(fake, ANN)
    help_message = await ann.send("/help")
    since = fake.mark()
    await fake.press(ANN, help_message.result, "something:else")
    answer = await fake.expect("answerCallbackQuery", since=since)
    assert "no longer works" in answer.params["text"]

    # Someone else's job (or none at all): the core refuses, politely.
    since = fake.mark()
    await fake.press(ANN, help_message.result, "file:12")
    assert "Sending" in (await fake.expect("answerCallbackQuery", since=since)).params["text"]
    assert "You have no job 12" in (await ann.reply(since)).text
    since = fake.mark()
    await fake.press(ANN, help_message.result, "reroll:12")
    answer = await fake.expect("answerCallbackQuery", since=since)
    assert "only its owner can reuse it" in answer.params["text"]
    assert answer.params["show_alert"] == "true"


async def test_forget_asks_first_and_its_confirmation_expires(
    bot: Booth, fake: FakeTelegram, faces: Path
) -> None:
    ann = Conversation(fake, ANN)
    await ann.accept()
    await ann.upload_documents([("a.jpg", (faces / "people/paul_allen/1.jpg").read_bytes())])

    confirm = await ann.send("/forget")
    since = await ann.press(confirm, "forget:no")
    await fake.expect("deleteMessage", since=since)
    assert (await ann.answer(since)).params["text"] == "Nothing was deleted."
    assert await users(bot) == 1

    confirm = await ann.send("/forget")
    fake.age(confirm.result, 11 * 60)
    since = await ann.press(confirm, "forget:yes")
    answer = await ann.answer(since)
    assert "too old" in answer.params["text"]
    assert await users(bot) == 1

    confirm = await ann.send("/forget")
    since = await ann.press(confirm, "forget:yes")
    done = await ann.reply(since, "editMessageText")
    assert "Deleted 1 selfie(s)" in done.text
    assert await users(bot) == 0 and stored_files(bot.config) == []


async def test_admin_commands_only_for_configured_admins(bot: Booth, fake: FakeTelegram) -> None:
    ann = Conversation(fake, ANN)
    assert "for the bot's admins only" in (await ann.send("/admin stats")).text
    ada = Conversation(fake, ADMIN)
    stats = await ada.send("/admin stats")
    assert "queue: 0 waiting, 0 running" in stats.text
    assert "ban USER" in (await ada.send("/admin")).text
    entries = await bot.repo.audit_entries(50)
    assert [e.action for e in entries].count("admin.refused") == 1


async def test_a_failure_still_gets_an_answer_and_replies_survive_a_dropped_connection(
    bot: Booth, fake: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_: object) -> None:
        raise RuntimeError("a bug in the core")

    monkeypatch.setattr(bot, "my_data", broken)
    ann = Conversation(fake, ANN)
    assert "something went wrong on our side" in (await ann.send("/mydata")).text

    fake.disconnect("sendMessage", 2)
    since = fake.mark()
    await fake.say(ANN, "/help")
    answer = await ann.reply(since)
    assert "How it works" in answer.text
    assert [c.status for c in fake.of("sendMessage", since=since)] == [0, 0, 200]


async def test_the_token_never_reaches_the_log(
    config: Config, fake: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with running_bot(telegram_config(config, fake)):
        await Conversation(fake, ANN).send("/help")
    assert any("getUpdates" in r.getMessage() for r in caplog.records)  # URLs were logged
    assert not any(TOKEN in r.getMessage() for r in caplog.records)
    assert not any(TOKEN.split(":")[1] in r.getMessage() for r in caplog.records)


async def test_webhook_mode_takes_only_updates_signed_with_its_secret(
    config: Config, fake: FakeTelegram
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = telegram_config(config, fake, webhook_url="https://bot.example/hook", webhook_port=port)
    async with running_bot(hook):
        registered = fake.of("setWebhook")[-1]
        assert registered.params["url"] == "https://bot.example/hook"
        secret = registered.params["secret_token"]
        message = fake._user_message(ANN, None, text="/help")
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": 5}]
        update = {"update_id": 1, "message": message}
        url = f"http://127.0.0.1:{port}/hook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update) as forged:
                assert forged.status == 403
            since = fake.mark()
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
            async with http.post(url, json=update, headers=headers) as signed:
                assert signed.status == 200
        answer = await Conversation(fake, ANN).reply(since)
        assert "/imagine" in answer.text
        assert len(fake.of("sendMessage", chat_id=ANN.id)) == 1  # the forged one got nothing
    assert fake.of("getUpdates") == []


async def test_a_missing_token_is_a_config_error(config: Config, fake: FakeTelegram) -> None:
    async with running_bot(telegram_config(config, fake)) as (booth, _):
        with pytest.raises(ConfigError, match="SELFIEBOOTH_TELEGRAM_TOKEN"):
            TelegramFrontEnd(booth, config, None)


async def test_waiting_jobs_show_their_place_in_the_queue(
    config: Config, fake: FakeTelegram, faces: Path, analyzer: FaceAnalyzer
) -> None:
    async with running_bot(telegram_config(config, fake), analyzer) as (_, front):
        front.desk.position_poll = 0.2
        ada = Conversation(fake, ADMIN)
        assert "paused" in (await ada.send("/admin pause maintenance")).text.lower()
        ann, bob = Conversation(fake, ANN), Conversation(fake, BOB)
        progress = {}
        for chat, name in [(ann, "paul_allen"), (bob, "steve_wozniak")]:
            await chat.accept()
            files = sorted((faces / "people" / name).glob("*.jpg"))[1:4]
            await chat.upload_documents([(p.name, p.read_bytes()) for p in files])
            progress[chat] = await chat.send("/train")
        assert "queued, next in line" in progress[ann].text
        assert "queued, number 2 in line" in progress[bob].text

        ann_job = progress[ann].buttons()[0]
        since = await ann.press(progress[ann], ann_job)
        assert "Cancelling job" in (await ann.answer(since)).params["text"]
        assert "cancelled" in (await ann.reply(since, "editMessageText")).text
        moved_up = await bob.reply(since, "editMessageText")
        assert "queued, next in line" in moved_up.text
        assert moved_up.buttons() == progress[bob].buttons()  # still cancellable

        # Erased with everything else: the waiting job's message says so.
        confirm = await bob.send("/forget")
        since = await bob.press(confirm, "forget:yes")
        gone = await bob.reply(
            since,
            "editMessageText",
            where=lambda c: c.params["message_id"] != str(confirm.result["message_id"]),
        )
        assert gone.params["message_id"] == str(progress[bob].result["message_id"])
        assert "deleted with the rest of your data" in gone.text
        assert len(front.desk._following) == 0
