"""Styles in Telegram on the real engine (tiny model): an admin adds a style LoRA by
sending the file with /admin style add, a user names it in /imagine (`--style`), and the
"Try a style" button draws the same picture in it; the refusals come back as messages.

The user's model is a real LoRA of the tiny model put in storage directly (training has
journeys of its own), so the engine loads it and the style together."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from fakes.telegram_api import FakeTelegram, Person
from helpers_styles import give_model, pickled, tiny_lora
from PIL import Image
from telegram_harness import ADMIN, Conversation, running_bot, telegram_config

from bot.config import Config
from bot.core import Identity, ImagineRequest
from engine.intake import FaceAnalyzer

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

BEA = Person(6262, "Bea")


def difference(png: bytes, other: bytes) -> float:
    """The mean absolute difference of two pictures' pixels (0 to 255)."""
    with Image.open(io.BytesIO(png)) as a, Image.open(io.BytesIO(other)) as b:
        return float(np.abs(np.asarray(a, "f4") - np.asarray(b, "f4")).mean())


def parameters(png: bytes) -> dict[str, object]:
    with Image.open(io.BytesIO(png)) as img:
        return dict(json.loads(img.info["parameters"]))


async def test_a_style_from_the_admin_to_the_users_picture(
    config: Config, fake: FakeTelegram, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    face, face_sha = tiny_lora(tmp_path / "face.safetensors", config.models_dir, seed=1)
    style, style_sha = tiny_lora(tmp_path / "ikea.safetensors", config.models_dir, seed=2)
    async with running_bot(telegram_config(config, fake), analyzer) as (booth, _):
        admin = Conversation(fake, ADMIN)
        since = fake.mark()
        await fake.document(
            ADMIN, style.read_bytes(), "ikea.safetensors", "application/octet-stream",
            caption="/admin style add ikea --weight 0.8 --trigger flat pack",
        )  # fmt: skip
        added = await admin.reply(since)
        assert "Style 'ikea' added: weight 0.8, trigger words 'flat pack'" in added.text
        since = fake.mark()
        await fake.document(
            ADMIN, pickled(tmp_path / "x.ckpt").read_bytes(), "lego.ckpt",
            "application/octet-stream", caption="/admin style add lego",
        )  # fmt: skip
        refused = await admin.reply(since)
        assert "'lego.ckpt' is a .ckpt file, a pickle-based format" in refused.text
        assert [s.name for s in await booth.repo.styles()] == ["ikea"]

        bea = Conversation(fake, BEA)
        await bea.accept()
        await give_model(booth, Identity("telegram", str(BEA.id)), face.read_bytes(), face_sha)

        unknown = await bea.send("/imagine me on a sofa --style lego")
        assert "There is no style 'lego'. Styles: ikea." in unknown.text
        weighty = await bea.send("/imagine me on a sofa --style ikea:2.5")
        assert "The weight of style 'ikea' must be a number 0 to 2, not '2.5'" in weighty.text

        since = fake.mark()
        await fake.say(BEA, "/imagine me on a sofa --style ikea --seed 7 --steps 2")
        photo = await bea.reply(since, "sendPhoto", where=lambda c: "reply_markup" in c.params)
        job_id = int(photo.params["caption"].split("job ")[1].split(")")[0])
        assert photo.buttons()[-1:] == [f"style:{job_id}:ikea"]
        job = await booth.jobs.get(job_id)
        assert job is not None and isinstance(request := job.request(), ImagineRequest)
        assert [(s.name, s.sha256, s.weight) for s in request.styles] == [("ikea", style_sha, 0.8)]
        styled = parameters(photo.files["photo"][1])
        assert styled["styles"] == "ikea:0.8" and str(styled["prompt"]).endswith(", flat pack")

        # The same picture without the style, then again with it from the button.
        since = fake.mark()
        await fake.say(BEA, "/imagine me on a sofa --seed 7 --steps 2")
        plain = await bea.reply(since, "sendPhoto", where=lambda c: "reply_markup" in c.params)
        assert parameters(plain.files["photo"][1])["styles"] == ""
        plain_job = int(plain.params["caption"].split("job ")[1].split(")")[0])
        since = await bea.press(plain, f"style:{plain_job}:ikea")
        assert "in the ikea style is on its way" in (await bea.answer(since)).params["text"]
        again = await bea.reply(since, "sendPhoto", where=lambda c: "reply_markup" in c.params)
        # The button draws the first styled picture again (its watermark, another job id,
        # moves pixels by about one level); the style moves them much more.
        assert difference(again.files["photo"][1], photo.files["photo"][1]) < 3
        assert difference(again.files["photo"][1], plain.files["photo"][1]) > 10
        tried = parameters(again.files["photo"][1])
        assert tried["styles"] == "ikea:0.8" and tried["prompt"] == styled["prompt"]
