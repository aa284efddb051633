"""`selfiebooth doctor` on a good setup (the chats' fakes on loopback taking the tokens) and
on broken ones: a token in the config file, a missing model, an unwritable data
directory, an uncached model offline, tokens the chats refuse. Token values never show."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from fakes.discord_api import BOT_TOKEN, FakeDiscord
from fakes.telegram_api import TOKEN, FakeTelegram
from safetensors.numpy import save_file

from bot.cli.parser import build_parser
from bot.doctor import Finding, diagnose, report


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeDiscord]]:
    telegram, discord = FakeTelegram(), FakeDiscord()
    await telegram.start()
    await discord.start()
    yield telegram, discord
    await discord.stop()
    await telegram.stop()


def a_model_directory(root: Path) -> Path:
    """The shape of a diffusers pipeline directory: its index and safetensors weights."""
    (root / "unet").mkdir(parents=True)
    (root / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    save_file({"w": np.zeros(4, np.float32)}, str(root / "unet" / "model.safetensors"))
    return root


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def by_topic(findings: list[Finding]) -> dict[str, Finding]:
    return {f.topic: f for f in findings}


async def test_a_good_setup_is_ready(
    tmp_path: Path, fakes: tuple[FakeTelegram, FakeDiscord]
) -> None:
    telegram, discord = fakes
    model = a_model_directory(tmp_path / "model")
    config = write_config(
        tmp_path / "c.toml",
        f"""[model]\nbase = "{model}"\nfamily = "sd15"\n
[telegram]\napi_base_url = "{telegram.api_base_url}"\n
[discord]\napi_base_url = "{discord.api_url}"\n""",
    )
    environ = {"SELFIEBOOTH_TELEGRAM_TOKEN": TOKEN, "SELFIEBOOTH_DISCORD_TOKEN": BOT_TOKEN}
    findings = await diagnose(config, tmp_path / "data", environ=environ, chats=True)
    found = by_topic(findings)
    assert [f for f in findings if f.level == "FAIL"] == []
    assert found["model"].level == "ok" and "1 safetensors file" in found["model"].text
    assert found["data directory"].level in ("ok", "warn")  # warn: a nearly full disk
    assert "GiB free" in found["data directory"].text
    assert found["telegram"].level == "ok" and "@" in found["telegram"].text
    assert found["discord"].level == "ok"
    assert telegram.of("getMe")  # the fake was asked, over loopback
    text = report(findings)
    assert "SELFIEBOOTH_TELEGRAM_TOKEN is set" in text
    assert "SELFIEBOOTH_DISCORD_TOKEN is set" in text
    assert TOKEN not in text and TOKEN.split(":")[1] not in text and BOT_TOKEN not in text
    assert text.splitlines()[-1].startswith("ready")


async def test_refused_tokens_are_named_with_where_to_get_new_ones(
    tmp_path: Path, fakes: tuple[FakeTelegram, FakeDiscord]
) -> None:
    telegram, discord = fakes
    config = write_config(
        tmp_path / "c.toml",
        f"""[telegram]\napi_base_url = "{telegram.api_base_url}"\n
[discord]\napi_base_url = "{discord.api_url}"\n""",
    )
    wrong = {"SELFIEBOOTH_TELEGRAM_TOKEN": "1:wrong-token", "SELFIEBOOTH_DISCORD_TOKEN": "nope"}
    found = by_topic(await diagnose(config, tmp_path / "data", environ=wrong, chats=True))
    assert found["telegram"].level == "FAIL" and "@BotFather" in found["telegram"].fix
    assert found["discord"].level == "FAIL" and "Developer Portal" in found["discord"].fix
    assert "wrong-token" not in report(list(found.values()))


async def test_a_missing_model_and_an_unwritable_data_directory_fail(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = write_config(tmp_path / "c.toml", f'[model]\nbase = "{tmp_path / "no-model"}"\n')
    found = by_topic(await diagnose(config, blocker / "data", environ={}))
    assert found["data directory"].level == "FAIL"
    assert "cannot be written" in found["data directory"].text
    assert "write access" in found["data directory"].fix
    assert found["model"].level == "FAIL" and "does not exist" in found["model"].text
    assert found["tokens"].level == "warn"


async def test_models_without_safetensors_or_offline_and_uncached_fail(tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "model_index.json").write_text("{}")
    (pickled / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    config = write_config(
        tmp_path / "c.toml",
        f'[model]\nbase = "{pickled}"\ninpainting = "nobody/not-cached-anywhere"\n',
    )
    environ = {"HF_HUB_OFFLINE": "1"}
    found = by_topic(await diagnose(config, tmp_path / "data", environ=environ))
    assert found["model"].level == "FAIL" and "safetensors" in found["model"].fix
    inpainting = found["inpainting model"]
    assert inpainting.level == "FAIL" and "HF_HUB_OFFLINE" in inpainting.text


def test_the_command_stops_at_a_token_in_the_config_file(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", '[telegram]\ntoken = "123:abc"\n')
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "doctor"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    first, fix, summary = done.stdout.splitlines()
    assert first.startswith("[FAIL] config: telegram.token: tokens are never read from the config")
    assert "SELFIEBOOTH_TELEGRAM_TOKEN" in first and f"edit {config}" in fix
    assert summary == "1 problem(s) to fix first"
    assert "123:abc" not in done.stdout + done.stderr


def test_the_systemd_unit_runs_commands_the_command_line_has() -> None:
    unit = (Path(__file__).parents[1] / "deploy" / "selfiebooth.service").read_text()
    commands = re.findall(r"^ExecStart(?:Pre)?=(\S+) (.+)$", unit, flags=re.MULTILINE)
    assert [words.split()[-1] for _, words in commands] == ["doctor", "run"]
    for program, words in commands:
        assert program.endswith("/.venv/bin/selfiebooth")
        build_parser().parse_args(words.split())  # exits on an unknown command or option
    assert re.search(r"^KillSignal=SIGINT$", unit, flags=re.MULTILINE)
    assert re.search(r"^EnvironmentFile=", unit, flags=re.MULTILINE)  # tokens not in the unit
