"""The picture tools on Discord on the real engine (tiny model): /imagine with an image
attached (image-to-image), the Upscale button, /imagine with edges_from, and /edit with
a mask; the refusals come back privately.

Ann's model is a real LoRA of the tiny model put in storage directly; her one photo's
descriptor is no face's, and the pictures she attaches have none (a landscape)."""

from __future__ import annotations

import io
import json
from pathlib import Path

from discord_harness import ANN, results_of, running_bot, who
from fakes.discord_api import FakeDiscord
from helpers_images import encode, gradient
from helpers_styles import give_model, tiny_lora
from PIL import Image

from bot.config import Config
from engine.intake import FaceAnalyzer


def picture(fake: FakeDiscord, attachment: dict[str, object]) -> Image.Image:
    return Image.open(io.BytesIO(fake.file(attachment)))


def tool(image: Image.Image) -> str:
    return str(json.loads(image.info["parameters"])["tool"])


async def test_picture_tools_from_discord(
    fake: FakeDiscord, discord_config: Config, analyzer: FaceAnalyzer, tmp_path: Path
) -> None:
    face, sha = tiny_lora(tmp_path / "face.safetensors", discord_config.models_dir, seed=1)
    async with running_bot(discord_config, fake, analyzer) as bot:
        shown = await fake.reply(await fake.command(ANN, "consent"))
        await fake.press(ANN, shown, shown.button("Accept"))
        await fake.wait_for(lambda: "accepted" in shown.content, "consent accepted")
        await give_model(bot.booth, who(ANN), face.read_bytes(), sha)
        castle = encode(gradient(480, 320), "PNG")

        # Image-to-image: nothing of the attached picture is kept, so no reroll.
        asked = {"prompt": "a castle at night", "steps": 4, "strength": 0.5}
        made = await results_of(
            fake,
            await fake.command(ANN, "imagine", asked | {"image": fake.attachment("c.png", castle)}),
        )
        assert [c.split(":")[1] for c in made.custom_ids()] == [
            "file",
            "delete",
            "report",
            "upscale",
        ]
        small = picture(fake, made.attachments[0])
        assert tool(small) == "img2img"

        # Upscale: twice the size, and no Upscale button on it.
        big = await results_of(fake, await fake.press(ANN, made, made.button("Upscale 1")))
        large = picture(fake, big.attachments[0])
        assert large.size == (2 * small.width, 2 * small.height) and tool(large) == "upscale"
        assert "upscale" not in [c.split(":")[1] for c in big.custom_ids()]

        # Edges from an attached picture, and an edit with a mask.
        edges = {
            "prompt": "a stone statue",
            "steps": 4,
            "edges_from": fake.attachment("e.png", castle),
        }
        followed = await results_of(fake, await fake.command(ANN, "imagine", edges))
        assert tool(picture(fake, followed.attachments[0])) == "edges"
        mask = Image.new("L", (480, 320), 0)
        mask.paste(255, (0, 0, 240, 320))
        edit = {
            "image": fake.attachment("c.png", castle),
            "prompt": "a red door",
            "mask": fake.attachment("m.png", encode(mask, "PNG")),
        }
        edited = await results_of(fake, await fake.command(ANN, "edit", edit))
        assert tool(picture(fake, edited.attachments[0])) == "edit"

        # Refusals, privately, nothing queued.
        before = len((await bot.booth.status(who(ANN))).jobs)
        no_face = {"image": fake.attachment("c.png", castle), "prompt": "a beach", "region": "face"}
        refused = await fake.reply(await fake.command(ANN, "edit", no_face))
        assert refused.ephemeral and "found no face in your picture" in refused.content
        both = asked | {
            "image": fake.attachment("c.png", castle),
            "edges_from": fake.attachment("e.png", castle),
        }
        refused = await fake.reply(await fake.command(ANN, "imagine", both))
        assert refused.ephemeral and "not both" in refused.content
        assert len((await bot.booth.status(who(ANN))).jobs) == before
        await fake.settled()
