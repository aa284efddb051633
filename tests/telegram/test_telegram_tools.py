"""The picture tools in Telegram on the real engine (tiny model): /imagine on a photo's
caption (image-to-image), its Upscale button, /imagine --edges in reply to a photo, and
/edit with a mask sent in reply to the picture; the refusals come back as messages.

Bea's model is a real LoRA of the tiny model put in storage directly; her one photo's
descriptor is no face's, so every picture with a face is a stranger's to the bot, and
the pictures she edits have none (a landscape, which anybody may redraw)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fakes.telegram_api import FakeTelegram
from helpers_images import encode, gradient, person
from helpers_styles import give_model, tiny_lora
from PIL import Image
from telegram_harness import Conversation, running_bot, telegram_config
from test_telegram_styles import BEA, parameters

from bot.config import Config
from bot.core import Identity
from engine.intake import FaceAnalyzer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")


def size(png: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(png)) as img:
        return img.size


def job_of(caption: str) -> int:
    return int(caption.split("job ")[1].split(")")[0])


async def test_picture_tools_from_the_chat(
    config: Config, fake: FakeTelegram, analyzer: FaceAnalyzer, faces: Path, tmp_path: Path
) -> None:
    face, face_sha = tiny_lora(tmp_path / "face.safetensors", config.models_dir, seed=1)
    async with running_bot(telegram_config(config, fake), analyzer) as (booth, _):
        bea = Conversation(fake, BEA)
        await bea.accept()
        await give_model(booth, Identity("telegram", str(BEA.id)), face.read_bytes(), face_sha)
        castle = encode(gradient(480, 320), "PNG")

        def result(call: object) -> bool:
            return "reply_markup" in getattr(call, "params", {})

        # Image-to-image: a photo captioned /imagine. Nothing of it is kept to run again,
        # so the buttons offer no reroll or variations.
        since = fake.mark()
        sent = await fake.photo(BEA, castle, caption="/imagine a castle at night --strength 0.5")
        made = await bea.reply(since, "sendPhoto", where=result)
        job = job_of(made.params["caption"])
        assert made.buttons() == [f"upscale:{job}:1", f"file:{job}", f"report:{job}"]
        picture = made.files["photo"][1]
        assert parameters(picture)["tool"] == "img2img" and parameters(picture)["strength"] == 0.5

        # Upscale: the same picture twice as large, with no second upscale offered.
        since = await bea.press(made, f"upscale:{job}:1")
        assert "twice as large" in (await bea.answer(since)).params["text"]
        big = await bea.reply(since, "sendPhoto", where=result)
        assert size(big.files["photo"][1]) == (2 * size(picture)[0], 2 * size(picture)[1])
        upscaled = job_of(big.params["caption"])
        assert big.buttons() == [f"file:{upscaled}", f"report:{upscaled}"]

        # Edges: /imagine in reply to the photo, --edges.
        since = fake.mark()
        await fake.say(BEA, "/imagine a stone statue --edges --steps 4", reply_to_message=sent)
        edged = await bea.reply(since, "sendPhoto", where=result)
        assert parameters(edged.files["photo"][1])["tool"] == "edges"

        # Edit: a mask (the left half white) sent in reply to the picture.
        mask = Image.new("L", (480, 320), 0)
        mask.paste(255, (0, 0, 240, 320))
        since = fake.mark()
        await fake.photo(
            BEA, encode(mask, "PNG"), caption="/edit mask a red door --steps 4", reply_to=sent
        )
        edited = await bea.reply(since, "sendPhoto", where=result)
        assert parameters(edited.files["photo"][1])["tool"] == "edit"

        # Refusals, each a message, nothing queued.
        jobs_before = len((await booth.status(Identity("telegram", str(BEA.id)))).jobs)
        since = fake.mark()
        await fake.photo(BEA, castle, caption="/edit background a beach")
        assert "found no face in your picture" in (await bea.reply(since)).text
        stranger = person(faces, "steve_wozniak")[0].read_bytes()
        since = fake.mark()
        await fake.photo(BEA, stranger, caption="/imagine me as a knight")
        assert "a face that is not yours" in (await bea.reply(since)).text
        since = fake.mark()
        await fake.say(BEA, "/edit mask a red door")
        assert "reply to your picture with the mask attached" in (await bea.reply(since)).text
        assert len((await booth.status(Identity("telegram", str(BEA.id)))).jobs) == jobs_before
