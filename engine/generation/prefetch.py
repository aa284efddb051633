"""Users' model files read ahead, on a thread of their own, while the engine denoises.

The dispatcher names the model files of the pictures queued next (a `prefetch`
command, engine.protocol); a background thread reads each file once, checks its bytes
against the sha256 the bot recorded, and keeps their tensors on the CPU (in pinned
memory on CUDA, so the copy to the GPU is a DMA). When a generation then needs that
model, the LoRA cache (engine.generation.adapters) loads it from these tensors instead
of reading and hashing the file again.

A file whose bytes do not match its sha256 is never kept: the generation that needs it
reads the file itself and fails as it always did, saying so. A few entries are kept at
most; the one prefetched longest ago goes first. `forget` drops a user's entries, also
one still being read. Thread-safe: the reader thread asks, the prefetch thread reads,
the generation takes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load

__all__ = ["PREFETCH_CAPACITY", "Prefetched", "Prefetcher", "read_model"]

_log = logging.getLogger(__name__)

# The next few pictures' models: rank-16 SD1.5 LoRAs are ~25 MB, FLUX's a few times that.
PREFETCH_CAPACITY = 4


@dataclass(frozen=True, slots=True)
class Prefetched:
    """A model file's tensors, read from bytes whose sha256 was checked."""

    sha256: str
    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str]  # the file's safetensors `__metadata__`


def read_model(path: Path, sha256: str, *, pin: bool) -> Prefetched:
    """Read `path` once and check its sha256; its tensors (pinned when `pin`) and metadata.

    One read: the tensors are the bytes whose hash was checked, whatever happens to the
    file meanwhile.
    """
    data = path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ValueError(f"LoRA file {path} has sha256 {actual}, expected {sha256}")
    tensors = load(data)
    if pin:
        tensors = {key: t.pin_memory() for key, t in tensors.items()}
    return Prefetched(sha256, tensors, _metadata(data))


def _metadata(data: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header (an 8-byte length, then JSON)."""
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__") or {}
    return {str(key): str(value) for key, value in metadata.items()}


class Prefetcher:
    def __init__(self, capacity: int = PREFETCH_CAPACITY, *, pin: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"prefetch capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.pin = pin
        self.reads = 0  # files read so far (for stats and tests)
        self._ready: OrderedDict[str, Prefetched] = OrderedDict()  # oldest first
        self._wanted: OrderedDict[str, Path] = OrderedDict()  # asked, not read yet
        self._reading: str | None = None  # the sha256 being read now
        self._dropped: set[str] = set()  # forgotten while being read: not kept
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="lora-prefetch", daemon=True)
        self._thread.start()

    def request(self, files: Iterable[tuple[Path, str]]) -> None:
        """Read these (path, sha256) files ahead, in this order, unless kept already."""
        with self._changed:
            for path, sha256 in files:
                if sha256 in self._ready or sha256 == self._reading:
                    continue
                self._wanted[sha256] = path
                self._wanted.move_to_end(sha256)
            self._changed.notify()

    def take(self, sha256: str) -> Prefetched | None:
        """The tensors of model `sha256`, no longer kept here; None when they were never
        asked for, did not verify, or were dropped. One being read now is waited for:
        that costs less than reading it a second time."""
        with self._changed:
            self._wanted.pop(sha256, None)  # the generation reads it itself now
            while self._reading == sha256:
                self._changed.wait()
            return self._ready.pop(sha256, None)

    def settle(self, timeout: float | None = None) -> bool:
        """Wait until every file asked for is read (or left out); False on `timeout`."""
        with self._changed:
            return self._changed.wait_for(
                lambda: not self._wanted and self._reading is None, timeout
            )

    def holds(self, sha256: str) -> bool:
        """Whether anything of model `sha256` is kept, asked for or being read."""
        with self._changed:
            return sha256 in self._ready or sha256 in self._wanted or sha256 == self._reading

    def forget(self, sha256s: Iterable[str]) -> int:
        """Drop these models, also one being read now; how many were kept or asked for."""
        held = 0
        with self._changed:
            for sha256 in sha256s:
                kept = self._ready.pop(sha256, None) is not None
                asked = self._wanted.pop(sha256, None) is not None
                if sha256 == self._reading:
                    self._dropped.add(sha256)
                    asked = True
                held += kept or asked
        return held

    def close(self) -> None:
        """Stop the thread (after the file it reads) and drop everything."""
        with self._changed:
            self._closed = True
            self._wanted.clear()
            self._changed.notify()
        self._thread.join()
        with self._changed:
            self._ready.clear()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._wanted and not self._closed:
                    self._changed.wait()
                if self._closed:
                    return
                sha256, path = self._wanted.popitem(last=False)
                self._reading = sha256
            entry: Prefetched | None = None
            try:
                entry = read_model(path, sha256, pin=self.pin)
            except Exception as exc:
                # Advisory: the generation reads the file itself, and fails there if it must.
                _log.warning("prefetch of %s left out: %s", sha256[:12], exc)
            with self._changed:
                self.reads += 1
                self._reading = None
                if entry is not None and sha256 not in self._dropped and not self._closed:
                    self._ready[sha256] = entry
                    while len(self._ready) > self.capacity:
                        self._ready.popitem(last=False)
                    _log.info("prefetched LoRA %s", sha256[:12])
                self._dropped.discard(sha256)
                self._changed.notify_all()
