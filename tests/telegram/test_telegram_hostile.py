"""The nastiest of the hostile files (tests/hostile.py) sent to the Telegram bot as one
album of documents: one answer, one verdict line per file under a name shown visibly,
nothing stored for a refused file. The chat fake and the core are real, as in
test_telegram_chat.py; the bulk of the fuzz suite runs through the command line."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from fakes.telegram_api import FakeTelegram, Person
from helpers_images import encode, gradient, person
from hostile import exif_blob, jpeg_with_exif, tall_png
from PIL import Image
from telegram_harness import Conversation, running_bot, telegram_config

from bot.config import Config
from bot.telegram.texts import SORRY
from engine.intake import FaceAnalyzer

EVE = Person(6666, "Eve")


def turned_selfie(path: Path) -> bytes:
    """A selfie stored on its side with orientation 6 and an entry Pillow cannot write back."""
    with Image.open(path) as img:
        img = img.convert("RGB")
    img.thumbnail((700, 700))
    out = io.BytesIO()
    img.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=90)
    exif = exif_blob([(0x0112, 3, 1, struct.pack("<H", 6)), (0x0128, 6, 1, b"\xff")])
    return jpeg_with_exif(out.getvalue(), exif)


async def test_hostile_documents_each_get_one_verdict(
    config: Config, fake: FakeTelegram, analyzer: FaceAnalyzer, faces: Path
) -> None:
    truncated = encode(gradient(400, 300), "JPEG")
    files = [
        ("turned.jpg", turned_selfie(person(faces, "paul_allen")[0])),
        ("strip.png", tall_png(128, 312_500)),
        ("x.jpg\nx.jpg: accepted", b"junk"),
        ("evil\u202egpj.exe", truncated[: len(truncated) // 2]),
        ("polyglot.jpg", b"%PDF-1.7\n" + truncated),
        ("n" * 300 + ".jpg", b"\xff\xd8\xff" + encode(gradient(300, 200), "PNG")),
    ]
    async with running_bot(telegram_config(config, fake), analyzer) as (booth, _):
        eve = Conversation(fake, EVE)
        await eve.accept()
        since = fake.mark()
        for name, data in files:
            await fake.document(EVE, data, name, "image/jpeg", media_group_id="album-1")
        answer = await eve.reply(since, where=lambda c: "accepted." in c.text)
        stored = [p for p in booth.config.blob_dir.rglob("*") if p.is_file()]

    assert SORRY not in answer.text
    assert "\u202e" not in answer.text and "x.jpg: accepted" not in answer.text.splitlines()
    lines = answer.text.splitlines()
    assert lines[:6] == [
        "turned.jpg: accepted",
        "strip.png: refused: its shape is too extreme (128 x 312500): send a photo whose "
        "longer side is at most 4 times its shorter side",
        "x.jpg\\nx.jpg: accepted: refused: file name not allowed (it holds a path or control "
        "characters): rename the file",
        "evil\\u202egpj.exe: refused: file name not allowed (it holds a path or control "
        "characters): rename the file",
        "polyglot.jpg: refused: not an image: send a photo as JPEG, PNG, WebP or HEIC",
        f"{'n' * 39}…{'n' * 35}.jpg: refused: the image is damaged or incomplete: send the "
        "original photo again",
    ]
    assert lines[7].startswith("1 of 6 accepted.")
    assert len(stored) == 2  # the one accepted photo and its crop
