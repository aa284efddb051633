"""The blob store: files addressed by the sha256 of their content.

A file's name is its hash, never anything a user sent, so no upload can choose where it
lands. Writes go to a temporary file in the same directory tree and are renamed into
place, so a crash never leaves half a file under a valid name.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["BlobStore", "InvalidBlobKey", "LocalBlobStore"]

_KEY = re.compile(r"[0-9a-f]{64}")


class InvalidBlobKey(ValueError):
    """A key that is not a lowercase sha256 hex digest."""


class BlobStore(abc.ABC):
    """Content-addressed storage; keys are sha256 hex digests of the content."""

    @abc.abstractmethod
    async def put(self, data: bytes) -> str:
        """Store `data` (idempotent) and return its key."""

    @abc.abstractmethod
    async def get(self, key: str) -> bytes:
        """The content under `key`; KeyError if absent."""

    @abc.abstractmethod
    async def delete(self, key: str) -> None:
        """Remove `key`; absent keys are fine."""

    @abc.abstractmethod
    async def exists(self, key: str) -> bool: ...

    def local_path(self, key: str) -> Path | None:
        """A path another process on this machine can read the blob from, if there is one."""
        return None


def check_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidBlobKey(f"not a blob key: {key!r}; expected 64 lowercase hex digits")
    return key


class LocalBlobStore(BlobStore):
    """Blobs as files under `root`/ab/abcdef..., fsynced before they are renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        check_key(key)
        return self.root / key[:2] / key

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    async def put(self, data: bytes) -> str:
        key = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, key, data)
        return key

    def _write(self, key: str, data: bytes) -> None:
        target = self.path(key)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    async def get(self, key: str) -> bytes:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            raise KeyError(key) from None

    async def delete(self, key: str) -> None:
        path = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(path.unlink)
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only succeeds when empty

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).exists)
