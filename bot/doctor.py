"""`selfiebooth doctor`: what stands between this machine and a working bot, found before
start-up instead of in a traceback. Each finding says what to do about it.

It reads the config as `run` would, tries the data directory, looks for the model (a
local directory, the hub cache, or the hub itself with `--online`), asks a child process
about CUDA (the bot process never imports torch) or about the Ray cluster when the engine
runs there, lists which tokens are set (never
their values), and with `--chats` asks Telegram and Discord whether they take them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiohttp

from bot.config import ENV_PREFIX, Config, ConfigError, Secret, load_config

__all__ = ["Finding", "diagnose", "report"]

Level = Literal["ok", "warn", "FAIL"]
GIB = 1 << 30
# Free space below which the data directory is a failure or a warning: a trained model
# is tens of MB, a real base model in the hub cache several GB.
FAIL_BELOW, WARN_BELOW = GIB // 2, 10 * GIB
CUDA_PROBE_TIMEOUT = 120.0
_CUDA_PROBE = """
import json, torch
devices = []
if torch.cuda.is_available():
    for n in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(n)
        devices.append({"name": torch.cuda.get_device_name(n), "free": free, "total": total})
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "devices": devices}))
"""


CLUSTER_PROBE_TIMEOUT = 60.0
_CLUSTER_PROBE = """
import json, sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
print(json.dumps(ray.cluster_resources()))
"""


@dataclass(frozen=True, slots=True)
class Finding:
    level: Level
    topic: str
    text: str
    fix: str = ""  # what to do; empty when nothing is to be done


async def diagnose(
    config_path: Path | None,
    data_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    online: bool = False,
    chats: bool = False,
) -> list[Finding]:
    """Every finding, in the order a person would fix them."""
    env = os.environ if environ is None else environ
    try:
        config = load_config(config_path, environ=env, data_dir=data_dir)
    except ConfigError as exc:
        where = f"edit {config_path}" if config_path else "check the environment"
        return [Finding("FAIL", "config", str(exc), f"{where}; nothing else was checked")]
    findings = [Finding("ok", "config", f"read {config_path or 'the built-in defaults'}")]
    findings.append(await asyncio.to_thread(_data_dir, config.data_dir))
    findings += await asyncio.to_thread(_models, config, env, online)
    if config.cluster.address:
        findings.append(await _cluster(config.cluster.address))
    else:
        findings.append(await _cuda(config.engine.device))
    findings += _tokens(config)
    if chats:
        findings += await _chats(config)
    return findings


def report(findings: list[Finding]) -> str:
    """One line per finding, its fix indented below; a summary last."""
    lines = []
    for finding in findings:
        lines.append(f"[{finding.level:>4}] {finding.topic}: {finding.text}")
        if finding.fix:
            lines.append(f"       -> {finding.fix}")
    failures = sum(f.level == "FAIL" for f in findings)
    warnings = sum(f.level == "warn" for f in findings)
    lines.append(
        f"{failures} problem(s) to fix first" if failures else f"ready ({warnings} warning(s))"
    )
    return "\n".join(lines)


def _data_dir(path: Path) -> Finding:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Finding(
            "FAIL",
            "data directory",
            f"{path} cannot be written: {exc.strerror or exc}",
            "give the user the bot runs as write access to it, or set data_dir "
            "(or SELFIEBOOTH_DATA_DIR) to a directory it owns",
        )
    free = shutil.disk_usage(path).free
    text = f"{path.resolve()} is writable; {free / GIB:.1f} GiB free"
    if free < FAIL_BELOW:
        return Finding("FAIL", "data directory", text, "free some space on that disk")
    if free < WARN_BELOW:
        return Finding(
            "warn", "data directory", text, "a real base model and its cache need several GB"
        )
    return Finding("ok", "data directory", text)


def _models(config: Config, env: Mapping[str, str], online: bool) -> list[Finding]:
    found = [_model("model", config.model.base, env, online)]
    if config.model.inpainting:
        found.append(_model("inpainting model", config.model.inpainting, env, online))
    if config.model.controlnet not in ("", "auto"):
        found.append(_model("controlnet", config.model.controlnet, env, online))
    return found


def _model(topic: str, spec: str, env: Mapping[str, str], online: bool) -> Finding:
    """Where the engine would get `spec`: built in, a directory, the hub cache, the hub."""
    if spec == "tiny":
        return Finding(
            "warn",
            topic,
            "the tiny offline model: random weights, it draws noise",
            'set [model] base to a real model, e.g. "stable-diffusion-v1-5/stable-diffusion-v1-5"',
        )
    local = Path(spec).expanduser()
    if local.is_dir() or spec.startswith(("/", ".", "~")):
        return _local_model(topic, local)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(spec, "model_index.json")
    if isinstance(cached, str):
        return Finding("ok", topic, f"{spec} is in the hub cache ({Path(cached).parent})")
    offline = env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    if offline:
        return Finding(
            "FAIL",
            topic,
            f"{spec} is not in the hub cache and HF_HUB_OFFLINE is set",
            f"download it once with network (huggingface-cli download {spec}), "
            "or point the config at a local directory",
        )
    if not online:
        return Finding(
            "warn",
            topic,
            f"{spec} is not in the hub cache: the engine downloads it at its first start",
            "run `selfiebooth doctor --online` to check that the hub answers for it",
        )
    return _hub_model(topic, spec)


def _local_model(topic: str, path: Path) -> Finding:
    if not path.is_dir():
        return Finding(
            "FAIL", topic, f"{path} does not exist", "point the config at a diffusers directory"
        )
    weights = list(path.rglob("*.safetensors"))
    if not weights:
        return Finding(
            "FAIL",
            topic,
            f"{path} holds no .safetensors weights",
            "convert it to safetensors: selfiebooth never loads pickled weights",
        )
    if not (path / "model_index.json").is_file() and not (path / "config.json").is_file():
        return Finding(
            "FAIL",
            topic,
            f"{path} is not a diffusers directory (no model_index.json or config.json)",
            "save the model with diffusers' save_pretrained, or name its hub id",
        )
    return Finding("ok", topic, f"{path} (diffusers, {len(weights)} safetensors file(s))")


def _hub_model(topic: str, spec: str) -> Finding:
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        info = HfApi().model_info(spec)
    except GatedRepoError:
        return Finding(
            "FAIL",
            topic,
            f"{spec} is gated on the hub",
            "accept its licence on huggingface.co and set HF_TOKEN",
        )
    except RepositoryNotFoundError:
        return Finding("FAIL", topic, f"the hub has no model {spec!r}", "check the model id")
    except Exception as exc:  # network errors come in many classes
        return Finding(
            "FAIL",
            topic,
            f"the hub did not answer for {spec}: {type(exc).__name__}",
            "check network access to huggingface.co (or set HF_ENDPOINT to your mirror)",
        )
    return Finding("ok", topic, f"{spec} is on the hub ({info.sha or 'no revision'}); not cached")


async def _cuda(device: str) -> Finding:
    try:
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CUDA_PROBE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(probe.communicate(), CUDA_PROBE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        return Finding("FAIL", "cuda", f"torch could not be asked: {exc}", "reinstall selfiebooth")
    if probe.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        return Finding(
            "FAIL", "cuda", f"importing torch failed: {last[0]}", "reinstall torch (README)"
        )
    facts = json.loads(out)
    devices = facts["devices"]
    if devices:
        shown = "; ".join(
            f"{d['name']}: {d['free'] / GIB:.1f} of {d['total'] / GIB:.1f} GiB free"
            for d in devices
        )
        return Finding("ok", "cuda", f"torch {facts['torch']}, CUDA {facts['cuda']}: {shown}")
    if device.startswith("cuda"):
        return Finding(
            "FAIL",
            "cuda",
            f'engine.device = "{device}" but torch {facts["torch"]} sees no CUDA device',
            "check the driver (nvidia-smi) and install a CUDA build of torch (README: "
            '"Running on a GPU server")',
        )
    return Finding(
        "warn",
        "cuda",
        f"no CUDA device (torch {facts['torch']}): the engine runs on the CPU",
        "fine for the tiny model; real models need an NVIDIA GPU",
    )


async def _cluster(address: str) -> Finding:
    """The Ray cluster the engine lanes run on, asked from a child process."""
    fix = "start its head (`ray start --head`) and join the GPU machines: README, Several GPUs"
    try:
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLUSTER_PROBE, address,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    except OSError as exc:
        return Finding("FAIL", "cluster", f"Ray could not be asked: {exc}", fix)
    try:
        out, err = await asyncio.wait_for(probe.communicate(), CLUSTER_PROBE_TIMEOUT)
    except TimeoutError:
        probe.kill()
        await probe.wait()
        return Finding("FAIL", "cluster", f"no Ray cluster answered at {address}", fix)
    if probe.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        if "No module named 'ray'" in last[0]:
            return Finding(
                "FAIL", "cluster", "Ray is not installed", "pip install 'selfiebooth[cluster]'"
            )
        return Finding("FAIL", "cluster", f"no Ray cluster at {address}: {last[0]}", fix)
    resources: dict[str, float] = json.loads(out)
    gpus, engines = int(resources.get("GPU", 0)), int(resources.get("engine", 0))
    if not gpus and not engines:
        return Finding(
            "FAIL", "cluster", f"the cluster at {address} has no GPU for a lane",
            "join a GPU machine: selfiebooth worker --address HEAD:6379",
        )  # fmt: skip
    lanes = f"{gpus} GPU(s)" if gpus else f"{engines} engine resource(s), no GPU"
    return Finding("ok", "cluster", f"the Ray cluster at {address} has {lanes}")


def _tokens(config: Config) -> list[Finding]:
    tokens = {"Telegram": config.telegram_token, "Discord": config.discord_token}
    found = [
        Finding("ok", "tokens", f"{ENV_PREFIX}{name.upper()}_TOKEN is set")
        for name, token in tokens.items()
        if token is not None
    ]
    if not found:
        found.append(
            Finding(
                "warn",
                "tokens",
                "no chat token is set: `selfiebooth run` only works the queue",
                f"export {ENV_PREFIX}TELEGRAM_TOKEN and/or {ENV_PREFIX}DISCORD_TOKEN",
            )
        )
    return found


async def _chats(config: Config) -> list[Finding]:
    found = []
    if config.telegram_token is not None:
        found.append(await _telegram(config, config.telegram_token))
    if config.discord_token is not None:
        found.append(await _discord(config, config.discord_token))
    return found


async def _telegram(config: Config, token: Secret) -> Finding:
    from telegram import Bot
    from telegram.error import InvalidToken, TelegramError

    bot = Bot(token.get(), base_url=config.telegram.api_base_url)
    try:
        async with bot:  # getMe
            return Finding("ok", "telegram", f"the Bot API answers: this is @{bot.username}")
    except InvalidToken:
        return Finding(
            "FAIL",
            "telegram",
            "the Bot API refused the token",
            f"copy the token from @BotFather into {ENV_PREFIX}TELEGRAM_TOKEN again",
        )
    except TelegramError as exc:
        return Finding(
            "FAIL",
            "telegram",
            f"the Bot API did not answer: {type(exc).__name__}",
            f"check network access to {config.telegram.api_base_url}",
        )


async def _discord(config: Config, token: Secret) -> Finding:
    url = f"{config.discord.api_base_url}/users/@me"
    headers = {"Authorization": f"Bot {token.get()}"}
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
            http.get(url, headers=headers) as answer,
        ):
            if answer.status == 401:
                return Finding(
                    "FAIL",
                    "discord",
                    "Discord refused the token (401)",
                    "reset the token in the Developer Portal (Bot) and set "
                    f"{ENV_PREFIX}DISCORD_TOKEN",
                )
            if answer.status != 200:
                return Finding("FAIL", "discord", f"Discord answered {answer.status}", "try later")
            me = await answer.json()
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Finding(
            "FAIL",
            "discord",
            f"Discord did not answer: {type(exc).__name__}",
            f"check network access to {config.discord.api_base_url}",
        )
    return Finding("ok", "discord", f"the API answers: this is {me.get('username', '?')}")
