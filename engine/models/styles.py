"""Style LoRA files: checked from their bytes before anything loads them.

A style is a LoRA someone else trained (an admin adds it from a file or the hub). Before
diffusers sees it, `inspect_style` reads the safetensors header by hand (an 8-byte
little-endian length, then JSON; no tensor is read, nothing is unpickled), refuses
pickle-based formats (.ckpt, .pt, .bin) whatever their name, and lists the layers the
LoRA changes with their shapes. `check_fits` compares those with the layers of the
model it is for (`model_layers` of a loaded pipeline), so a LoRA for another family is
refused with the layer that does not fit rather than failing deep inside peft.

Torch-free: the bot process can inspect a file as it is added; `model_layers` only reads
attributes of modules it is given.

Key layouts understood (what diffusers' `load_lora_weights` reads for SD1.x/SDXL):
peft/diffusers (`unet.<module>.lora_A.weight`, `text_encoder.<module>.lora.down.weight`)
and kohya with diffusers module names (`lora_unet_<module_with_underscores>.lora_down.weight`,
`lora_te_...`, `lora_te1_...`, `lora_te2_...`). Kohya SDXL files that use the original
repository's block names (`lora_unet_input_blocks_...`, which diffusers renames as it
loads them) are checked by their widths only. FLUX styles are read in the diffusers
layout (`transformer.<module>.lora_A.weight`); kohya's FLUX files name the original
model's fused blocks (`lora_unet_double_blocks_...`), which this check does not map, so
they are refused with the layer that does not fit.

Two checks of fit: `check_family` needs only the family (the bot process, as an admin
adds a style: the components and the cross-attention width), `check_fits` needs the
loaded model (the engine, before a style's first load: every layer and shape).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.models.families import Family

__all__ = [
    "MAX_HEADER_BYTES",
    "MAX_STYLE_BYTES",
    "LoraLayer",
    "StyleError",
    "StyleFile",
    "check_family",
    "check_fits",
    "inspect_style",
    "model_layers",
]

MAX_STYLE_BYTES = 1 << 30  # SDXL style LoRAs run to a few hundred MB at high ranks
MAX_HEADER_BYTES = 100 << 20  # the safetensors library's own limit
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
# Components a LoRA file may name, by its prefixes (peft/diffusers form, kohya form).
_COMPONENTS = {
    "unet": "unet",
    "transformer": "transformer",
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
    "lora_unet": "unet",
    "lora_te": "text_encoder",
    "lora_te1": "text_encoder",
    "lora_te2": "text_encoder_2",
}
# The down (A) and up (B) halves of a LoRA pair, as the layouts above spell them.
_DOWN = ("lora_A.weight", "lora.down.weight", "lora_down.weight", "lora_linear_layer.down.weight")
_UP = ("lora_B.weight", "lora.up.weight", "lora_up.weight", "lora_linear_layer.up.weight")
_EXTRA = ("alpha", "dora_scale", "lora_magnitude_vector")


class StyleError(ValueError):
    """A style file that is refused; the message says why and what would be accepted."""


@dataclass(frozen=True, slots=True)
class LoraLayer:
    """One layer a LoRA changes: its component, its module name in that component's
    form (dots for peft files, underscores for kohya ones), and its pair's shapes."""

    component: str  # unet (FLUX: transformer), text_encoder, text_encoder_2
    module: str
    down: tuple[int, ...]  # (rank, in) or (rank, in, kh, kw)
    up: tuple[int, ...]  # (out, rank) or (out, rank, 1, 1)

    @property
    def rank(self) -> int:
        return self.down[0]


@dataclass(frozen=True, slots=True)
class StyleFile:
    path: Path
    size: int
    layers: tuple[LoraLayer, ...]
    metadata: Mapping[str, str]

    @property
    def components(self) -> tuple[str, ...]:
        return tuple(sorted({layer.component for layer in self.layers}))

    @property
    def rank(self) -> int:
        return max(layer.rank for layer in self.layers)


def inspect_style(path: Path, *, max_bytes: int = MAX_STYLE_BYTES) -> StyleFile:
    """The LoRA layers of the safetensors file at `path`; StyleError when it is refused."""
    name = path.name
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise StyleError(
            f"{name!r} is a {path.suffix} file, a pickle-based format that can run code "
            "when loaded: it is never loaded here. Convert it to .safetensors (or pick "
            "the .safetensors download) and add that."
        )
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if _is_pickle(head):
                raise StyleError(
                    f"{name!r} holds a pickle (a PyTorch checkpoint), whatever its name "
                    "says: it is never loaded here. Add the LoRA as .safetensors."
                )
            if size > max_bytes:
                raise StyleError(
                    f"{name!r} is {size / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} "
                    "MB a style may have"
                )
            if len(head) < 8:
                raise StyleError(f"{name!r} is {size} bytes long: too short for safetensors")
            (length,) = struct.unpack("<Q", head)
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise StyleError(
                    f"{name!r} is not a safetensors file (style LoRAs are accepted as "
                    f".safetensors only): its header length {length} does not fit a file "
                    f"of {size} bytes"
                )
            raw = f.read(length)
    except OSError as exc:
        raise StyleError(f"{name!r} cannot be read: {exc.strerror or exc}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise StyleError(f"{name!r} is not a safetensors file: its header is not JSON") from None
    if not isinstance(header, dict):
        raise StyleError(f"{name!r} is not a safetensors file: its header is not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise StyleError(f"{name!r}: the header's __metadata__ is not an object")
    shapes = _tensor_shapes(name, header, data_bytes=size - 8 - length)
    layers = _lora_layers(name, shapes)
    return StyleFile(path, size, layers, {str(k): str(v) for k, v in metadata.items()})


def _is_pickle(head: bytes) -> bool:
    # torch.save writes a zip (PK..); older checkpoints are a bare pickle (protocol 2-5).
    return head.startswith(b"PK\x03\x04") or (
        len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5
    )


def _tensor_shapes(
    name: str, header: dict[str, Any], data_bytes: int
) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for key, entry in header.items():
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(shape, list)
            or not all(type(n) is int and n >= 0 for n in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(type(n) is int for n in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_bytes
        ):
            raise StyleError(
                f"{name!r} is not a valid safetensors file: the entry {key[:80]!r} is malformed"
            )
        shapes[key] = tuple(shape)
    return shapes


def _split(key: str) -> tuple[str, str, str] | None:
    """(component, module, part) of a LoRA tensor's key, or None for other tensors."""
    for part in (*_DOWN, *_UP, *_EXTRA):
        if key.endswith("." + part):
            stem = key[: -len(part) - 1]
            break
    else:
        return None
    # peft files saved with an adapter name: ...lora_A.<adapter>.weight is not read by
    # diffusers either, so it is not accepted here.
    if stem.startswith("lora_"):  # kohya: lora_unet_down_blocks_0_..., lora_te1_...
        prefix, _, module = stem.partition("_")[2].partition("_")
        prefix = "lora_" + prefix
    else:
        prefix, _, module = stem.partition(".")
    component = _COMPONENTS.get(prefix)
    if component is None or not module:
        return None
    return component, module, part


def _lora_layers(name: str, shapes: Mapping[str, tuple[int, ...]]) -> tuple[LoraLayer, ...]:
    pairs: dict[tuple[str, str], dict[str, tuple[int, ...]]] = {}
    others = 0
    for key, shape in shapes.items():
        split = _split(key)
        if split is None:
            others += 1
            continue
        component, module, part = split
        half = "down" if part in _DOWN else "up" if part in _UP else "extra"
        pairs.setdefault((component, module), {})[half] = shape
    if not pairs:
        sample = ", ".join(repr(k[:60]) for k in list(shapes)[:3]) or "no tensors"
        raise StyleError(
            f"{name!r} holds no LoRA weights ({len(shapes)} tensors such as {sample}): a "
            "style must be a LoRA file (keys ending in lora_A/lora_B or lora_down/lora_up "
            "for the unet or text encoder), not a full model or an embedding"
        )
    layers = []
    for (component, module), halves in sorted(pairs.items()):
        down, up = halves.get("down"), halves.get("up")
        if down is None or up is None:
            missing = "down (A)" if down is None else "up (B)"
            raise StyleError(f"{name!r}: the LoRA of {component} {module!r} has no {missing} half")
        if len(down) not in (2, 4) or len(up) != len(down) or down[0] != up[1]:
            raise StyleError(
                f"{name!r}: the LoRA of {component} {module!r} has halves of shapes "
                f"{list(down)} and {list(up)}, which do not make a LoRA pair"
            )
        layers.append(LoraLayer(component, module, down, up))
    return tuple(layers)


def model_layers(components: Mapping[str, Any]) -> dict[str, dict[str, tuple[int, int]]]:
    """component -> module name -> (in, out) of the linear and conv layers a LoRA can
    change, from a pipeline's torch modules (`{"unet": pipe.unet, ...}`).

    Layers already wrapped by peft (a user's adapter is loaded) count as the layer they
    wrap.
    """
    found: dict[str, dict[str, tuple[int, int]]] = {}
    for component, model in components.items():
        if model is None:
            continue
        layers: dict[str, tuple[int, int]] = {}
        for module_name, module in model.named_modules():
            if ".lora_" in module_name or module_name.startswith("lora_"):
                continue
            module_name = module_name.removesuffix(".base_layer")
            if hasattr(module, "in_features") and hasattr(module, "out_features"):
                layers[module_name] = (int(module.in_features), int(module.out_features))
            elif hasattr(module, "kernel_size") and hasattr(module, "in_channels"):
                layers[module_name] = (int(module.in_channels), int(module.out_channels))
        found[component] = layers
    return found


_ORIGINAL_BLOCKS = ("input_blocks_", "middle_block_", "output_blocks_")


def check_family(style: StyleFile, family: Family) -> None:
    """StyleError when `style` is plainly for another family than `family`: it changes a
    text encoder the family lacks, or its cross-attention takes text features of
    another width. Torch-free and weight-free; the engine checks every layer later."""
    name = style.path.name
    components: tuple[str, ...] = ("unet", "text_encoder", "text_encoder_2")
    if family.pipeline == "flux":
        components = ("transformer", "text_encoder")
    elif family.pipeline != "sdxl":
        components = components[:2]
    for layer in style.layers:
        if layer.component not in components:
            raise StyleError(
                f"{name!r} changes the {layer.component}, which {family.name} models do not "
                f"have: it is a LoRA for another family; add one made for {family.name}"
            )
        if layer.component == "unet" and _is_cross_attention_input(layer.module):
            width = layer.down[1]
            if width != family.cross_attention_dim:
                guess = {768: "SD1.x", 1024: "SD2.x", 2048: "SDXL"}.get(width, "another model")
                raise StyleError(
                    f"{name!r} is a LoRA for {guess}: its cross-attention takes {width} text "
                    f"features, {family.name} models {family.cross_attention_dim}; add one "
                    f"made for {family.name}"
                )


def _is_cross_attention_input(module: str) -> bool:
    return module.endswith(("attn2.to_k", "attn2.to_v", "attn2_to_k", "attn2_to_v"))


def check_fits(
    style: StyleFile, layers: Mapping[str, Mapping[str, tuple[int, int]]], family: str
) -> None:
    """StyleError naming the first layer of `style` that the model of `family` lacks or
    whose shape differs (a LoRA trained on another base model family)."""
    name = style.path.name
    hint = f"(a LoRA for another base model than {family}? add one made for {family})"
    # Kohya files name modules with underscores for dots: looked up through this table.
    underscored: dict[str, dict[str, tuple[int, int]]] = {}
    for layer in style.layers:
        model = layers.get(layer.component)
        if model is None:
            raise StyleError(
                f"{name!r} changes the {layer.component}, which the {family} model does not "
                f"have {hint}"
            )
        if layer.component == "unet" and layer.module.startswith(_ORIGINAL_BLOCKS):
            _check_width(style, layer, model, family)  # kohya SDXL: renamed on load
            continue
        shape = _find(model, layer.module)
        if shape is None and "_" in layer.module and "." not in layer.module:
            if layer.component not in underscored:
                underscored[layer.component] = {n.replace(".", "_"): s for n, s in model.items()}
            shape = _find(underscored[layer.component], layer.module)
        if shape is None:
            raise StyleError(
                f"{name!r} changes {layer.component} layer {layer.module!r}, which the "
                f"{family} model does not have {hint}"
            )
        fan_in, fan_out = layer.down[1], layer.up[0]
        if (fan_in, fan_out) != shape:
            raise StyleError(
                f"{name!r} changes {layer.component} layer {layer.module!r} as {fan_in} -> "
                f"{fan_out} features, but the {family} model's layer is {shape[0]} -> "
                f"{shape[1]} {hint}"
            )


def _find(layers: Mapping[str, tuple[int, int]], module: str) -> tuple[int, int] | None:
    """The layer `module` names; CLIP text encoders of transformers 5 lost the
    `text_model.` level that LoRA files name (diffusers strips it too)."""
    found = layers.get(module)
    if found is None:
        for prefix in ("text_model.", "text_model_"):
            if module.startswith(prefix):
                return layers.get(module.removeprefix(prefix))
    return found


def _check_width(
    style: StyleFile, layer: LoraLayer, unet: Mapping[str, tuple[int, int]], family: str
) -> None:
    """A layer named as in the original SD repository: its cross-attention width only."""
    if not _is_cross_attention_input(layer.module):
        return
    widths = {shape[0] for name, shape in unet.items() if _is_cross_attention_input(name)}
    if layer.down[1] not in widths:
        raise StyleError(
            f"{style.path.name!r} changes unet layer {layer.module!r} with {layer.down[1]} text "
            f"features, but the {family} model's cross-attention takes "
            f"{', '.join(map(str, sorted(widths)))} (a LoRA for another base model than "
            f"{family}? add one made for {family})"
        )
