"""A job's files as bytes, for an engine that shares no disk with the bot.

The bot writes a job's inputs under its job directory (bot.core.dispatcher) and reads
the engine's outputs from the paths its events name. Across machines, the paths in a
command and in its events are written relative to `JOB` ("@job/crop-0.png"), and the
files travel beside them as `{relative path: bytes}`: each side puts them under its own
job directory. Inputs from outside the job directory (a model in the blob store) travel
under `inputs/`. A training's checkpoints travel back as they are written, so that the
job resumes on any lane.

No Ray here: both sides call these functions around their own transport.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar, cast

from engine.protocol import Command, Event

__all__ = [
    "JOB",
    "Files",
    "checkpoints_since",
    "pack_command",
    "pack_event",
    "unpack_command",
    "unpack_event",
]

JOB = "@job"
Files = dict[str, bytes]
_CHECKPOINTS = "checkpoints"
_KEEP = 2  # checkpoints kept on the bot's side, as engine.training.checkpoint keeps them

_T = TypeVar("_T")


def pack_command(command: Command, root: Path) -> tuple[Command, Files]:
    """The bot's side: `command` with its paths relative to JOB, and the input files
    (each file, or each file of a directory, that exists)."""
    files: Files = {}
    outside = 0

    def relative(path: str) -> str:
        nonlocal outside
        local = Path(path)
        try:
            rel = local.relative_to(root).as_posix()
        except ValueError:
            outside += 1
            rel = f"inputs/{outside}-{local.name}"
        if local.is_file():
            files[rel] = local.read_bytes()
        elif local.is_dir():
            for item in sorted(local.rglob("*")):
                if item.is_file():
                    files[f"{rel}/{item.relative_to(local).as_posix()}"] = item.read_bytes()
        return f"{JOB}/{rel}"

    if command["op"] != "train" and command["op"] != "generate":
        return command, files
    packed = dict(command)
    packed["files"] = _map_strings(command["files"], relative)
    return cast(Command, packed), files


def unpack_command(command: _T, files: Mapping[str, bytes], root: Path) -> _T:
    """The engine's side: the input files written under `root`, the paths made local."""
    _write(files, root)
    return _with_root(command, root)


def pack_event(event: Event, root: Path) -> tuple[Event, Files]:
    """The engine's side: `event` with its paths relative to JOB, and the files they name."""
    files: Files = {}
    prefix = f"{root}/"

    def relative(path: str) -> str:
        if not path.startswith(prefix):
            return path
        rel = path.removeprefix(prefix)
        local = root / rel
        if local.is_file():
            files[rel] = local.read_bytes()
        return f"{JOB}/{rel}"

    return _map_strings(event, relative), files


def checkpoints_since(root: Path, sent: set[str]) -> Files:
    """The engine's side: the files of each complete checkpoint under `root` not in
    `sent` (which they are added to), for the bot to keep."""
    files: Files = {}
    directory = root / _CHECKPOINTS
    if not directory.is_dir():
        return files
    for step in sorted(directory.glob("step-*")):
        if step.name in sent or not (step / "state.json").is_file():
            continue
        for item in sorted(step.iterdir(), key=lambda p: p.name == "state.json"):
            files[f"{_CHECKPOINTS}/{step.name}/{item.name}"] = item.read_bytes()
        sent.add(step.name)
    return files


def unpack_event(event: Event, files: Mapping[str, bytes], root: Path) -> Event:
    """The bot's side: the event's files written under `root`, its paths made local;
    checkpoints beyond the last two are removed."""
    _write(files, root)
    if any(rel.startswith(f"{_CHECKPOINTS}/") for rel in files):
        for old in sorted((root / _CHECKPOINTS).glob("step-*"))[:-_KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    return _with_root(event, root)


def _write(files: Mapping[str, bytes], root: Path) -> None:
    # A checkpoint's state.json goes last: until it exists the checkpoint is not complete
    # (engine.training.checkpoint.latest_checkpoint), so a write cut short is ignored.
    for rel in sorted(files, key=lambda name: name.endswith("/state.json")):
        target = root / _safe(rel)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[rel])


def _safe(rel: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"a job file's name leaves the job directory: {rel!r}")
    return path


def _with_root(message: _T, root: Path) -> _T:
    def local(path: str) -> str:
        if path.startswith(f"{JOB}/"):
            return str(root / _safe(path.removeprefix(f"{JOB}/")))
        return path

    return _map_strings(message, local)


def _map_strings(value: _T, change: Callable[[str], str]) -> _T:
    """`value` (JSON-like) with each string changed by `change`."""
    return cast(_T, _walk(value, change))


def _walk(value: Any, change: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _walk(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change) for item in value]
    return value
