"""One queue worker per data directory: a second `selfiebooth run` is refused, and a
picture asked for from the shell beside a running `run` is left to it, made once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from helpers_images import person

from storage.queue_lock import QueueLock

TIMEOUT = 120.0


def selfiebooth(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = data.parent / "selfiebooth.toml"
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), "--data-dir", str(data), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def test_the_lock_is_held_once_and_freed_with_its_holder(tmp_path: Path) -> None:
    first, second = QueueLock(tmp_path / "queue.lock"), QueueLock(tmp_path / "queue.lock")
    assert first.acquire() and not second.acquire()
    assert second.holder() is not None
    first.release()
    assert second.acquire()
    second.release()


def until(check: object, what: str) -> None:
    """Poll a state another process changes (not timing it) until it holds."""
    deadline = time.monotonic() + TIMEOUT
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_second_worker_is_refused_and_the_shell_leaves_jobs_to_run(
    tmp_path: Path, faces: Path
) -> None:
    data = tmp_path / "data"
    (tmp_path / "selfiebooth.toml").write_text("[training]\nsteps = 2\nlikeness = false\n")
    assert selfiebooth(data, "consent", "--accept").returncode == 0
    photos = [str(p) for p in person(faces, "paul_allen")]
    assert selfiebooth(data, "upload", *photos).returncode == 0
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "--config",
            str(tmp_path / "selfiebooth.toml"),
            "--data-dir",
            str(data),
            "run",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        lock = QueueLock(data / "queue.lock")
        until(lambda: lock.holder() == run.pid, "run to take the queue")

        again = selfiebooth(data, "run")
        assert again.returncode == 2
        assert f"process {run.pid} works the queue of {data}" in again.stderr

        made = selfiebooth(data, "train", "--wait", "--out", str(tmp_path))
        assert made.returncode == 0, made.stderr
        assert "queued as job 1" in made.stdout and f"(process {run.pid})" in made.stdout

        def job() -> tuple[str, int]:
            with sqlite3.connect(data / "selfiebooth.sqlite3") as db:
                row = db.execute("SELECT status, attempts FROM jobs WHERE id = 1").fetchone()
            return str(row[0]), int(row[1])

        until(lambda: job()[0] == "succeeded", "run to train")
        assert job() == ("succeeded", 1)  # trained once, by `run`
    finally:
        run.terminate()
        run.wait(60)
        log.close()
    assert QueueLock(data / "queue.lock").acquire()  # freed with its holder
