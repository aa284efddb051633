"""One queue worker per data directory: an exclusive lock on `queue.lock` beside the
database, held while a process works the queue.

Two workers of one queue would each take the other's running jobs for a crashed run's
(`JobQueue.recover`) and run them twice. The kernel releases the lock when its holder
exits, however it exits, so a crash leaves nothing to clean up; the file keeps the
holder's process id for messages.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["QueueLock"]


class QueueLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if no other process holds it; whether this process holds it."""
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> int | None:
        """The process id the lock file names (the holder, while it is held)."""
        try:
            text = self.path.read_text(encoding="ascii").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
