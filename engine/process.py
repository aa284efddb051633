"""The bot side of the engine process: start it, send it commands, read its events.

No torch here: the bot's event loop only ever talks JSON lines to a child process, so a
crash, a hang or a CUDA out-of-memory in the engine never takes the bot down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from engine.models.memory import MemoryOptions
from engine.protocol import Command, Event, decode_event, encode

__all__ = ["Engine", "EngineDied", "EngineOptions", "EngineProcess"]

_log = logging.getLogger(__name__)
_STREAM_LIMIT = 1 << 20  # a result line lists file paths; 1 MiB is plenty


class EngineDied(Exception):
    """The engine process ended without being asked to."""


@dataclass(frozen=True, slots=True)
class EngineOptions:
    base: str
    family: str
    models_dir: Path
    # Content Credentials' signing pair (engine.provenance.credentials): a PEM certificate
    # chain and its private key.
    certificate: Path
    private_key: Path
    device: str = "auto"
    log_level: str = "INFO"
    log_format: str = "text"  # or "json" (engine.logs)
    start_timeout: float = 600.0  # loading a real SDXL from disk takes minutes
    # The image filter: NudeNet class -> threshold; empty screens nothing.
    blocked_classes: Mapping[str, float] = field(default_factory=dict)
    keep_blocked_images: bool = False  # write blocked results for admin review
    controlnet: str = "auto"  # edge control's ControlNet (bot.config.ModelConfig.controlnet)
    inpainting: str = ""  # /edit's dedicated inpainting base (ModelConfig.inpainting)
    memory: MemoryOptions = field(default_factory=MemoryOptions)  # engine.models.memory
    compile: str = "auto"  # engine.models.speed
    lora_prefetch: str = "auto"  # engine.models.speed
    # Pictures in one denoising batch at most (engine.generation.together); 0: 8 on CUDA,
    # 1 (each job alone) elsewhere.
    batch: int = 0


class Engine(Protocol):
    """What the dispatcher drives: one engine that runs one job at a time (or one batch
    of pictures), here as a child process, on a cluster as a Ray actor (engine.cluster)."""

    @property
    def name(self) -> str: ...

    @property
    def alive(self) -> bool: ...

    @property
    def exited(self) -> bool:
        """It ended without being stopped (it died, or was killed)."""
        ...

    @property
    def batch(self) -> int:
        """Pictures it makes in one batch (a `batch` command); 1: one job at a time."""
        ...

    @property
    def prefetches(self) -> bool:
        """It reads ahead the models a `prefetch` command names (else it ignores it)."""
        ...

    def describe(self) -> str:
        """Its state in words, for a health check."""
        ...

    async def start(self) -> None: ...

    async def send(self, command: Command) -> None: ...

    async def next_event(self) -> Event:
        """The next event; EngineDied when the engine is gone."""
        ...

    async def stop(self, grace: float = 10.0) -> None: ...

    async def kill(self) -> None: ...


class EngineProcess:
    """The engine as a child process of the bot."""

    name = "the engine process"

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self._proc: asyncio.subprocess.Process | None = None
        self._ready = False  # the current process has loaded its model
        self._batch = 1  # as the current process said when ready
        self._prefetches = False  # likewise

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def exited(self) -> bool:
        """The process ended without being stopped (it died, or was killed)."""
        return self._proc is not None and self._proc.returncode is not None

    @property
    def batch(self) -> int:
        return self._batch

    @property
    def prefetches(self) -> bool:
        return self._prefetches

    def describe(self) -> str:
        """The process's state in words, for a health check."""
        if self._proc is None:
            return "not running; it starts with the next job"
        if self._proc.returncode is None:
            state = "running" if self._ready else "starting"
            return f"{state} (process {self._proc.pid})"
        return f"ended unexpectedly with exit code {self._proc.returncode}"

    async def start(self) -> None:
        o = self.options
        self._ready = False
        self._batch = 1
        self._prefetches = False
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.worker",
            "--base", o.base, "--family", o.family,
            "--models-dir", str(o.models_dir), "--device", o.device,
            "--log-level", o.log_level, "--log-format", o.log_format,
            "--blocked-classes", json.dumps(dict(o.blocked_classes)),
            *(["--keep-blocked"] if o.keep_blocked_images else []),
            "--controlnet", o.controlnet, "--inpainting", o.inpainting,
            "--certificate", str(o.certificate), "--private-key", str(o.private_key),
            "--quantize", o.memory.quantize, "--compile", o.compile, "--batch", str(o.batch),
            "--lora-prefetch", o.lora_prefetch,
            *(["--cpu-offload"] if o.memory.cpu_offload else []),
            *([] if o.memory.gradient_checkpointing else ["--no-gradient-checkpointing"]),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=_STREAM_LIMIT,
            env=_without_secrets(os.environ),
        )  # fmt: skip
        _log.info("engine process %d starting", self._proc.pid)
        event = await asyncio.wait_for(self.next_event(), o.start_timeout)
        if event.get("event") != "ready":
            raise EngineDied(f"the engine said {event!r} instead of ready")
        self._ready = True
        self._batch = max(1, int(event.get("batch", 1)))
        self._prefetches = bool(event.get("prefetch", False))
        _log.info("engine process %d ready", self._proc.pid)

    async def send(self, command: Command) -> None:
        proc = self._require()
        assert proc.stdin is not None
        try:
            proc.stdin.write(encode(command))
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise EngineDied("the engine process is gone") from exc

    async def next_event(self) -> Event:
        proc = self._require()
        assert proc.stdout is not None
        line = await proc.stdout.readline()
        if not line:
            code = await proc.wait()
            raise EngineDied(f"the engine process ended with exit code {code}")
        return decode_event(line)

    async def stop(self, grace: float = 10.0) -> None:
        """Ask the engine to finish; kill it if it does not within `grace` seconds."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            self._proc = None
            return
        with contextlib.suppress(EngineDied):
            await self.send({"op": "shutdown"})
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            await self.kill()
        self._proc = None

    async def kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()

    def _require(self) -> asyncio.subprocess.Process:
        if self._proc is None:
            raise EngineDied("the engine process is not running")
        return self._proc


def _without_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """The engine talks to no chat: it gets no chat token."""
    return {k: v for k, v in environ.items() if not (k.startswith("SELFIEBOOTH_") and "TOKEN" in k)}
