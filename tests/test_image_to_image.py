"""Image-to-image on the tiny model: in `generate`, and through the engine process with a
user's LoRA and a style, as the dispatcher sends it; and the other picture tools that
start from a picture (inpainting, edge control, upscale) in `generate`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate
from engine.generation.png import AI_STATEMENT, DIGITAL_SOURCE_TYPE
from engine.generation.tools import canny_edges, image_to_image, inpainting
from engine.jobs import ImagineRequest, ModelRef, StyleRef, encode
from engine.models import FAMILIES
from engine.models.controlnet import load_controlnet
from engine.models.inpainting import load_inpainting_unet
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.process import EngineOptions, EngineProcess
from engine.protocol import Event, GenerateCommand
from engine.provenance import read_job_id
from engine.provenance.certificates import development_pair
from engine.training import file_sha256
from engine.training.export import save_lora

TINY = FAMILIES["tiny"]


@pytest.fixture(scope="module")
def lora(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> LoraRef:
    """A LoRA of the tiny family with random up-weights (peft starts them at zero)."""
    import torch
    from peft import LoraConfig

    scratch = load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)
    scratch.unet.add_adapter(LoraConfig(r=4, target_modules=list(TINY.lora_targets)), "face")
    with torch.no_grad():
        for key, param in scratch.unet.named_parameters():
            if "lora_B.face" in key:
                param.copy_(torch.randn(param.shape, generator=torch.Generator().manual_seed(3)))
    path, sha256 = save_lora(scratch, "face", tmp_path_factory.mktemp("lora") / "face.safetensors")
    return LoraRef(path, sha256, "sbx7")


def _photo(width: int = 320, height: int = 240) -> Image.Image:
    """A picture with structure: a disc and a bar on a gradient."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    image = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, width // 2, height // 2 + 40), fill=(250, 240, 30))
    draw.rectangle((width * 2 // 3, 10, width * 2 // 3 + 30, height - 10), fill=(20, 20, 160))
    return image


def _read(path: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def _req(**kw: object) -> GenerationRequest:
    return GenerationRequest(**({"prompt": "a lego figure", "seed": 7, "steps": 10} | kw))  # type: ignore[arg-type]


def test_the_source_shapes_the_picture_more_at_low_strength(pipe: Pipeline) -> None:
    source = _photo()
    mirrored = _photo(240, 320).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    steps: list[tuple[int, int]] = []
    low = generate(
        pipe, _req(source=source, strength=0.2), progress=lambda s, t: steps.append((s, t))
    )
    # int(10 * 0.2) = 2 denoising steps are run, and reported as such.
    assert steps == [(1, 2), (2, 2)]
    high = generate(pipe, _req(source=source, strength=0.9))
    text = generate(pipe, _req())
    # Two sources give two pictures at a low strength, nearly one at a high strength.
    apart = {
        strength: np.abs(
            _pixels(generate(pipe, _req(source=mirrored, strength=strength)).images[0].png)
            - _pixels(result.images[0].png)
        ).mean()
        for strength, result in ((0.2, low), (0.9, high))
    }
    assert apart[0.2] > 4 * apart[0.9]
    # The random tiny VAE does not give the source back; its round trip is what the
    # pipeline starts from, and a low strength stays nearer to it.
    start = _round_trip(pipe, source)
    near = {
        name: np.abs(_pixels(result.images[0].png) - start).mean()
        for name, result in (("low", low), ("high", high), ("text", text))
    }
    assert near["low"] < near["high"] and near["low"] < near["text"]
    assert low.parameters["strength"] == 0.2 and "strength" not in text.parameters


def _round_trip(pipe: Pipeline, source: Image.Image) -> np.ndarray:
    """The source as the tiny VAE decodes its encoding (1:1 crop, 256 px)."""
    import torch

    fitted = ImageOps.fit(source, (256, 256), Image.Resampling.LANCZOS)
    processor = pipe.image_processor  # type: ignore[attr-defined]
    with torch.no_grad():
        latents = pipe.vae.encode(processor.preprocess(fitted)).latent_dist.mean
        decoded = processor.postprocess(pipe.vae.decode(latents).sample, output_type="pil")[0]
    return np.asarray(decoded, dtype=np.float32)


def test_image_to_image_is_seeded_uses_the_lora_and_shares_the_weights(
    pipe: Pipeline, lora: LoraRef
) -> None:
    source = _photo()
    cache = LoraCache(pipe, family="tiny")
    try:
        first = generate(pipe, _req(source=source, strength=0.5, steps=4, count=2), adapters=cache)
        again = generate(pipe, _req(source=source, strength=0.5, steps=4, count=2), adapters=cache)
        with_lora = generate(
            pipe, _req(source=source, strength=0.5, steps=4, lora=lora), adapters=cache
        )
    finally:
        cache.clear()
    a, b = (_pixels(image.png) for image in first.images)
    assert np.array_equal(a, _pixels(again.images[0].png))
    assert not np.array_equal(a, b)  # seeds 7 and 8
    assert np.abs(_pixels(with_lora.images[0].png) - a).mean() > 1
    assert with_lora.prompt == "sbx7 person, a lego figure"
    # One set of weights: the img2img pipeline runs the loaded pipeline's modules.
    img2img = image_to_image(pipe)
    assert img2img is image_to_image(pipe)
    assert img2img.unet is pipe.unet and img2img.vae is pipe.vae
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"


def test_the_source_is_cropped_to_the_aspect_ratio(pipe: Pipeline) -> None:
    request = _req(source=_photo(400, 200), aspect_ratio="16:9", steps=4, strength=0.5)
    image = generate(pipe, request).images[0]
    assert (image.width, image.height) == (344, 192)
    assert Image.open(io.BytesIO(image.png)).size == (344, 192)


async def test_the_engine_runs_image_to_image_with_a_lora_and_a_style(
    models_dir: Path, lora: LoraRef, tmp_path: Path
) -> None:
    source = tmp_path / "source"  # as the blob store names files: no suffix
    _photo().save(source, format="PNG")
    style = tmp_path / "style-blob"
    style.write_bytes(lora.path.read_bytes())  # any LoRA of the family will do as a style
    style_sha = file_sha256(style)

    def command(job_id: int, **kw: object) -> GenerateCommand:
        request = ImagineRequest(
            "me as a lego figure",
            seed=3,
            steps=4,
            model=ModelRef("face-blob", lora.sha256, "sbx7", 1),
            source="source-blob",
            **kw,  # type: ignore[arg-type]
        )
        request.check()
        files = {"lora": str(lora.path), "out_dir": str(tmp_path / f"out-{job_id}")}
        files |= {"source": str(source)}
        if request.styles:
            files |= {"styles": [str(style)]}
        return {"op": "generate", "job_id": job_id, "request": encode(request), "files": files}  # type: ignore[typeddict-item]

    signing = development_pair(tmp_path / "provenance")
    engine = EngineProcess(EngineOptions("tiny", "auto", models_dir, *signing, device="cpu"))
    await engine.start()
    try:
        done: dict[int, Event] = {}
        progress: list[tuple[int, int]] = []
        jobs = [
            command(1, strength=0.5),
            command(
                2,
                strength=0.5,
                styles=(StyleRef("lego", "style-blob", style_sha, 0.8, "brick art"),),
            ),
            command(3, strength=0.5, styles=(StyleRef("lego", "style-blob", "0" * 64, 0.8),)),
        ]
        for job in jobs:
            await engine.send(job)
            while True:
                event = await engine.next_event()
                if event["event"] == "progress" and event.get("job_id") == 1:
                    progress.append((event["step"], event["total"]))
                if event["event"] in ("done", "failed", "stopped"):
                    done[event["job_id"]] = event
                    break
    finally:
        await engine.stop()
    assert progress == [(1, 2), (2, 2)]  # int(4 * 0.5) steps
    plain, styled = (done[n]["generated"] for n in (1, 2))
    assert plain["prompt"] == "sbx7 person, me as a lego figure"
    assert styled["prompt"] == "sbx7 person, me as a lego figure, brick art"
    assert plain["images"][0]["width"] == 256
    first, second = (_read(g["images"][0]["path"]) for g in (plain, styled))
    assert np.abs(first - second).mean() > 1
    assert done[3]["event"] == "failed" and "expected 0000" in done[3]["error"]


# the other picture tools: inpainting, edge control, upscale ----------------------------


def test_inpainting_repaints_where_the_mask_is_white_with_the_lora(
    pipe: Pipeline, lora: LoraRef
) -> None:
    source = _photo(256, 256)
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (0, 0, 128, 256))  # the left half
    cache = LoraCache(pipe, family="tiny")
    try:
        plain = generate(pipe, _req(source=source, mask=mask, strength=0.9, steps=6))
        faced = generate(
            pipe, _req(source=source, mask=mask, strength=0.9, steps=6, lora=lora), adapters=cache
        )
    finally:
        cache.clear()
    original = _round_trip(pipe, source)
    edited = _pixels(plain.images[0].png)
    change = np.abs(edited - original).mean(axis=(0, 2))
    # The kept half comes back from the source's latents; the masked half is new.
    assert change[136:].mean() * 3 < change[:120].mean()
    assert np.abs(_pixels(faced.images[0].png) - edited)[:, :120].mean() > 1
    assert (
        json.loads(Image.open(io.BytesIO(plain.images[0].png)).info["parameters"])["tool"] == "edit"
    )
    assert type(inpainting(pipe)).__name__ == "StableDiffusionInpaintPipeline"
    assert inpainting(pipe).unet is pipe.unet


def test_a_dedicated_inpainting_base_repaints_with_its_own_unet_and_the_lora(
    pipe: Pipeline, lora: LoraRef, tmp_path: Path
) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    def saved(name: str, in_channels: int) -> str:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(5)
            unet = UNet2DConditionModel.from_config(
                {**pipe.unet.config, "in_channels": in_channels}
            )
        unet.save_pretrained(tmp_path / name / "unet", safe_serialization=True)
        return str(tmp_path / name)

    unet = load_inpainting_unet(saved("inpainting", 9), pipe)
    assert unet is not None and load_inpainting_unet("", pipe) is None
    with pytest.raises(ValueError, match="not an inpainting model: its UNet takes 4 input"):
        load_inpainting_unet(saved("regular", 4), pipe)
    dedicated = inpainting(pipe, unet)
    assert dedicated.unet is unet and dedicated.text_encoder is pipe.text_encoder
    assert inpainting(pipe).unet is pipe.unet

    source = _photo(256, 256)
    mask = Image.new("L", (256, 256), 0)
    mask.paste(255, (0, 0, 128, 256))
    cache = LoraCache(pipe, family="tiny")

    def edited(lora: LoraRef | None, unet: UNet2DConditionModel | None) -> np.ndarray:
        request = _req(source=source, mask=mask, strength=0.9, steps=6, lora=lora)
        return _pixels(generate(pipe, request, adapters=cache, inpainting_unet=unet).images[0].png)

    try:
        blended, plain = edited(None, None), edited(None, unet)
        faced = edited(lora, unet)
        assert np.array_equal(faced, edited(lora, unet))  # seeded, the adapter reused
        assert cache.sibling(dedicated).loads == 1
    finally:
        cache.clear()
    assert cache.sibling(dedicated).loaded == ()
    assert np.abs(plain - blended).mean() > 1  # the dedicated UNet drew it
    assert np.abs(faced - plain)[:, :120].mean() > 1  # with the user's LoRA


def test_edges_guide_the_picture_through_the_controlnet(pipe: Pipeline) -> None:
    controlnet = load_controlnet("auto", "tiny", pipe)
    assert controlnet is not None and load_controlnet("", "tiny", pipe) is None
    assert load_controlnet("auto", "runwayml/stable-diffusion-v1-5", pipe) is None

    def drawn(edges: Image.Image) -> np.ndarray:
        result = generate(pipe, _req(edges=edges, steps=4), controlnet=controlnet)
        return _pixels(result.images[0].png)

    first = drawn(_photo())
    assert np.array_equal(first, drawn(_photo()))  # the same edges and seed
    assert np.abs(first - drawn(_photo().transpose(Image.Transpose.ROTATE_180))).mean() > 0.5
    with pytest.raises(ValueError, match="edge control is not set up for this model"):
        generate(pipe, _req(edges=_photo(), steps=4))
    edges = np.asarray(canny_edges(_photo(), 256, 256))
    assert set(np.unique(edges)) == {0, 255} and edges.shape == (256, 256, 3)


def test_an_upscale_is_twice_the_size_and_carries_the_three_marks(pipe: Pipeline) -> None:
    small = generate(pipe, _req(steps=4), watermark=41).images[0]
    source = Image.open(io.BytesIO(small.png))
    request = _req(source=source, upscale=2, strength=0.3, steps=10)
    big = generate(pipe, request, watermark=42).images[0]
    with Image.open(io.BytesIO(big.png)) as img:
        assert img.size == (2 * small.width, 2 * small.height) == (big.width, big.height)
        assert img.info["Disclaimer"] == AI_STATEMENT
        assert DIGITAL_SOURCE_TYPE in img.info["XML:com.adobe.xmp"]
        parameters = json.loads(img.info["parameters"])
    assert (parameters["tool"], parameters["upscale"], parameters["strength"]) == (
        "upscale",
        2,
        0.3,
    )
    assert read_job_id(big.png) == 42
