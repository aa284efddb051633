"""Users' LoRAs swapped into one adapter slot in place, for a compiled denoiser.

A compiled denoiser is compiled for the adapters it holds: adding, deleting or
activating another adapter recompiles it, which costs seconds to minutes. So with
`engine.compile` on, a user's LoRA is not loaded as an adapter of its own: its weights
are copied into the one slot the first user's LoRA made (peft's hotswap, with the slot
padded to the family's rank and its scalings made tensors), and the compiled graph stays.
Switching users is then a copy of a few MB from memory; on CUDA the weights wait in
pinned host memory, so the copy is a DMA.

Only a plain LoRA of at most the slot's rank takes the slot. The slot is loaded from
tensors, which carry no LoRA config, so diffusers takes alpha = rank; the file's own
alpha / rank is applied with the user's scale, in the slot's scaling tensors. A request
with styles, or a model with an embedding or per-layer ranks, rsLoRA or DoRA, goes
through the ordinary cache (engine.generation.adapters) and may recompile once for that
set of adapters.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, cast

import torch
from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
from peft.tuners.lora import LoraLayer

from engine.generation.adapters import DEFAULT_CAPACITY, LoraCache
from engine.generation.prefetch import read_model
from engine.generation.spec import LoraRef, StyleLora
from engine.models.pipeline import Pipeline, denoiser
from engine.training.embedding import EMBEDDING_PREFIX

__all__ = ["SLOT", "HotswapCache"]

_log = logging.getLogger(__name__)

SLOT = "user"
# The down (A) matrices, whose first dimension is the rank, in the layouts diffusers reads.
_DOWN = ("lora.down.weight", "lora_A.weight", "lora_down.weight")


class HotswapCache(LoraCache):
    def __init__(
        self,
        pipeline: Pipeline,
        rank: int,
        capacity: int = DEFAULT_CAPACITY,
        *,
        family: str = "base",
    ) -> None:
        super().__init__(pipeline, capacity, family=family)
        if rank < 1:
            raise ValueError(f"the hotswap slot's rank must be at least 1, got {rank}")
        self.rank = rank
        self.swaps = 0  # weights copied into the slot so far (for stats and tests)
        self._states: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        # sha256 -> the file's alpha / rank, or None when it cannot take the slot
        self._alpha: dict[str, float | None] = {}
        self._hot: str | None = None  # sha256 of the weights in the slot
        self._scale = 1.0
        self._base: list[torch.Tensor] | None = None  # the slot's scalings at scale 1
        self._active: tuple[str, ...] | None = None

    def activate(self, lora: LoraRef | None, styles: Sequence[StyleLora] = ()) -> None:
        if styles or (lora is not None and not self._takes_slot(lora)):
            self._active = None  # the ordinary path activates adapters of its own
            super().activate(lora, styles)
            return
        self._use_embedding(None)
        if lora is None:
            if self._hot is not None or self._loaded:
                self.pipeline.disable_lora()
            return
        self._swap_in(lora)
        self.pipeline.enable_lora()
        if self._active != (SLOT,):
            self.pipeline.set_adapters([SLOT], adapter_weights=[1.0])
            self._tensor_scalings()
            self._active = (SLOT,)
        alpha = self._alpha[lora.sha256]
        assert alpha is not None  # it took the slot
        self._set_scale(lora.scale * alpha)

    def evict(self, sha256: str) -> None:
        super().evict(sha256)
        self._states.pop(sha256, None)
        self._alpha.pop(sha256, None)
        if self._hot == sha256:  # a forgotten user's weights leave the slot too
            self.pipeline.delete_adapters(SLOT)
            self._hot, self._base, self._active = None, None, None

    def holds(self, sha256: str) -> bool:
        return super().holds(sha256) or sha256 in self._states or self._hot == sha256

    def clear(self) -> None:
        super().clear()
        if self._hot is not None:
            self.pipeline.delete_adapters(SLOT)
        self._states.clear()
        self._hot, self._base, self._active = None, None, None

    def _takes_slot(self, lora: LoraRef) -> bool:
        if lora.sha256 not in self._alpha:
            self._read(lora)  # records whether it can
        return self._alpha[lora.sha256] is not None

    def _read(self, lora: LoraRef) -> dict[str, torch.Tensor] | None:
        """The file's tensors, kept (pinned on CUDA) for the next switch; None when it has
        an embedding, a scaling the slot cannot carry or a rank above the slot's (the
        ordinary path reads the file then)."""
        # Read once (or ahead, engine.generation.prefetch): the tensors are the bytes whose
        # hash was checked, whatever happens to the file meanwhile.
        ahead = self._prefetched(lora.sha256)
        if ahead is None:
            ahead = read_model(lora.path, lora.sha256, pin=torch.cuda.is_available())
            self.reads += 1
        state = ahead.tensors
        alpha = _alpha_over_rank(ahead.metadata)
        ranks = {t.shape[0] for key, t in state.items() if key.endswith(_DOWN)}
        embedding = any(key.startswith(EMBEDDING_PREFIX) for key in state)
        if embedding or not ranks or max(ranks) > self.rank:
            alpha = None
        self._alpha[lora.sha256] = alpha
        if alpha is None:
            return None
        self._states[lora.sha256] = state
        while len(self._states) > self.capacity:
            self._states.popitem(last=False)
        self.loads += 1
        return state

    def _swap_in(self, lora: LoraRef) -> None:
        if self._hot == lora.sha256:
            return
        state = self._states.get(lora.sha256) or self._read(lora)
        if state is None:
            raise ValueError(f"LoRA {lora.sha256[:12]} cannot take the hotswap slot")
        self._states.move_to_end(lora.sha256)
        pipeline: Any = self.pipeline
        swap = SLOT in (getattr(denoiser(pipeline), "peft_config", None) or {})
        if not swap:
            # Pads the slot to `rank` and makes its scalings tensors, on the first load.
            pipeline.enable_lora_hotswap(target_rank=self.rank, check_compiled="ignore")
        # diffusers pops the keys of a dict it is given, and on a CPU the first load makes
        # the given tensors the slot's own, which the next swap overwrites: hand it copies.
        if denoiser(pipeline).device.type == "cpu":
            given = {key: t.clone() for key, t in state.items()}
        else:
            given = dict(state)  # moved to the device, which copies them
        pipeline.load_lora_weights(given, adapter_name=SLOT, hotswap=swap)
        self._hot, self._base, self._scale = lora.sha256, None, 1.0
        self.swaps += 1
        _log.info("swapped LoRA %s into the compiled slot", lora.sha256[:12])

    def _slot_layers(self) -> list[LoraLayer]:
        return [
            module
            for module in denoiser(self.pipeline).modules()
            if isinstance(module, LoraLayer) and SLOT in module.scaling
        ]

    def _tensor_scalings(self) -> None:
        """`set_adapters` writes floats; the compiled graph reads tensors it need not guard."""
        for layer in self._slot_layers():
            value = layer.scaling[SLOT]
            if not isinstance(value, torch.Tensor):
                weight = cast(torch.Tensor, layer.lora_A[SLOT].weight)
                layer.scaling[SLOT] = torch.tensor(value, device=weight.device)
        self._base, self._scale = None, 1.0

    def _set_scale(self, scale: float) -> None:
        """The slot's LoRA at `scale`, written into its scaling tensors in place."""
        if scale == self._scale:
            return
        layers = self._slot_layers()
        if self._base is None:
            self._base = [layer.scaling[SLOT].clone() / self._scale for layer in layers]
        for layer, base in zip(layers, self._base, strict=True):
            layer.scaling[SLOT].copy_(base * scale)
        self._scale = scale


def _alpha_over_rank(metadata: Mapping[str, str]) -> float | None:
    """The factor a file's LoRA config scales its update by (alpha / rank), or None when
    one factor cannot say it: per-layer ranks or alphas, rsLoRA, DoRA, components that
    differ, or a config that cannot be read."""
    raw = metadata.get(LORA_ADAPTER_METADATA_KEY)
    if not raw:
        return 1.0  # no config: diffusers takes alpha = rank from the tensors, as the slot
    try:
        config = json.loads(raw)
    except ValueError:
        return None  # the ordinary path reads the file and says why
    if not isinstance(config, dict):
        return None
    fields: dict[str, dict[str, Any]] = {}
    for key, value in config.items():
        component, _, name = str(key).rpartition(".")
        fields.setdefault(component, {})[name] = value
    factors = set()
    for f in fields.values():
        if any(f.get(name) for name in ("alpha_pattern", "rank_pattern", "use_rslora", "use_dora")):
            return None
        rank, alpha = f.get("r"), f.get("lora_alpha", f.get("r"))
        if not isinstance(rank, int) or not isinstance(alpha, int | float) or rank < 1:
            return None
        factors.add(alpha / rank)
    if len(factors) > 1:
        return None
    return factors.pop() if factors else 1.0
