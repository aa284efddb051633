"""`selfiebooth demo`: the whole journey on the embedded defaults, from a fresh clone:
consent, upload, training and two pictures, all through the core and the engine process.

With no `--photos DIR` it uses the portrait of astronaut Eileen Collins that
scikit-image ships (NASA, public domain), so it needs no files of the user's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import shutil
import sys
from pathlib import Path

from bot.cli.output import follow, format_status, save_images
from bot.config import Config
from bot.core import Identity, ImagineRequest, Upload, open_booth

__all__ = ["astronaut_photo", "run_demo"]

DEMO_USER = Identity("cli", "demo")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif"}


def astronaut_photo() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("scikit-image is not installed: pass --photos DIR instead")
    return Path(spec.origin).parent / "data" / "astronaut.png"


def demo_photos(photos_dir: Path | None) -> list[Path]:
    if photos_dir is None:
        return [astronaut_photo()]
    return sorted(p for p in photos_dir.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)


async def run_demo(config: Config, photos_dir: Path | None) -> int:
    paths = demo_photos(photos_dir)
    if not paths:
        print(f"no photos (JPEG, PNG, WebP, HEIC) in {photos_dir}")
        return 1
    out_dir = config.data_dir / "demo"

    if len(paths) < config.training.min_photos:
        # One built-in portrait is enough to show the machinery; real use asks for more.
        training = dataclasses.replace(config.training, min_photos=1)
        config = dataclasses.replace(config, training=training)

    async with open_booth(config, dispatch=True) as booth:
        if booth.dispatcher is None:
            print(
                f"Process {booth.queue_worker} works the queue of {config.data_dir}: stop "
                "it, or run the demo with another --data-dir.",
                file=sys.stderr,
            )
            return 2
        print(f"1. Starting clean: erasing any earlier demo user in {config.data_dir}")
        await booth.forget(DEMO_USER)
        shutil.rmtree(out_dir, ignore_errors=True)

        print(f"2. Consent, version {booth.consent_text.version}:")
        print("   " + booth.consent_text.text.replace("\n", "\n   "))
        await booth.accept_consent(DEMO_USER)
        print("   -> accepted")

        print(f"3. Uploading {len(paths)} photo(s):")
        uploads = [Upload(p.name, p.read_bytes()) for p in paths]
        for path, verdict in zip(paths, await booth.upload(DEMO_USER, uploads), strict=True):
            print(
                f"   {path}: " + ("accepted" if verdict.accepted else f"refused: {verdict.reason}")
            )

        print("4. Sending the first photo again, to show a refusal:")
        again = await booth.upload(DEMO_USER, uploads[:1])
        print(f"   {paths[0]}: refused: {again[0].reason}")

        print("5. Status:")
        print(
            "   " + format_status(DEMO_USER, await booth.status(DEMO_USER)).replace("\n", "\n   ")
        )

        user = await booth.repo.find_user(DEMO_USER.platform, DEMO_USER.user_id)
        photos = await booth.repo.photos(user.id) if user else []
        await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
        for n, photo in enumerate(photos, start=1):
            data = await booth.blobs.get(photo.crop_blob)
            await asyncio.to_thread((out_dir / f"crop-{n}.png").write_bytes, data)

        print(f"6. Training a LoRA on the {booth.family.name} model (engine process):")
        ticket = await booth.train(DEMO_USER)
        trained = await follow(booth, DEMO_USER, ticket.job_id)
        if trained.state != "succeeded":
            print(f"   training {trained.state}: {trained.message}")
            return 1
        lora = await booth.repo.active_lora(user.id) if user else None
        trigger = lora.trigger_word if lora else "?"
        print(f"   -> model version {trained.version}, trigger word {trigger!r}")

        prompt = "an astronaut portrait, studio light"
        print(f"7. Imagining {prompt!r} (2 images, seed 42):")
        ticket = await booth.imagine(DEMO_USER, ImagineRequest(prompt, seed=42, count=2))
        imagined = await follow(booth, DEMO_USER, ticket.job_id)
        if imagined.state != "succeeded":
            print(f"   generation {imagined.state}: {imagined.message}")
            return 1
        images = await save_images(imagined, out_dir)

    print("\nOutputs:")
    print(f"   database:        {config.database_path}")
    print(f"   stored files:    {config.blob_dir} (named by content hash, metadata stripped)")
    print(
        f"   training crops:  {out_dir} ({len(photos)} file(s), "
        f"{booth.family.resolution}x{booth.family.resolution} for the {booth.family.name} model)"
    )
    for path in images:
        print(f"   picture:         {path}")
    if booth.family.name == "tiny":
        print("   (the tiny model has random weights: its pictures are noise; they prove the")
        print("    machinery. Set [model] base in a config file for a real model.)")
    print(f"   erase it all:    selfiebooth --data-dir {config.data_dir} forget --user demo --yes")
    return 0
