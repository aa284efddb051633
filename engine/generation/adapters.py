"""Per-user and style LoRAs loaded into a pipeline as named adapters, in a small LRU cache.

A returning user's adapter is still loaded, so switching to it is a `set_adapters` call,
not a file read; so is a style used again. A generation activates the user's adapter
and up to two styles together, each at its weight. Each file is checked against its
sha256 before it is loaded, and a style file is also checked from its header to be a
LoRA that fits this model (engine.models.styles). Not thread-safe: one engine process
generates with one pipeline at a time.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from engine.generation.spec import LoraRef, StyleLora
from engine.models.pipeline import Pipeline
from engine.models.styles import check_fits, inspect_style, model_layers
from engine.training.export import file_sha256

__all__ = ["DEFAULT_CAPACITY", "LoraCache"]

_log = logging.getLogger(__name__)

# Room for a user's adapter and two styles, and then some: rank-16 SD1.5 LoRAs are
# ~25 MB each; eight fit any GPU beside the model.
DEFAULT_CAPACITY = 8
_CACHES: weakref.WeakKeyDictionary[Pipeline, LoraCache] = weakref.WeakKeyDictionary()


class LoraCache:
    def __init__(
        self, pipeline: Pipeline, capacity: int = DEFAULT_CAPACITY, *, family: str = "base"
    ) -> None:
        if capacity < 1:
            raise ValueError(f"LoRA cache capacity must be at least 1, got {capacity}")
        self.pipeline = pipeline
        self.capacity = capacity
        self.family = family  # how a style that does not fit names the model
        self._loaded: OrderedDict[str, str] = OrderedDict()  # sha256 -> adapter name
        self.loads = 0  # files read so far (for stats and tests)
        self._prefix = ""
        self._siblings: dict[Pipeline, LoraCache] = {}

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline) -> LoraCache:
        """The one cache of `pipeline` (adapters live inside the pipeline, so one cache each)."""
        cache = _CACHES.get(pipeline)
        if cache is None:
            cache = _CACHES[pipeline] = cls(pipeline)
        return cache

    def sibling(self, pipeline: Pipeline) -> LoraCache:
        """The cache of a pipeline that shares this one's text encoders but not its UNet
        (a dedicated inpainting UNet). Its adapter names differ, as both load into the
        shared text encoders, and clearing this cache clears it too."""
        cache = self._siblings.get(pipeline)
        if cache is None:
            cache = LoraCache(pipeline, self.capacity, family=self.family)
            self._siblings[pipeline] = cache
            cache._prefix = f"{len(self._siblings)}_"
        return cache

    @property
    def loaded(self) -> tuple[str, ...]:
        """sha256 of the loaded adapters, least recently used first."""
        return tuple(self._loaded)

    def activate(self, lora: LoraRef | None, styles: Sequence[StyleLora] = ()) -> None:
        """Make `lora` and `styles` the active adapters, each at its weight, or run the
        bare base model when there are none."""
        wanted: list[tuple[str, Path, float, bool]] = []
        if lora is not None:
            wanted.append((lora.sha256, lora.path, lora.scale, False))
        wanted += [(style.sha256, style.path, style.weight, True) for style in styles]
        if not wanted:
            if self._loaded:
                self.pipeline.disable_lora()
            return
        keep = {sha256 for sha256, *_ in wanted}
        names = []
        for sha256, path, _, style in wanted:
            name = self._loaded.get(sha256)
            if name is None:
                name = self._load(path, sha256, style=style, keep=keep)
            self._loaded.move_to_end(sha256)
            names.append(name)
        self.pipeline.enable_lora()
        self.pipeline.set_adapters(names, adapter_weights=[weight for *_, weight, _ in wanted])

    def evict(self, sha256: str) -> None:
        """Drop an adapter (its user was forgotten, or it was retrained)."""
        name = self._loaded.pop(sha256, None)
        if name is not None:
            self.pipeline.delete_adapters(name)

    def clear(self) -> None:
        """Unload every adapter: training needs a pipeline without them."""
        for sha256 in list(self._loaded):
            self.evict(sha256)
        for sibling in self._siblings.values():
            sibling.clear()

    def _load(self, path: Path, sha256: str, *, style: bool, keep: set[str]) -> str:
        actual = file_sha256(path)
        if actual != sha256:
            raise ValueError(f"LoRA file {path} has sha256 {actual}, expected {sha256}")
        if style:
            self._check_style(path)
        # The adapters of this generation stay, even past the capacity for a moment.
        while len(self._loaded) >= self.capacity:
            oldest = next((s for s in self._loaded if s not in keep), None)
            if oldest is None:
                break
            self.evict(oldest)
        name = f"{self._prefix}lora_{sha256[:16]}"
        self.pipeline.load_lora_weights(str(path), adapter_name=name)
        self._loaded[sha256] = name
        self.loads += 1
        _log.info("loaded %s %s as adapter %s", "style" if style else "LoRA", sha256[:12], name)
        return name

    def _check_style(self, path: Path) -> None:
        """A style from elsewhere is read as a LoRA that fits this model, or refused."""
        components = {
            name: getattr(self.pipeline, name, None)
            for name in ("unet", "text_encoder", "text_encoder_2")
        }
        check_fits(inspect_style(path), model_layers(components), self.family)
