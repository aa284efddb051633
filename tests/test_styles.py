"""Style LoRAs on the tiny model: the file checks before loading, and the mix by weight.

The test styles are real LoRA files: peft adapters added to the tiny pipeline's UNet (and
text encoder), given random up-weights so they change the output, and saved with
diffusers/safetensors as a style from elsewhere would be.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.utils.state_dict_utils import convert_state_dict_to_diffusers
from peft import LoraConfig, inject_adapter_in_model
from peft.utils import get_peft_model_state_dict
from PIL import Image
from safetensors.torch import load_file, save_file

from engine.generation import GenerationRequest, LoraCache, LoraRef, StyleLora, generate
from engine.generation.generate import with_styles
from engine.models import FAMILIES
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.models.styles import (
    StyleError,
    check_family,
    check_fits,
    inspect_style,
    model_layers,
)
from engine.training import file_sha256

TINY = FAMILIES["tiny"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _randomise(model: torch.nn.Module, adapter: str, seed: int) -> None:
    """peft starts B at zero (a no-op adapter); a style has learned something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, param in model.named_parameters():
            if f"lora_B.{adapter}" in key:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def _style_file(pipe: Pipeline, out: Path, seed: int, *, text_encoder: bool = False) -> Path:
    """A style LoRA of the tiny family, as diffusers writes one (unet, and text encoder).

    `pipe` is a scratch pipeline: the adapters stay in it."""
    name = f"style{seed}"
    pipe.unet.add_adapter(
        LoraConfig(r=4, lora_alpha=4, target_modules=list(TINY.lora_targets)), adapter_name=name
    )
    _randomise(pipe.unet, name, seed)
    layers = {
        "unet_lora_layers": convert_state_dict_to_diffusers(  # type: ignore[no-untyped-call]
            get_peft_model_state_dict(pipe.unet, adapter_name=name)
        )
    }
    if text_encoder:
        encoder: torch.nn.Module = pipe.text_encoder  # type: ignore[attr-defined]
        # peft directly: transformers' own add_adapter asks for a newer peft.
        inject_adapter_in_model(
            LoraConfig(r=4, lora_alpha=4, target_modules=TE_TARGETS), encoder, adapter_name=name
        )
        _randomise(encoder, name, seed + 1)
        layers["text_encoder_lora_layers"] = convert_state_dict_to_diffusers(  # type: ignore[no-untyped-call]
            get_peft_model_state_dict(encoder, adapter_name=name)
        )
    type(pipe).save_lora_weights(
        str(out.parent), weight_name=out.name, safe_serialization=True, **layers
    )
    return out


def _ref(path: Path, name: str, weight: float = 1.0, trigger: str = "") -> StyleLora:
    return StyleLora(path, file_sha256(path), name, weight, trigger)


@pytest.fixture(scope="module")
def scratch(models_dir: Path) -> Pipeline:
    return load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)


@pytest.fixture(scope="module")
def styles(scratch: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("styles")
    ikea = _style_file(scratch, folder / "ikea.safetensors", 1)
    ghibli = _style_file(scratch, folder / "ghibli.safetensors", 2, text_encoder=True)
    return ikea, ghibli


@pytest.fixture(scope="module")
def face(scratch: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> LoraRef:
    """The user's own LoRA (random, as a training would leave it)."""
    path = _style_file(scratch, tmp_path_factory.mktemp("face") / "face.safetensors", 9)
    return LoraRef(path, file_sha256(path), "sbx7")


@pytest.fixture
def cache(pipe: Pipeline) -> Iterator[LoraCache]:
    """A cache of the tiny pipeline, emptied afterwards (adapters live in the pipeline)."""
    cache = LoraCache(pipe, family="tiny")
    yield cache
    cache.clear()


def _req(**kw: object) -> GenerationRequest:
    return GenerationRequest("a lego figure", seed=5, steps=2, **kw)  # type: ignore[arg-type]


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


# the file checks ----------------------------------------------------------------------


def test_a_style_lora_of_the_family_is_read_from_its_header(
    pipe: Pipeline, styles: tuple[Path, Path]
) -> None:
    ikea, ghibli = (inspect_style(path) for path in styles)
    assert ikea.components == ("unet",) and ikea.rank == 4
    assert ghibli.components == ("text_encoder", "unet")
    # Every layer the tiny UNet has attention projections for: 2 blocks, q k v out, 2 attns.
    assert len([layer for layer in ikea.layers if layer.component == "unet"]) == len(
        [n for n in model_layers({"unet": pipe.unet})["unet"] if n.endswith(".to_q")]
    ) * len(TINY.lora_targets)
    layers = model_layers({"unet": pipe.unet, "text_encoder": pipe.text_encoder})  # type: ignore[attr-defined]
    check_fits(ikea, layers, "tiny")
    check_fits(ghibli, layers, "tiny")


def test_kohya_names_are_understood(
    pipe: Pipeline, styles: tuple[Path, Path], tmp_path: Path
) -> None:
    # The kohya layout of the same weights: lora_unet_<module with underscores>.lora_down.
    tensors = load_file(styles[0])
    renamed = {
        "lora_unet_"
        + key.removeprefix("unet.")
        .replace(".lora.down.weight", "")
        .replace(".lora.up.weight", "")
        .replace(".", "_")
        + (".lora_down.weight" if ".lora.down." in key else ".lora_up.weight"): value
        for key, value in tensors.items()
    }
    save_file(renamed, tmp_path / "kohya.safetensors")
    style = inspect_style(tmp_path / "kohya.safetensors")
    assert len(style.layers) == len(inspect_style(styles[0]).layers)
    check_fits(style, model_layers({"unet": pipe.unet}), "tiny")


def test_pickle_files_are_refused_unread(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ikea.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, checkpoint)
    with pytest.raises(StyleError, match=r"'ikea.ckpt' is a .ckpt file, a pickle-based format"):
        inspect_style(checkpoint)
    # A pickle renamed to .safetensors is told apart by its bytes.
    disguised = tmp_path / "ikea.safetensors"
    disguised.write_bytes(checkpoint.read_bytes())
    with pytest.raises(
        StyleError, match=re.escape("holds a pickle (a PyTorch checkpoint), whatever its")
    ):
        inspect_style(disguised)
    bare = tmp_path / "old.safetensors"
    torch.save({"w": torch.zeros(2)}, bare, _use_new_zipfile_serialization=False)
    with pytest.raises(StyleError, match="holds a pickle"):
        inspect_style(bare)


def test_files_that_are_not_lora_safetensors_are_refused(pipe: Pipeline, tmp_path: Path) -> None:
    full_model = tmp_path / "unet.safetensors"
    save_file({k: v.contiguous() for k, v in pipe.unet.state_dict().items()}, full_model)
    with pytest.raises(StyleError, match=r"'unet.safetensors' holds no LoRA weights \(\d+ tensors"):
        inspect_style(full_model)
    garbage = tmp_path / "noise.safetensors"
    garbage.write_bytes(b"\xff" * 64)
    with pytest.raises(StyleError, match="header length 18446744073709551615 does not fit"):
        inspect_style(garbage)
    not_json = tmp_path / "text.safetensors"
    not_json.write_bytes((4).to_bytes(8, "little") + b"{{{{" + b"\0" * 8)
    with pytest.raises(StyleError, match="its header is not JSON"):
        inspect_style(not_json)
    big = tmp_path / "big.safetensors"
    big.write_bytes(b"\0" * 2048)
    with pytest.raises(
        StyleError, match=re.escape("'big.safetensors' is 0 MB, more than the 0 MB")
    ):
        inspect_style(big, max_bytes=1024)
    lying = tmp_path / "lying.safetensors"
    header = b'{"a.lora_A.weight": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 999]}}'
    lying.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 64)
    with pytest.raises(StyleError, match=re.escape("the entry 'a.lora_A.weight' is malformed")):
        inspect_style(lying)


def test_a_lora_of_another_family_is_refused_with_the_layer(pipe: Pipeline, tmp_path: Path) -> None:
    # A UNet of another shape (wider blocks, another text width), as SD1.5 is to SDXL.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        other = UNet2DConditionModel(  # type: ignore[no-untyped-call]
            block_out_channels=(64, 128),
            layers_per_block=2,
            sample_size=32,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=48,
        )
    other.add_adapter(LoraConfig(r=4, target_modules=list(TINY.lora_targets)), "x")  # type: ignore[attr-defined]
    state = get_peft_model_state_dict(other, adapter_name="x")
    state = convert_state_dict_to_diffusers(state)  # type: ignore[no-untyped-call]
    path = tmp_path / "other.safetensors"
    save_file({f"unet.{k}": v.contiguous() for k, v in state.items()}, path)
    style = inspect_style(path)  # a well-formed LoRA...
    layers = model_layers({"unet": pipe.unet})
    wanted = "as 128 -> 128 features, but the tiny model's layer is 64 -> 64 (a LoRA for another"
    with pytest.raises(StyleError, match=re.escape(wanted)):
        check_fits(style, layers, "tiny")  # ...for another model
    # Layers the model does not have at all (an SDXL text encoder 2 LoRA, a deeper UNet).
    for key, message in (
        (
            "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj",
            "changes the text_encoder_2, which the tiny model does not have",
        ),
        (
            "unet.down_blocks.3.attentions.0.transformer_blocks.0.attn1.to_q",
            "layer 'down_blocks.3.attentions.0.transformer_blocks.0.attn1.to_q', which the "
            "tiny model does not have",
        ),
    ):
        lora = {
            f"{key}.lora_A.weight": torch.zeros(4, 64),
            f"{key}.lora_B.weight": torch.zeros(64, 4),
        }
        save_file(lora, tmp_path / "elsewhere.safetensors")
        with pytest.raises(StyleError, match=re.escape(message)):
            check_fits(inspect_style(tmp_path / "elsewhere.safetensors"), layers, "tiny")


# the mix ------------------------------------------------------------------------------


def test_style_weight_0_is_no_style_and_a_real_weight_changes_the_picture(
    pipe: Pipeline, styles: tuple[Path, Path], face: LoraRef, cache: LoraCache
) -> None:
    for lora in (None, face):
        plain = _pixels(generate(pipe, _req(lora=lora), adapters=cache).images[0].png)
        off = generate(
            pipe,
            _req(lora=lora, styles=(_ref(styles[0], "ikea", 0.0, "ikea manual"),)),
            adapters=cache,
        )
        # Weight 0: the adapter takes part at weight 0 and its words stay out of the prompt.
        assert np.abs(_pixels(off.images[0].png) - plain).max() <= 1
        assert "ikea" not in off.prompt
        on = generate(pipe, _req(lora=lora, styles=(_ref(styles[0], "ikea", 0.8),)), adapters=cache)
        assert np.abs(_pixels(on.images[0].png) - plain).mean() > 2
    assert cache.loads == 2  # the face and the style, each read once


def test_two_styles_mix_by_weight_with_the_face(
    pipe: Pipeline, styles: tuple[Path, Path], face: LoraRef, cache: LoraCache
) -> None:

    def picture(ikea: float, ghibli: float) -> tuple[np.ndarray, str]:
        mix = (
            _ref(styles[0], "ikea", ikea, "ikea manual"),
            _ref(styles[1], "ghibli", ghibli, "studio ghibli"),
        )
        result = generate(pipe, _req(lora=face, styles=mix), adapters=cache)
        return _pixels(result.images[0].png), result.prompt

    face_only = _pixels(generate(pipe, _req(lora=face), adapters=cache).images[0].png)
    mixed, prompt = picture(0.9, 0.7)
    assert prompt == "sbx7 person, a lego figure, ikea manual, studio ghibli"
    ikea_only, _ = picture(0.9, 0.0)
    ghibli_only, _ = picture(0.0, 0.7)
    assert not np.array_equal(mixed, ikea_only) and not np.array_equal(mixed, ghibli_only)
    again, _ = picture(0.9, 0.7)
    assert np.array_equal(again, mixed)
    assert cache.loads == 3 and set(cache.loaded) == {
        face.sha256,
        file_sha256(styles[0]),
        file_sha256(styles[1]),
    }
    # The user alone afterwards: the styles stay loaded but take no part.
    alone = _pixels(generate(pipe, _req(lora=face), adapters=cache).images[0].png)
    assert np.abs(alone - face_only).max() <= 1


def test_a_style_that_is_refused_loads_nothing(
    pipe: Pipeline, tmp_path: Path, face: LoraRef, cache: LoraCache
) -> None:
    checkpoint = tmp_path / "evil.safetensors"
    torch.save({"w": torch.zeros(1)}, checkpoint)
    with pytest.raises(StyleError, match="holds a pickle"):
        generate(pipe, _req(lora=face, styles=(_ref(checkpoint, "evil"),)), adapters=cache)
    assert cache.loads == 1 and cache.loaded == (face.sha256,)


def test_style_words_are_added_once() -> None:
    ikea = StyleLora(Path("x"), "0" * 64, "ikea", 0.9, "ikea manual")
    assert with_styles("me, cooking", [ikea]) == "me, cooking, ikea manual"
    assert with_styles("me in an IKEA manual", [ikea]) == "me in an IKEA manual"
    assert with_styles("me", [StyleLora(Path("x"), "0" * 64, "plain", 1.0)]) == "me"


def _lora_file(path: Path, pairs: dict[str, tuple[int, int]]) -> Path:
    """A LoRA file with zero weights: key -> (in, out) of its layer, rank 4."""
    tensors = {}
    for key, (fan_in, fan_out) in pairs.items():
        down, up = (
            (".lora_down.weight", ".lora_up.weight")
            if key.startswith("lora_")
            else (
                ".lora_A.weight",
                ".lora_B.weight",
            )
        )
        tensors[key + down] = torch.zeros(4, fan_in)
        tensors[key + up] = torch.zeros(fan_out, 4)
    save_file(tensors, path)
    return path


def test_the_family_is_told_from_the_header_alone(
    pipe: Pipeline, styles: tuple[Path, Path], tmp_path: Path
) -> None:
    """What the bot process can check as an admin adds a style (no model loaded)."""
    tiny, sd15, sdxl = FAMILIES["tiny"], FAMILIES["sd15"], FAMILIES["sdxl"]
    for path in styles:
        check_family(inspect_style(path), tiny)
    with pytest.raises(StyleError, match="takes 32 text features, sd15 models 768"):
        check_family(inspect_style(styles[0]), sd15)
    attn = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k"
    for_sd15 = inspect_style(_lora_file(tmp_path / "sd15.safetensors", {attn: (768, 320)}))
    check_family(for_sd15, sd15)
    with pytest.raises(
        StyleError, match=re.escape("'sd15.safetensors' is a LoRA for SD1.x: its cross")
    ):
        check_family(for_sd15, sdxl)
    # kohya SDXL, named as in the original repository: its widths decide.
    sgm = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    kohya_xl = inspect_style(_lora_file(tmp_path / "xl.safetensors", {sgm: (2048, 640)}))
    check_family(kohya_xl, sdxl)
    with pytest.raises(StyleError, match="is a LoRA for SDXL"):
        check_family(kohya_xl, tiny)
    layers = model_layers({"unet": pipe.unet})
    with pytest.raises(StyleError, match="with 2048 text features, but the tiny model's cross-"):
        check_fits(kohya_xl, layers, "tiny")
    kohya_tiny = _lora_file(tmp_path / "xl-tiny.safetensors", {sgm: (32, 64)})
    check_fits(inspect_style(kohya_tiny), layers, "tiny")
    te2 = "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj"
    second_encoder = inspect_style(_lora_file(tmp_path / "te2.safetensors", {te2: (1280, 1280)}))
    check_family(second_encoder, sdxl)
    with pytest.raises(StyleError, match="changes the text_encoder_2, which sd15 models do not"):
        check_family(second_encoder, sd15)
