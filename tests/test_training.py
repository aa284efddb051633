"""LoRA training on tiny models: output format, cancel, checkpoints, resume, SDXL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from engine.intake import FaceAnalyzer, IntakeSettings, analyze_photo
from engine.models import FAMILIES, Family
from engine.models.loader import load_pipeline
from engine.models.pipeline import Pipeline
from engine.training import TrainingRequest, TrainingStopped, file_sha256, latest_checkpoint, train

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
TINY = FAMILIES["tiny"]
STEPS = 8


@pytest.fixture(scope="module")
def crops() -> tuple[Image.Image, ...]:
    photos = sorted((FACES / "people" / "paul_allen").glob("*.jpg"))
    if not photos:
        pytest.skip("../shared/faces is absent (the shared test photos are not in the repository)")
    analyzer = FaceAnalyzer()
    return tuple(
        analyze_photo(p.read_bytes(), IntakeSettings(), TINY.resolution, analyzer).crop
        for p in photos[:4]
    )


@pytest.fixture(scope="module")
def synthetic() -> tuple[Image.Image, ...]:
    """Stand-ins where the faces do not matter (cancel, resume): seeded noise."""
    rng = np.random.default_rng(0)
    side = TINY.resolution
    return tuple(
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)) for _ in range(4)
    )


@pytest.fixture
def pipe(models_dir: Path) -> Pipeline:
    return load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)


def _request(
    crops: tuple[Image.Image, ...], out: Path, checkpoint_every: int = 0, sample_every: int = 0
) -> TrainingRequest:
    return TrainingRequest(
        crops,
        "sbx7",
        out / "lora.safetensors",
        seed=3,
        steps=STEPS,
        checkpoint_every=checkpoint_every,
        sample_every=sample_every,
    )


def _image(pipe: Pipeline, seed: int = 1) -> torch.Tensor:
    out = pipe(
        "a photo of sbx7 person",
        num_inference_steps=3,
        generator=torch.Generator("cpu").manual_seed(seed),
        output_type="pt",
    )
    return out.images  # type: ignore[no-any-return]


def test_trained_lora_loads_into_a_fresh_pipeline_and_changes_it(
    pipe: Pipeline, crops: tuple[Image.Image, ...], tmp_path: Path, models_dir: Path
) -> None:
    seen: list[tuple[int, int]] = []
    samples: list[tuple[int, tuple[int, int]]] = []
    result = train(
        pipe,
        TINY,
        _request(crops, tmp_path, sample_every=4),
        progress=lambda step, total, loss, eta: seen.append((step, total)),
        on_sample=lambda step, image: samples.append((step, image.size)),
    )
    assert seen == [(s, STEPS) for s in range(1, STEPS + 1)]
    assert samples == [(4, (256, 256)), (8, (256, 256))]
    assert result.steps == STEPS and result.recipe == TINY.recipe
    assert result.path.is_file() and result.sha256 == file_sha256(result.path)
    assert result.loss == result.loss  # not NaN
    assert not getattr(pipe.unet, "peft_config", None)  # the training adapter is gone

    fresh = load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)
    before = _image(fresh)
    fresh.load_lora_weights(str(result.path), adapter_name="user")
    after = _image(fresh)
    assert not torch.allclose(before, after)


def test_cancel_stops_between_steps(
    pipe: Pipeline, synthetic: tuple[Image.Image, ...], tmp_path: Path
) -> None:
    seen: list[int] = []
    with pytest.raises(TrainingStopped) as stopped:
        train(
            pipe,
            TINY,
            _request(synthetic, tmp_path),
            progress=lambda step, total, loss, eta: seen.append(step),
            should_stop=lambda: len(seen) >= 3,
        )
    assert seen == [1, 2, 3]
    assert stopped.value.step == 3 and stopped.value.checkpoint is None
    assert not (tmp_path / "lora.safetensors").exists()
    assert not getattr(pipe.unet, "peft_config", None)


def test_resume_continues_at_the_checkpointed_step(
    pipe: Pipeline, synthetic: tuple[Image.Image, ...], tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints"
    first: list[int] = []
    with pytest.raises(TrainingStopped) as stopped:
        train(
            pipe,
            TINY,
            _request(synthetic, tmp_path / "a", checkpoint_every=2),
            checkpoint_dir=checkpoints,
            progress=lambda step, total, loss, eta: first.append(step),
            should_stop=lambda: len(first) >= 5,
        )
    assert first == [1, 2, 3, 4, 5]
    # Stopping writes a checkpoint of the step reached; older ones are pruned to two.
    assert stopped.value.checkpoint == latest_checkpoint(checkpoints)
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000004", "step-000005"]

    # A crash after step 5 would resume from the last periodic checkpoint, step 4.
    second: list[int] = []
    resumed = train(
        pipe,
        TINY,
        _request(synthetic, tmp_path / "a", checkpoint_every=2),
        resume_from=checkpoints / "step-000004",
        progress=lambda step, total, loss, eta: second.append(step),
    )
    assert second == [5, 6, 7, 8]
    assert resumed.steps == STEPS

    # Resuming restores weights, optimizer and RNG: the same LoRA as one straight run (up
    # to CPU float reordering under load; one optimiser step moves weights by ~lr = 1e-3).
    straight = train(pipe, TINY, _request(synthetic, tmp_path / "b"))
    ours, theirs = load_file(resumed.path), load_file(straight.path)
    assert ours.keys() == theirs.keys()
    assert all(torch.allclose(ours[k], theirs[k], rtol=0, atol=1e-5) for k in ours)


def test_resume_refuses_a_checkpoint_of_another_run(
    pipe: Pipeline, synthetic: tuple[Image.Image, ...], tmp_path: Path
) -> None:
    with pytest.raises(TrainingStopped) as stopped:
        train(
            pipe,
            TINY,
            _request(synthetic, tmp_path),
            checkpoint_dir=tmp_path / "ck",
            should_stop=lambda: True,
        )
    assert stopped.value.checkpoint is not None
    other = TrainingRequest(synthetic, "zqx9", tmp_path / "lora.safetensors", seed=3, steps=STEPS)
    with pytest.raises(ValueError, match="zqx9"):
        train(pipe, TINY, other, resume_from=stopped.value.checkpoint)


def test_training_refuses_crops_of_the_wrong_size(pipe: Pipeline, tmp_path: Path) -> None:
    images = (Image.new("RGB", (256, 256)), Image.new("RGB", (80, 64)))
    request = TrainingRequest(images, "sbx7", tmp_path / "lora.safetensors", steps=2)
    with pytest.raises(ValueError, match="image 1 is 80x64, need 256x256"):
        train(pipe, TINY, request)
    with pytest.raises(ValueError, match="'two words'"):
        train(pipe, TINY, TrainingRequest(images[:1], "two words", tmp_path / "x", steps=2))


def _tiny_xl(tokenizer: object) -> Pipeline:
    """A tiny SDXL pipeline with the dummy components of diffusers' SDXL tests."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _tiny_xl_seeded(tokenizer)


def _tiny_xl_seeded(tokenizer: object) -> Pipeline:
    unet = UNet2DConditionModel(  # type: ignore[no-untyped-call]
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids x 8 + the pooled 32
        cross_attention_dim=64,  # both encoders' hidden states side by side
    )
    vae = AutoencoderKL(  # type: ignore[no-untyped-call]
        block_out_channels=(32, 64),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
    )
    config = CLIPTextConfig(
        bos_token_id=512,
        eos_token_id=513,
        pad_token_id=513,
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=514,
        projection_dim=32,
    )
    scheduler = EulerDiscreteScheduler(  # type: ignore[no-untyped-call]
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe: Any = StableDiffusionXLPipeline(  # type: ignore[no-untyped-call]
        vae=vae,
        text_encoder=CLIPTextModel(config),
        text_encoder_2=CLIPTextModelWithProjection(config),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return cast(Pipeline, pipe)


def test_sdxl_pipelines_train_and_load_too(pipe: Pipeline, tmp_path: Path) -> None:
    """The SDXL code path (pooled text embeddings, time ids, SDXL LoRA format)."""
    family = Family("tiny-xl", 64, "sdxl", replace(TINY.recipe, batch_size=2), "bfloat16")
    xl = _tiny_xl(pipe.tokenizer)  # type: ignore[attr-defined]
    images = tuple(Image.new("RGB", (64, 64), (30 * i, 120, 60)) for i in range(3))
    request = TrainingRequest(images, "sbx7", tmp_path / "xl.safetensors", steps=3)
    result = train(xl, family, request)
    assert result.steps == 3

    fresh = _tiny_xl(pipe.tokenizer)  # type: ignore[attr-defined]
    before = _image(fresh)
    fresh.load_lora_weights(str(result.path), adapter_name="user")
    assert not torch.allclose(before, _image(fresh))


def test_prior_preservation_trains_on_class_images_too(
    pipe: Pipeline, synthetic: tuple[Image.Image, ...], tmp_path: Path
) -> None:
    plain = train(pipe, TINY, _request(synthetic, tmp_path / "plain"))
    classes = tuple(img.transpose(Image.Transpose.ROTATE_90) for img in synthetic)
    with_prior = replace(_request(synthetic, tmp_path / "prior"), class_images=classes)
    preserved = train(pipe, TINY, with_prior)
    assert preserved.steps == plain.steps
    # The same seed and data, plus the class loss: another LoRA.
    assert preserved.sha256 != plain.sha256
    assert preserved.loss != plain.loss
