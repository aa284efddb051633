"""The command line, run as a real subprocess the way a person types it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from diffusers import UNet2DConditionModel
from helpers_c2pa import assert_selfiebooth_manifest, with_other_pixels
from helpers_images import person
from PIL import Image
from safetensors import safe_open

from bot.config import load_config


def selfiebooth(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upload_before_consent_is_refused(tmp_path: Path, faces: Path) -> None:
    shown = selfiebooth(tmp_path, "consent")
    assert shown.returncode == 0
    assert "18 or older" in shown.stdout and "selfiebooth consent --accept" in shown.stdout

    result = selfiebooth(tmp_path, "upload", str(person(faces, "paul_allen")[0]))
    assert result.returncode == 1
    assert "accept the consent text" in result.stderr
    assert not (tmp_path / "blobs").exists()


def test_consent_upload_status_forget(tmp_path: Path, faces: Path) -> None:
    assert selfiebooth(tmp_path, "consent", "--user", "ann", "--accept").returncode == 0
    good = person(faces, "barack_obama")
    two_faces = faces / "multi" / "two_people.jpg"
    missing = tmp_path / "missing.jpg"
    result = selfiebooth(
        tmp_path, "upload", "--user", "ann", *map(str, good), str(two_faces), str(missing)
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[: len(good)] == [f"{p}: accepted" for p in good]
    assert lines[len(good)].startswith(f"{two_faces}: refused: ")
    assert "faces in this photo" in lines[len(good)]
    assert lines[-1] == f"{missing}: refused: no such file"

    status = selfiebooth(tmp_path, "status", "--user", "ann").stdout
    assert "photos: 4 accepted" in status and "(current)" in status

    unconfirmed = selfiebooth(tmp_path, "forget", "--user", "ann")
    assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stdout
    assert "photos: 4 accepted" in selfiebooth(tmp_path, "status", "--user", "ann").stdout

    forgotten = selfiebooth(tmp_path, "forget", "--user", "ann", "--yes")
    assert forgotten.returncode == 0 and "Deleted 4 selfie(s)" in forgotten.stdout
    status = selfiebooth(tmp_path, "status", "--user", "ann").stdout
    assert "consent: not given" in status and "photos: 0 accepted" in status
    assert not any(p.is_file() for p in (tmp_path / "blobs").rglob("*"))


def test_a_config_error_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[intake]\nidentity_threshold = 7\n", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "intake.identity_threshold = 7 is out of range" in result.stderr


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = selfiebooth(tmp_path, "teleport")
    assert result.returncode == 2
    assert "invalid choice: 'teleport'" in result.stderr


def test_demo_runs_on_embedded_defaults(tmp_path: Path) -> None:
    result = selfiebooth(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert "astronaut.png: accepted" in result.stdout
    assert "refused: duplicate" in result.stdout
    assert "-> model version 1" in result.stdout
    crops = list((tmp_path / "demo").glob("crop-*.png"))
    assert len(crops) == 1
    pictures = [Path(line.split()[-1]) for line in result.stdout.splitlines() if "picture:" in line]
    assert len(pictures) == 2
    for picture in pictures:
        with Image.open(picture) as img:
            assert img.format == "PNG" and "AI-generated" in str(img.info)
    # Running it again starts clean rather than piling up.
    assert selfiebooth(tmp_path, "demo").returncode == 0
    assert len(list((tmp_path / "demo").glob("crop-*.png"))) == 1


def test_train_and_imagine_from_the_shell(tmp_path: Path, faces: Path) -> None:
    assert selfiebooth(tmp_path, "consent", "--accept").returncode == 0
    upload = selfiebooth(tmp_path, "upload", *map(str, person(faces, "paul_allen")))
    assert upload.returncode == 0, upload.stdout

    queued = selfiebooth(tmp_path, "train")
    assert queued.returncode == 0 and "Training queued as job 1" in queued.stdout
    twice = selfiebooth(tmp_path, "train")
    assert twice.returncode == 1 and "already queued" in twice.stderr
    assert selfiebooth(tmp_path, "cancel").stdout.strip() == "Cancelled job(s): 1"

    trained = selfiebooth(tmp_path, "train", "--wait", "--out", str(tmp_path / "samples"))
    assert trained.returncode == 0, trained.stderr
    assert "Model version 1 is ready and active." in trained.stdout
    # The tiny model draws noise: its likeness is said to be unknown, never made up.
    assert "No face found in the 4 validation samples, so there is no likeness score." in (
        trained.stdout
    )
    assert "no face found in the 4 validation samples" in selfiebooth(tmp_path, "status").stdout
    samples = sorted((tmp_path / "samples").glob("*.png"))
    assert len(samples) == 4 and all(str(p) in trained.stdout for p in samples)
    assert "step 1/" in trained.stderr

    out = tmp_path / "pictures"
    args = ["imagine", "a lego figure", "--seed", "3", "--count", "2", "--steps", "3"]
    imagined = selfiebooth(tmp_path, *args, "--aspect", "3:2", "--out", str(out))
    assert imagined.returncode == 0, imagined.stderr
    paths = [Path(line) for line in imagined.stdout.splitlines()]
    assert [p.parent for p in paths] == [out, out]
    with Image.open(paths[0]) as img:
        assert img.width > img.height

    wrong = selfiebooth(tmp_path, "imagine", "a cat", "--aspect", "7:5")
    assert wrong.returncode == 1 and "7:5" in wrong.stderr
    status = selfiebooth(tmp_path, "status").stdout
    assert "model v1: tiny" in status and "job 3: imagine succeeded" in status

    # Styles: any LoRA of the family will do as one, so the model just trained is added.
    exported = selfiebooth(tmp_path, "export", "--out", str(tmp_path / "export"))
    lora = exported.stdout.split()[0]
    assert lora.endswith("-v1-kohya.safetensors")  # AUTOMATIC1111's and ComfyUI's layout
    as_diffusers = ["export", "--format", "diffusers", "--out", str(tmp_path / "export")]
    assert selfiebooth(tmp_path, *as_diffusers).stdout.split()[0].endswith("-v1.safetensors")
    added = selfiebooth(tmp_path, "admin", "style", "add", "shiny", lora, "--trigger", "glossy")
    assert added.returncode == 0 and "Style 'shiny' added: weight 1" in added.stdout
    assert (
        "shiny: weight 1, trigger words 'glossy'"
        in selfiebooth(tmp_path, "admin", "style", "list").stdout
    )
    styled = selfiebooth(
        tmp_path, *args, "--aspect", "3:2", "--out", str(out), "--style", "shiny:1.5"
    )
    assert styled.returncode == 0, styled.stderr
    with Image.open(Path(styled.stdout.splitlines()[0])) as img, Image.open(paths[0]) as plain:
        parameters = json.loads(img.info["parameters"])
        assert parameters["styles"] == "shiny:1.5" and parameters["prompt"].endswith(", glossy")
        assert np.abs(np.asarray(img, "f4") - np.asarray(plain, "f4")).mean() > 1
    unknown = selfiebooth(tmp_path, "imagine", "a cat", "--style", "lego")
    assert unknown.returncode == 1
    assert "There is no style 'lego'. Styles: shiny." in unknown.stderr
    pickle_file = tmp_path / "style.ckpt"
    pickle_file.write_bytes(b"\x80\x04K\x01.")
    refused = selfiebooth(tmp_path, "admin", "style", "add", "bad", str(pickle_file))
    assert refused.returncode == 1 and "'style.ckpt' is a .ckpt file" in refused.stderr
    # Image-to-image from a photo of the same person; the photo is not kept afterwards.
    blobs = load_config(None, environ={}, data_dir=tmp_path).blob_dir
    before = {p.name for p in blobs.rglob("*") if p.is_file()}
    own = str(person(faces, "paul_allen")[4])
    args = ["imagine", "--image", own, "--strength", "0.6", "me as a knight", "--steps", "4"]
    from_photo = selfiebooth(tmp_path, *args, "--out", str(out))
    assert from_photo.returncode == 0, from_photo.stderr
    [made] = [Path(line) for line in from_photo.stdout.splitlines()]
    with Image.open(made) as img, Image.open(own) as photo:
        assert (img.width > img.height) == (photo.width > photo.height)
    after = {p.name for p in blobs.rglob("*") if p.is_file()}
    assert len(after - before) == 1  # the picture made; the source went with its job
    stranger = str(person(faces, "steve_wozniak")[0])
    refused = selfiebooth(tmp_path, "imagine", "--image", stranger, "me")
    assert refused.returncode == 1 and "a face that is not yours" in refused.stderr
    alone = selfiebooth(tmp_path, "imagine", "--strength", "0.6", "me")
    assert alone.returncode == 1 and "attach a picture" in alone.stderr
    too_far = selfiebooth(tmp_path, "imagine", "--image", own, "--strength", "1", "me")
    assert too_far.returncode == 1 and "strength must be 0.1 to 0.95, got 1.0" in too_far.stderr

    # The other picture tools: an edit of the background, its upscale, edges of a photo.
    args = ["edit", "--image", own, "--region", "background", "on a beach", "--steps", "4"]
    edited = selfiebooth(tmp_path, *args, "--out", str(out))
    assert edited.returncode == 0, edited.stderr
    [edit_path] = [Path(line) for line in edited.stdout.splitlines()]
    job = int(edit_path.stem.split("-")[1])
    upscaled = selfiebooth(tmp_path, "upscale", str(job), "--out", str(out))
    assert upscaled.returncode == 0, upscaled.stderr
    with Image.open(edit_path) as small, Image.open(upscaled.stdout.strip()) as big:
        assert big.size == (2 * small.width, 2 * small.height)
    # Each picture carries signed Content Credentials; trace reads them and the watermark.
    assert_selfiebooth_manifest(edit_path.read_bytes(), job, edited=True)
    big_path = Path(upscaled.stdout.strip())
    assert_selfiebooth_manifest(big_path.read_bytes(), job + 1, edited=True)
    first = int(paths[0].stem.split("-")[1])
    assert_selfiebooth_manifest(paths[0].read_bytes(), first)
    traced = selfiebooth(tmp_path, "admin", "trace", str(paths[0])).stdout
    assert f"Watermark: job {first}." in traced
    assert "Content Credentials (C2PA): valid, signer not on a trust list" in traced
    assert f"Job {first} was made by user #1" in traced
    changed = tmp_path / "changed.png"
    changed.write_bytes(with_other_pixels(paths[0].read_bytes()))
    traced = selfiebooth(tmp_path, "admin", "trace", str(changed)).stdout
    assert "present but INVALID (assertion.dataHash.mismatch)" in traced, traced
    args = ["imagine", "--edges-from", own, "me as a statue", "--steps", "2", "--out", str(out)]
    edges = selfiebooth(tmp_path, *args)
    assert edges.returncode == 0, edges.stderr
    with Image.open(edges.stdout.strip()) as img:
        assert json.loads(img.info["parameters"])["tool"] == "edges"
    no_mask = selfiebooth(tmp_path, "edit", "--image", own, "me")
    assert no_mask.returncode == 2
    assert "one of the arguments --region --mask is required" in no_mask.stderr

    # A dedicated inpainting base (model.inpainting) repaints instead of the base.
    tiny_unet = load_config(None, environ={}, data_dir=tmp_path).models_dir / "tiny" / "unet"
    unet = UNet2DConditionModel.from_config(
        {**UNet2DConditionModel.load_config(tiny_unet), "in_channels": 9}
    )
    unet.save_pretrained(tmp_path / "inpainting" / "unet", safe_serialization=True)
    config = tmp_path / "inpainting.toml"
    config.write_text(f'[model]\ninpainting = "{tmp_path / "inpainting"}"\n')
    args = ["edit", "--image", own, "--region", "face", "smiling", "--seed", "5", "--steps", "3"]
    with_base = selfiebooth(tmp_path, *args, "--out", str(out / "base"))
    dedicated = selfiebooth(tmp_path, "--config", str(config), *args, "--out", str(out / "own"))
    assert dedicated.returncode == 0 == with_base.returncode, dedicated.stderr
    with Image.open(with_base.stdout.strip()) as a, Image.open(dedicated.stdout.strip()) as b:
        assert np.abs(np.asarray(a, "f4") - np.asarray(b, "f4")).mean() > 1


def test_the_bot_process_never_imports_torch() -> None:
    code = (
        "import sys, bot.cli, bot.core, bot.demo, engine.process, storage\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'diffusers' not in sys.modules, 'diffusers imported'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_admin_check_prompt_reads_the_options_as_the_chats_do(tmp_path: Path) -> None:
    refused = selfiebooth(tmp_path, "admin", "check-prompt", "me as a 15yo in lingerie")
    assert (refused.returncode, refused.stdout.strip()) == (
        1,
        "refused: minors (in the prompt, by the rules)",
    )
    stripped = selfiebooth(
        tmp_path, "admin", "check-prompt", "me on a beach --ar 3:2 --no clothing --seed 4"
    )
    assert (stripped.returncode, stripped.stdout.strip()) == (
        1,
        "refused: sexual (in the negative prompt, by the rules)",
    )
    allowed = selfiebooth(
        tmp_path, "admin", "check-prompt", "me as a knight --no blur --style watercolor"
    )
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "allowed")
    wrong = selfiebooth(tmp_path, "admin", "check-prompt", "me as a knight --bogus 3")
    assert wrong.returncode == 1 and "There is no option --bogus" in wrong.stderr


def test_admin_commands_from_the_shell_are_audited(tmp_path: Path) -> None:
    assert selfiebooth(tmp_path, "consent", "--accept", "--user", "mallory").returncode == 0
    banned = selfiebooth(tmp_path, "admin", "ban", "cli:mallory", "2d", "spam", "links")
    assert banned.returncode == 0 and "User #1 is banned until" in banned.stdout
    # Retraining never overwrites the packaged classifier: it needs the deployment's file.
    retrain = selfiebooth(tmp_path, "admin", "retrain-filter")
    assert retrain.returncode == 2 and "Set moderation.classifier_file" in retrain.stderr
    refused = selfiebooth(tmp_path, "train", "--user", "mallory")
    assert refused.returncode == 1 and "suspended until" in refused.stderr
    assert "may use the bot again" in selfiebooth(tmp_path, "admin", "unban", "#1", "ok").stdout
    log = selfiebooth(tmp_path, "admin", "audit").stdout.splitlines()
    assert [line.split()[1:3] for line in log[:2]] == [
        ["cli:operator", "admin.unban"],
        ["cli:operator", "admin.ban"],
    ]
    assert '"reason": "spam links"' in log[1]
    unknown = selfiebooth(tmp_path, "admin", "frobnicate")
    assert unknown.returncode == 1 and "no admin command 'frobnicate'" in unknown.stderr
    assert "ban USER" in selfiebooth(tmp_path, "admin", "help").stdout


def test_pivotal_tuning_from_the_shell_generates_and_exports_both(
    tmp_path: Path, faces: Path
) -> None:
    config = tmp_path / "pivotal.toml"
    config.write_text('[training]\nmethod = "pivotal"\nsteps = 4\nlikeness = false\n')
    data = tmp_path / "data"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return selfiebooth(data, "--config", str(config), *args)

    assert run("consent", "--accept").returncode == 0
    assert run("upload", *map(str, person(faces, "paul_allen"))).returncode == 0
    trained = run("train", "--wait")
    assert "Model version 1 is ready" in trained.stdout, trained.stderr
    imagined = run("imagine", "a lego figure", "--steps", "2", "--count", "1", "--out", str(data))
    assert imagined.returncode == 0, imagined.stderr
    assert "model v1: tiny, pivotal tuning (a LoRA and a learned" in run("status").stdout

    exported = run("export", "--out", str(tmp_path / "export")).stdout
    trigger = exported.split("trigger word '")[1].split("'")[0]
    with safe_open(exported.split()[0], framework="numpy") as kohya:
        keys = list(kohya.keys())
    # A1111 and Forge load the LoRA and the trigger's embedding bundled in it.
    bundled = [k for k in keys if k.startswith("bundle_emb.")]
    assert bundled == [f"bundle_emb.{trigger}.emb_params"]
    assert all(k.startswith("lora_unet_") for k in keys if k not in bundled)


def test_a_flux_journey_from_the_shell(tmp_path: Path, faces: Path) -> None:
    config = tmp_path / "flux.toml"
    config.write_text('[model]\nbase = "tiny-flux"\n[training]\nsteps = 4\nlikeness = false\n')
    data = tmp_path / "data"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return selfiebooth(data, "--config", str(config), *args)

    assert run("consent", "--accept").returncode == 0
    assert run("upload", *map(str, person(faces, "paul_allen"))).returncode == 0
    trained = run("train", "--wait")
    assert "Model version 1 is ready" in trained.stdout, trained.stderr
    refused = run("imagine", "me in a field", "--negative", "blur")
    assert refused.returncode == 1 and "takes no negative prompt" in refused.stderr

    pictures = []
    for seed, out in (("7", "a"), ("7", "b"), ("8", "c")):
        made = run("imagine", "me as a knight", "--seed", seed, "--out", str(tmp_path / out))
        assert made.returncode == 0, made.stderr
        [png] = sorted((tmp_path / out).glob("*.png"))
        with Image.open(png) as image:
            # FLUX.1-dev's defaults where the user set none: 28 steps at guidance 3.5.
            parameters = json.loads(image.text["parameters"])
            assert (parameters["steps"], parameters["guidance"]) == (28, 3.5)
            pictures.append(np.asarray(image.convert("RGB"), dtype=np.int16))
    # The same seed gives the same picture up to each job's invisible watermark.
    same = np.abs(pictures[0] - pictures[1]).mean()
    other = np.abs(pictures[0] - pictures[2]).mean()
    assert same * 10 < other, (same, other)

    exported = run("export", "--out", str(tmp_path / "export"))
    assert exported.returncode == 0, exported.stderr
    assert "FLUX LoRA in the diffusers layout" in exported.stdout
    with safe_open(exported.stdout.split()[0], framework="numpy") as lora:
        keys = list(lora.keys())
    assert keys and all(k.startswith("transformer.") for k in keys)
