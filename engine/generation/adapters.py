"""Per-user LoRAs loaded into a pipeline as named adapters, kept in a small LRU cache.

A returning user's adapter is still loaded, so switching to it is a `set_adapters` call,
not a file read. Each file is checked against its sha256 before it is loaded. Not
thread-safe: one engine process generates with one pipeline at a time.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict

from engine.generation.spec import LoraRef
from engine.models.pipeline import Pipeline
from engine.training.export import file_sha256

__all__ = ["DEFAULT_CAPACITY", "LoraCache"]

_log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 8  # rank-16 SD1.5 LoRAs are ~25 MB each; eight fit any GPU beside the model
_CACHES: weakref.WeakKeyDictionary[Pipeline, LoraCache] = weakref.WeakKeyDictionary()


class LoraCache:
    def __init__(self, pipeline: Pipeline, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"LoRA cache capacity must be at least 1, got {capacity}")
        self.pipeline = pipeline
        self.capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()  # sha256 -> adapter name
        self.loads = 0  # files read so far (for stats and tests)

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline) -> LoraCache:
        """The one cache of `pipeline` (adapters live inside the pipeline, so one cache each)."""
        cache = _CACHES.get(pipeline)
        if cache is None:
            cache = _CACHES[pipeline] = cls(pipeline)
        return cache

    @property
    def loaded(self) -> tuple[str, ...]:
        """sha256 of the loaded adapters, least recently used first."""
        return tuple(self._loaded)

    def activate(self, lora: LoraRef | None) -> None:
        """Make `lora` the only active adapter, or run the bare base model for None."""
        if lora is None:
            if self._loaded:
                self.pipeline.disable_lora()
            return
        name = self._loaded.get(lora.sha256)
        if name is None:
            name = self._load(lora)
        self._loaded.move_to_end(lora.sha256)
        self.pipeline.enable_lora()
        self.pipeline.set_adapters([name], adapter_weights=[lora.scale])

    def evict(self, sha256: str) -> None:
        """Drop an adapter (its user was forgotten, or it was retrained)."""
        name = self._loaded.pop(sha256, None)
        if name is not None:
            self.pipeline.delete_adapters(name)

    def clear(self) -> None:
        """Unload every adapter: training needs a pipeline without them."""
        for sha256 in list(self._loaded):
            self.evict(sha256)

    def _load(self, lora: LoraRef) -> str:
        actual = file_sha256(lora.path)
        if actual != lora.sha256:
            raise ValueError(f"LoRA file {lora.path} has sha256 {actual}, expected {lora.sha256}")
        while len(self._loaded) >= self.capacity:
            oldest = next(iter(self._loaded))
            self.evict(oldest)
        name = f"lora_{lora.sha256[:16]}"
        self.pipeline.load_lora_weights(str(lora.path), adapter_name=name)
        self._loaded[lora.sha256] = name
        self.loads += 1
        _log.info("loaded LoRA %s as adapter %s", lora.sha256[:12], name)
        return name
