"""DreamBooth-style LoRA training of a user's face, in the shape of diffusers'
train_dreambooth_lora.py: validate, load and freeze, add the adapter, train, save only
the adapter as safetensors. The UNet of SD 1.x and SDXL learns to predict noise; FLUX's
transformer learns the flow (engine.training.flow).

`method` picks what is learned: the LoRA (the default), the trigger's embedding alone
(textual inversion), or both together (pivotal tuning); engine.training.embedding. With
an embedding the captions are encoded at every step, since the token in them learns.

Prior preservation is optional (`TrainingRequest.class_images`): with a rank-limited
LoRA and few steps the drift it guards against is small, and it doubles the cost of a
step, so it is off unless configured.
On CUDA the frozen weights stay in the family's half precision, the LoRA parameters in
fp32 under autocast, with gradient checkpointing and SDPA attention; CPUs run plain fp32.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.models.attention_processor import AttnProcessor2_0
from diffusers.training_utils import cast_training_params
from peft import LoraConfig

from engine.models.families import Family
from engine.models.pipeline import Pipeline, denoiser
from engine.models.recipe import TrainingRecipe
from engine.training.checkpoint import CheckpointState, load_checkpoint, save_checkpoint
from engine.training.conditioning import Conditioning, LiveCaptions, encode_captions
from engine.training.data import LatentCache, captions_for, encode_images
from engine.training.embedding import (
    INVERSION_LEARNING_RATE,
    METHODS,
    PIVOTAL_LEARNING_RATE,
    TriggerEmbedding,
)
from engine.training.export import save_model
from engine.training.flow import encode_flux_captions, flow_matching_loss
from engine.training.likeness import LikenessScore, best_step
from engine.training.samples import render_sample
from engine.training.spec import (
    ProgressFn,
    SampleFn,
    StopFn,
    TrainingRequest,
    TrainingResult,
    TrainingStopped,
    ValidateFn,
)

__all__ = ["ADAPTER", "train"]

_log = logging.getLogger(__name__)

ADAPTER = "selfiebooth_train"
_LOSS_WINDOW = 10  # the reported final loss is the mean of this many last steps
_MAX_GRAD_NORM = 1.0  # diffusers' --max_grad_norm default


def train(
    pipeline: Pipeline,
    family: Family,
    request: TrainingRequest,
    *,
    checkpoint_dir: Path | None = None,
    resume_from: Path | None = None,
    progress: ProgressFn | None = None,
    on_sample: SampleFn | None = None,
    should_stop: StopFn | None = None,
    validate: ValidateFn | None = None,
    checkpointing: bool = True,
) -> TrainingResult:
    """Train a LoRA of `request.images` and write it to `request.output`.

    Raises TrainingStopped when `should_stop` says so; with `checkpoint_dir` set, a
    checkpoint of the step reached is written first, and `resume_from=` that checkpoint
    continues from its step.

    With `validate` and `request.validations`, the likeness is measured at that many
    steps spread evenly (the last one at the end), and the weights of the step that
    scored best are the ones written (the last step's when none has a score).

    `checkpointing` is gradient checkpointing on CUDA (engine.models.memory).
    """
    recipe = request.recipe or family.recipe
    total = request.steps if request.steps is not None else recipe.total_steps(len(request.images))
    _check_request(request, family, total)
    unet = denoiser(pipeline)  # FLUX: the transformer
    device = unet.device
    on_cuda = device.type == "cuda"
    flux = family.pipeline == "flux"

    learns_lora = request.method in ("lora", "pivotal")
    # Caches: the frozen VAE and text encoder run once, before the loop.
    latents = encode_images(pipeline, request.images)
    captions = captions_for(request.trigger, request.class_word)
    prior = _Prior.encode(pipeline, request, family) if request.class_images else None
    # A fresh copy: generating a sample during training changes the pipeline's own.
    scheduler_class = FlowMatchEulerDiscreteScheduler if flux else DDPMScheduler
    noise_scheduler = scheduler_class.from_config(pipeline.scheduler.config)  # type: ignore[no-untyped-call]
    objective: Any = flow_matching_loss if flux else _denoising_loss

    if getattr(unet, "peft_config", None):
        raise ValueError(
            f"the pipeline has LoRA adapters loaded ({', '.join(unet.peft_config)}): "
            "train on a pipeline without them"
        )
    unet.requires_grad_(False)
    if on_cuda and not flux:  # FLUX's own attention processors use SDPA already
        unet.set_attn_processor(AttnProcessor2_0())  # type: ignore[no-untyped-call]
    checkpointing = checkpointing and on_cuda
    if checkpointing:
        unet.enable_gradient_checkpointing()
    if learns_lora:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(request.seed)  # LoRA A matrices are drawn from the global RNG
            unet.add_adapter(_lora_config(recipe, family), adapter_name=ADAPTER)
    embedding = None
    if request.method != "lora":
        embedding = TriggerEmbedding(pipeline, request.trigger, request.class_word)
    conditioning: Any = None
    if flux:
        conditioning = encode_flux_captions(pipeline, captions)
    elif embedding is None:
        conditioning = encode_captions(pipeline, captions, family.resolution)
    live = LiveCaptions(pipeline, captions, family.resolution) if embedding else None
    try:
        if on_cuda and learns_lora:
            cast_training_params(unet, dtype=torch.float32)
        params = {n: p for n, p in unet.named_parameters() if p.requires_grad}
        groups: list[dict[str, Any]] = []
        if params:
            groups.append({"params": list(params.values()), "lr": recipe.learning_rate})
        if embedding is not None:
            params |= embedding.params()
            rate = PIVOTAL_LEARNING_RATE if learns_lora else INVERSION_LEARNING_RATE
            groups.append({"params": list(embedding.vectors.values()), "lr": rate})
        # A LoRA is many small tensors, where one kernel call per tensor dominates: the fused
        # optimizer and the multi-tensor clip make that one call for all of them. torch
        # picks neither by itself on a CPU.
        optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate, fused=True)
        generator = torch.Generator("cpu").manual_seed(request.seed)

        start = 0
        if resume_from is not None:
            state = load_checkpoint(resume_from, params, optimizer, generator)
            _check_resume(state, request, recipe, total, resume_from)
            start = state.step
            _log.info("resuming training at step %d of %d from %s", start, total, resume_from)

        def checkpoint(step: int) -> Path | None:
            if checkpoint_dir is None:
                return None
            state = CheckpointState(
                step, total, recipe, request.seed, request.trigger, len(request.images)
            )
            return save_checkpoint(checkpoint_dir, state, params, optimizer, generator)

        checks = _validation_steps(total, request.validations) if validate is not None else set()
        scores: list[tuple[int, LikenessScore]] = []
        kept: dict[str, torch.Tensor] = {}  # the best-scoring step's LoRA weights

        losses: list[float] = []
        began = time.monotonic()
        unet.train()
        for step in range(start + 1, total + 1):
            if should_stop is not None and should_stop():
                raise TrainingStopped(step - 1, checkpoint(step - 1))
            caption = torch.randint(len(captions), (recipe.batch_size,), generator=generator)
            if live is None:
                assert conditioning is not None
                loss = objective(unet, noise_scheduler, latents, conditioning, caption, generator)
            else:
                rows = torch.arange(len(caption))
                encoded = live(caption.to(unet.device))
                loss = objective(unet, noise_scheduler, latents, encoded, rows, generator)
            if prior is not None:
                # One caption for the class: "a photo of a person".
                prior_caption = torch.zeros(recipe.batch_size, dtype=torch.long)
                prior_loss = objective(
                    unet,
                    noise_scheduler,
                    prior.latents,
                    prior.conditioning,
                    prior_caption,
                    generator,
                )
                loss = loss + request.prior_loss_weight * prior_loss
            torch.autograd.backward(loss)
            torch.nn.utils.clip_grad_norm_(params.values(), _MAX_GRAD_NORM, foreach=True)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            losses = [*losses[-(_LOSS_WINDOW - 1) :], float(loss.detach())]
            if progress is not None:
                per_step = (time.monotonic() - began) / (step - start)
                progress(step, total, losses[-1], per_step * (total - step))
            if request.checkpoint_every and step % request.checkpoint_every == 0 and step < total:
                checkpoint(step)
            if on_sample is not None and request.sample_every and step % request.sample_every == 0:
                with _autocast(device, unet.dtype):
                    on_sample(step, render_sample(pipeline, request, seed=request.seed))
                unet.train()
            if validate is not None and step in checks:
                with _autocast(device, unet.dtype):
                    score = validate(step)
                unet.train()
                scores.append((step, score))
                if best_step(scores) == step and step < total:
                    kept = {name: p.detach().clone() for name, p in params.items()}

        unet.eval()
        chosen = best_step(scores) or total
        if chosen != total and kept:
            with torch.no_grad():
                for name, param in params.items():
                    param.copy_(kept[name])
            _log.info("keeping the weights of step %d: they look most like the user", chosen)
        path, sha256 = save_model(
            pipeline,
            ADAPTER if learns_lora else None,
            embedding.tensors() if embedding is not None else {},
            request.trigger,
            request.output,
        )
        loss_mean = sum(losses) / len(losses) if losses else float("nan")
        _log.info("trained %s: %d steps, loss %.4f", path, total, loss_mean)
        likeness = dict(scores).get(chosen) if scores else None
        return TrainingResult(path, sha256, total, loss_mean, recipe, likeness, chosen)
    finally:
        unet.eval()
        if learns_lora:
            unet.delete_adapters(ADAPTER)
        if embedding is not None:
            embedding.close()
        if checkpointing:
            unet.disable_gradient_checkpointing()
        unet.requires_grad_(False)


def _validation_steps(total: int, count: int) -> set[int]:
    """`count` steps spread evenly over 1..total, the last one `total`."""
    return {max(1, round(total * n / count)) for n in range(1, count + 1)} if count else set()


@dataclass(frozen=True, slots=True)
class _Prior:
    """The class images and their caption, cached like the instance data."""

    latents: LatentCache
    conditioning: Any  # Conditioning, or FluxConditioning

    @classmethod
    def encode(cls, pipeline: Pipeline, request: TrainingRequest, family: Family) -> _Prior:
        captions = [f"a photo of a {request.class_word}"]
        if family.pipeline == "flux":
            conditioning: Any = encode_flux_captions(pipeline, captions)
        else:
            conditioning = encode_captions(pipeline, captions, family.resolution)
        return cls(encode_images(pipeline, request.class_images), conditioning)


def _denoising_loss(
    unet: Any,
    scheduler: Any,
    latents: LatentCache,
    conditioning: Conditioning,
    caption: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """The DreamBooth objective on one batch: noise cached latents, predict the noise back."""
    device = unet.device
    batch = len(caption)
    index = torch.randint(len(latents), (batch,), generator=generator)
    flip = torch.rand(batch, generator=generator) < 0.5
    model_input = latents.sample(index, flip, generator).to(device)
    noise = torch.randn(model_input.shape, generator=generator).to(device)
    timesteps = torch.randint(
        scheduler.config.num_train_timesteps, (batch,), generator=generator
    ).to(device)
    noisy = scheduler.add_noise(model_input, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(model_input, noise, timesteps)
    else:
        target = noise
    with _autocast(device, unet.dtype):
        pred = unet(
            noisy.to(unet.dtype),
            timesteps,
            **conditioning.unet_kwargs(caption.to(device)),
            return_dict=False,
        )[0]
    return F.mse_loss(pred.float(), target.float(), reduction="mean")


def _lora_config(recipe: TrainingRecipe, family: Family) -> LoraConfig:
    # As train_dreambooth_lora.py: gaussian init, no dropout, the attention projections.
    return LoraConfig(
        r=recipe.rank,
        lora_alpha=recipe.alpha,
        init_lora_weights="gaussian",
        target_modules=list(family.lora_targets),
    )


@contextlib.contextmanager
def _autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    if device.type == "cuda" and dtype != torch.float32:
        with torch.autocast("cuda", dtype=dtype):
            yield
    else:
        yield


def _check_request(request: TrainingRequest, family: Family, total: int) -> None:
    if not request.images:
        raise ValueError("no images to train on")
    res = family.resolution
    for i, img in enumerate(request.images):
        if img.size != (res, res):
            raise ValueError(f"image {i} is {img.size[0]}x{img.size[1]}, need {res}x{res}")
    if request.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {request.method!r}")
    if request.method not in family.methods:
        raise ValueError(
            f"{family.name} models are trained by {', '.join(family.methods)} only, "
            f"not {request.method}"
        )
    if not request.trigger or not request.trigger.isalnum():
        raise ValueError(f"trigger must be one alphanumeric word, got {request.trigger!r}")
    if total < 1:
        raise ValueError(f"steps must be at least 1, got {total}")
    for name in ("checkpoint_every", "sample_every"):
        if getattr(request, name) < 0:
            raise ValueError(f"{name} must be 0 (off) or positive, got {getattr(request, name)}")


def _check_resume(
    state: CheckpointState,
    request: TrainingRequest,
    recipe: TrainingRecipe,
    total: int,
    where: Path,
) -> None:
    theirs = (state.recipe, state.total_steps, state.seed, state.trigger, state.images)
    ours = (recipe, total, request.seed, request.trigger, len(request.images))
    if theirs != ours:
        raise ValueError(
            f"checkpoint {where} was made for (recipe, steps, seed, trigger, images) {theirs}, "
            f"this run is {ours}"
        )
    if not 0 <= state.step <= total:
        raise ValueError(f"checkpoint {where} is at step {state.step}, outside 0..{total}")
