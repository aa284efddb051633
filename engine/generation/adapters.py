"""Per-user and style LoRAs loaded into a pipeline as named adapters, in a small LRU cache.

A returning user's adapter is still loaded, so switching to it is a `set_adapters` call,
not a file read; so is a style used again. A generation activates the user's adapter
and up to two styles together, each at its weight. Each file is checked against its
sha256 before it is loaded, and a style file is also checked from its header to be a
LoRA that fits this model (engine.models.styles). Not thread-safe: one engine process
generates with one pipeline at a time.

A user's model trained by textual inversion or pivotal tuning also holds the embedding
of their trigger token (engine.training.embedding). Its vectors are kept in memory, and
the token is in the tokenizers only while that user's model is active: no other
generation can name it.

A user's model the dispatcher named ahead of its picture (engine.generation.prefetch)
was read and checked already, on another thread: it loads from those tensors, and its
file is not read again. Forgetting a model drops those tensors too.
"""

from __future__ import annotations

import json
import logging
import weakref
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from safetensors import safe_open

from engine.generation.prefetch import Prefetched, Prefetcher
from engine.generation.spec import LoraRef, StyleLora
from engine.models.pipeline import Pipeline
from engine.models.styles import check_fits, inspect_style, model_layers
from engine.training.embedding import EMBEDDING_PREFIX, load_embeddings, unload_embeddings
from engine.training.export import TRIGGER_KEY, file_sha256

__all__ = ["DEFAULT_CAPACITY", "LoraCache"]

_log = logging.getLogger(__name__)

# Room for a user's adapter and two styles, and then some: rank-16 SD1.5 LoRAs are
# ~25 MB each; eight fit any GPU beside the model.
DEFAULT_CAPACITY = 8
# What a model read ahead may hold to load from its tensors: the UNet's LoRA, an embedding.
_FROM_TENSORS = ("unet.", EMBEDDING_PREFIX)
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
        # sha256 -> adapter name ("" for a model that is an embedding only)
        self._loaded: OrderedDict[str, str] = OrderedDict()
        # sha256 -> the trigger token and its vectors, of models that have an embedding
        self._embeddings: dict[str, tuple[str, dict[str, torch.Tensor]]] = {}
        self._token: tuple[str, str] | None = None  # (sha256, trigger) in the tokenizers
        self.loads = 0  # models loaded so far, from their file or prefetched (stats, tests)
        self.reads = 0  # model files this cache read and hashed itself (stats, tests)
        # Users' models read ahead while other pictures are made; None: none are.
        self.prefetched: Prefetcher | None = None
        self._prefix = ""
        self._siblings: dict[Pipeline, LoraCache] = {}

    @classmethod
    def for_pipeline(cls, pipeline: Pipeline) -> LoraCache:
        """The one cache of `pipeline` (adapters live inside the pipeline, so one cache each)."""
        cache = _CACHES.get(pipeline)
        if cache is None:
            cache = _CACHES[pipeline] = cls(pipeline)
        return cache

    def install(self) -> None:
        """Make this the cache `for_pipeline` gives for its pipeline (a hotswap cache in
        place of the plain one, before either loaded anything)."""
        _CACHES[self.pipeline] = self

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
            self._use_embedding(None)
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
        weights = [weight for (*_, weight, _), name in zip(wanted, names, strict=True) if name]
        self._use_embedding(lora.sha256 if lora is not None else None)
        if not any(names):  # an embedding alone: the UNet runs without adapters
            if any(self._loaded.values()):
                self.pipeline.disable_lora()
            return
        self.pipeline.enable_lora()
        self.pipeline.set_adapters([name for name in names if name], adapter_weights=weights)

    def activate_each(self, loras: Sequence[LoraRef | None]) -> list[str]:
        """Load every one of `loras` and activate them all at once, for a batch whose row i
        uses the adapter of name i ("" for no LoRA; engine.generation.together).

        A model with an embedding changes the tokenizers, which are shared by the whole
        batch, so it is refused here; so is one LoRA asked at two scales.
        """
        scales: dict[str, float] = {}
        for lora in loras:
            if lora is not None and scales.setdefault(lora.sha256, lora.scale) != lora.scale:
                raise ValueError(f"LoRA {lora.sha256[:12]} is asked at two scales in one batch")
        keep = set(scales)
        if len(keep) > self.capacity:
            raise ValueError(f"{len(keep)} LoRAs in one batch, the cache holds {self.capacity}")
        names: dict[str, str] = {}
        for lora in loras:
            if lora is None or lora.sha256 in names:
                continue
            name = self._loaded.get(lora.sha256)
            if name is None:
                name = self._load(lora.path, lora.sha256, style=False, keep=keep)
            self._loaded.move_to_end(lora.sha256)
            if lora.sha256 in self._embeddings:
                raise ValueError(
                    f"model {lora.sha256[:12]} has a trained embedding: it needs its own batch"
                )
            names[lora.sha256] = name
        self._use_embedding(None)
        if names:
            self.pipeline.enable_lora()
            self.pipeline.set_adapters(
                list(names.values()), adapter_weights=[scales[sha] for sha in names]
            )
        elif any(self._loaded.values()):
            self.pipeline.disable_lora()
        return [names[lora.sha256] if lora is not None else "" for lora in loras]

    def _use_embedding(self, sha256: str | None) -> None:
        """Put the trigger token of model `sha256` in the tokenizers (if it has one), and
        no other user's."""
        entry = self._embeddings.get(sha256) if sha256 is not None else None
        wanted = (sha256, entry[0]) if sha256 is not None and entry is not None else None
        if self._token == wanted and (
            wanted is None or wanted[1] in self.pipeline.tokenizer.get_vocab()
        ):
            return
        if self._token is not None:
            unload_embeddings(self.pipeline, self._token[1])
            self._token = None
        if wanted is not None and entry is not None:
            load_embeddings(self.pipeline, entry[0], entry[1])
            self._token = wanted

    def evict(self, sha256: str) -> None:
        """Drop an adapter (its user was forgotten, or it was retrained)."""
        name = self._loaded.pop(sha256, None)
        if name:
            self.pipeline.delete_adapters(name)
        self._embeddings.pop(sha256, None)
        if self._token is not None and self._token[0] == sha256:
            unload_embeddings(self.pipeline, self._token[1])
            self._token = None

    def forget(self, sha256s: Sequence[str]) -> int:
        """Unload these models everywhere this cache and its siblings hold them (their
        user was erased); how many it held."""
        held = 0
        for sha256 in sha256s:
            caches = [self, *self._siblings.values()]
            ahead = self.prefetched is not None and self.prefetched.forget([sha256]) > 0
            held += ahead or any(cache.holds(sha256) for cache in caches)
            for cache in caches:
                cache.evict(sha256)
        return held

    def holds(self, sha256: str) -> bool:
        """Whether this cache keeps anything of the model `sha256` in memory."""
        return sha256 in self._loaded or sha256 in self._embeddings

    def clear(self) -> None:
        """Unload every adapter: training needs a pipeline without them."""
        for sha256 in list(self._loaded):
            self.evict(sha256)
        for sibling in self._siblings.values():
            sibling.clear()

    def _prefetched(self, sha256: str) -> Prefetched | None:
        """Model `sha256` as read ahead (its sha256 checked), when it was; else None."""
        return self.prefetched.take(sha256) if self.prefetched is not None else None

    def _load(self, path: Path, sha256: str, *, style: bool, keep: set[str]) -> str:
        # Styles come from the library, not the queue: only users' models are read ahead.
        ahead = None if style else self._prefetched(sha256)
        if ahead is not None and not all(k.startswith(_FROM_TENSORS) for k in ahead.tensors):
            # Text-encoder layers: only the file's own loader puts them where they go.
            ahead = None
        if ahead is None:
            actual = file_sha256(path)
            self.reads += 1
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
        if ahead is not None:
            keys = list(ahead.tensors)
            embedding = {k: t for k, t in ahead.tensors.items() if k.startswith(EMBEDDING_PREFIX)}
            trigger = ahead.metadata.get(TRIGGER_KEY)
        else:
            with safe_open(str(path), framework="pt") as f:
                keys = list(f.keys())
                embedding = {k: f.get_tensor(k) for k in keys if k.startswith(EMBEDDING_PREFIX)}
                trigger = (f.metadata() or {}).get(TRIGGER_KEY)
        if embedding:
            if trigger is None or style:
                raise ValueError(f"{path} holds an embedding for no trigger word")
            self._embeddings[sha256] = (trigger, embedding)
        if embedding and len(embedding) == len(keys):
            name = ""  # textual inversion: nothing for the UNet
        elif embedding or ahead is not None:
            self._load_denoiser_lora(ahead or path, name)
        else:
            self.pipeline.load_lora_weights(str(path), adapter_name=name)
        self._loaded[sha256] = name
        self.loads += 1
        _log.info(
            "loaded %s %s as adapter %s%s",
            "style" if style else "LoRA", sha256[:12], name, " (read ahead)" if ahead else "",
        )  # fmt: skip
        return name

    def _load_denoiser_lora(self, source: Path | Prefetched, name: str) -> None:
        """The UNet's LoRA of a model file, or of its prefetched tensors, with its LoRA
        metadata (rank, alpha). `load_lora_weights` wants LoRA keys only, so a pivotal
        file's embedding is left out; and it takes no metadata with a dict of tensors."""
        pipeline: Any = self.pipeline
        if isinstance(source, Path):
            state, alphas, metadata = pipeline.lora_state_dict(
                str(source), return_lora_metadata=True
            )
        else:
            # A copy: diffusers pops the keys of the dict it is given.
            state, alphas = pipeline.lora_state_dict(dict(source.tensors))
            raw = source.metadata.get(LORA_ADAPTER_METADATA_KEY)
            metadata = json.loads(raw) if raw else None
        for key in [k for k in state if k.startswith(EMBEDDING_PREFIX)]:
            del state[key]
        type(pipeline).load_lora_into_unet(
            state,
            network_alphas=alphas,
            unet=pipeline.unet,
            adapter_name=name,
            metadata=metadata,
            _pipeline=pipeline,
        )

    def _check_style(self, path: Path) -> None:
        """A style from elsewhere is read as a LoRA that fits this model, or refused."""
        components = {
            name: getattr(self.pipeline, name, None)
            for name in ("unet", "transformer", "text_encoder", "text_encoder_2")
        }
        check_fits(inspect_style(path), model_layers(components), self.family)
