"""Hostile files through `selfiebooth upload`, as a person runs it (not a test module).

`upload_batch` writes the files under their hostile names, runs the real command line in a
subprocess, and returns what a user saw with that process's own peak RSS (from wait4, so
per call) and wall time. `check_batch` states the rules every batch must keep: exactly one
verdict line per file, in order, under an escaped name; no traceback; nothing stored for a
refused file. The CI test and `bench/fuzz_uploads.py` both run through here.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hostile import HostileFile

from engine.intake.names import shown_name

__all__ = ["BatchResult", "check_batch", "cli", "upload_batch"]

REPO = Path(__file__).resolve().parents[1]
USER = "fuzz"


@dataclass(frozen=True, slots=True)
class BatchResult:
    files: tuple[HostileFile, ...]
    paths: tuple[Path, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss: int  # bytes, of the command line process itself

    def verdicts(self) -> list[str]:
        """The verdict of each file ("accepted" or "refused: ..."), in order."""
        lines = self.stdout.splitlines()
        assert len(lines) == len(self.paths), (len(lines), len(self.paths), self.stdout)
        out = []
        for line, path in zip(lines, self.paths, strict=True):
            prefix = f"{shown_name(str(path), limit=None)}: "
            assert line.startswith(prefix), (line, path)
            out.append(line.removeprefix(prefix))
        return out


# A small launcher forks and execs the command line and reports the child's own peak RSS.
# Measured from the test process directly, a child's ru_maxrss also counts the memory of
# the parent it was forked from (Linux keeps the larger of the two across exec).
_LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def cli(
    data_dir: Path, *args: str, config: Path | None = None, timeout: float = 300
) -> tuple[int, str, str, float, int]:
    """Run `python -m bot.cli`; its exit status, output, seconds and peak RSS in bytes."""
    command = [sys.executable, "-m", "bot.cli"]
    if config is not None:
        command += ["--config", str(config)]
    command += ["--data-dir", str(data_dir), *args]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "maxrss"
        launcher = [sys.executable, "-S", "-c", _LAUNCHER, str(report)]
        start = time.perf_counter()
        try:
            # A hang fails the caller (TimeoutExpired) instead of blocking CI.
            proc = subprocess.run(
                [*launcher, *command],
                capture_output=True,
                env=env,
                cwd=REPO,
                timeout=timeout,
                check=False,
            )
        finally:
            seconds = time.perf_counter() - start
        kilobytes = int(report.read_text()) if report.exists() else 0
    stdout = proc.stdout.decode("utf-8", "backslashreplace")
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    return proc.returncode, stdout, stderr, seconds, kilobytes * 1024


def upload_batch(
    data_dir: Path, folder: Path, files: Sequence[HostileFile], *, config: Path | None = None
) -> BatchResult:
    """Write `files` into `folder` under their names and upload them in one call."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, item in enumerate(files):
        # A name can be anything but a path: one folder per file keeps equal names apart.
        place = folder / f"{n:03d}"
        place.mkdir(exist_ok=True)
        raw = os.fsencode(item.name.replace("/", "_").replace("\0", "_"))[:250] or b"_"
        path = Path(os.fsdecode(os.path.join(os.fsencode(place), raw)))
        path.write_bytes(item.data)
        paths.append(path)
    code, stdout, stderr, seconds, rss = cli(
        data_dir, "upload", "--user", USER, *map(str, paths), config=config
    )
    return BatchResult(tuple(files), tuple(paths), code, stdout, stderr, seconds, rss)


def stored(data_dir: Path) -> tuple[int, int]:
    """(photo rows, files in the blob store) of the data dir."""
    database = data_dir / "selfiebooth.sqlite3"
    photos = 0
    if database.exists():
        with sqlite3.connect(database) as db:
            photos = db.execute("SELECT COUNT(*) FROM photos").fetchone()[0]
    blobs = data_dir / "blobs"
    files = sum(1 for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else 0
    return photos, files


# A traceback, or a Python warning printed with its source line: neither is for users.
_TRACE = re.compile(r"Traceback \(most recent call last\)|^\s+File \"|\w+Warning: ", re.MULTILINE)


def check_batch(result: BatchResult, before: tuple[int, int], after: tuple[int, int]) -> list[str]:
    """The verdicts of a batch, after checking every rule a batch must keep."""
    context = (
        f"{[f.kind for f in result.files]}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )
    assert not _TRACE.search(result.stdout + result.stderr), context
    assert result.returncode in (0, 1), (result.returncode, context)
    verdicts = result.verdicts()
    for verdict in verdicts:
        assert verdict == "accepted" or verdict.startswith("refused: "), (verdict, context)
    accepted = verdicts.count("accepted")
    assert result.returncode == (0 if accepted == len(verdicts) else 1), context
    # An accepted photo is one row and two files (the cleaned photo and its crop); a refused
    # one leaves nothing (the image filter keeps nothing by default either).
    assert after == (before[0] + accepted, before[1] + 2 * accepted), (before, after, context)
    return verdicts
