"""Speed of the engine against plain diffusers/peft doing the same work.

On the tiny model on the CPU (the default) one run measures and prints:

1. Generation, seconds per job, median of several repetitions after one warm-up each:
   through the real engine subprocess (`engine.process.EngineProcess`, a `generate`
   command with a LoRA, timed from sending it to its `done` event: JSON protocol, LoRA
   cache, PNG encoding with metadata, C2PA signing and the file write included) against
   a plain `pipe(...)` call in this process with the same LoRA loaded once, the same prompt,
   size, steps, guidance and seed. The two alternate, so drift hits both alike.
   Ratio engine/plain; the goal is at most 1.10. Five kinds, each against its plain
   diffusers call: text-to-image; image-to-image at strength 0.6 (the engine's
   `from_pipe` img2img pipeline against diffusers' AutoPipelineForImage2Image.from_pipe,
   the same source picture); inpainting at strength 0.95 with a mask of the left half
   (against AutoPipelineForInpainting.from_pipe, the same picture and mask); edge
   control (the engine's canny edges and tiny ControlNet against
   AutoPipelineForText2Image.from_pipe with the same ControlNet and cv2.Canny in the
   timed call); and the LoRA mixed with two style LoRAs at 0.9/0.7 (the engine's style
   checks and cache against `load_lora_weights` three times and `set_adapters` with
   weights, the style words in both prompts).
2. LoRA switching, ms: `LoraCache.activate` alternating between two loaded adapters,
   against a cold `activate` of a LoRA file not loaded yet (sha256 check and file read
   included). Then the cold load three ways, in turn on the same files: the plain library
   call (`load_lora_weights(path)` and `set_adapters`, no check), `activate` reading the
   file, and `activate` of a file read ahead (engine.generation.prefetch: the read and
   sha256 check happened on the prefetch thread, while another job would denoise; its
   own time is printed too, off the picture's path). `--switch-only` runs this part alone.
3. Training, optimiser steps per second: `engine.training.train` in this process against
   a plain diffusers+peft loop written here over the same images (latents and caption
   encoded once, `unet.add_adapter` with the same rank/alpha/targets, AdamW, the same
   batch size, DDPMScheduler.add_noise, MSE loss; gradient clipping only with
   --plain-clip, although the project's trainer and diffusers' script both clip). Only
   the loop is timed, the same way for both: from the end of the first step to the end
   of the last. The two alternate A B B A. Ratio project/plain; the goal is at least 1.0.
4. Training methods, steps per second of `train` with method lora, textual_inversion and
   pivotal, and a plain textual-inversion loop written here as diffusers'
   textual_inversion.py steps (the token added and the whole input-embedding table
   trainable, the caption encoded at every step, the other rows restored after each
   step), against the project's textual inversion. `--methods-only` runs this part alone.
5. FLUX on the tiny FLUX model: training steps/s of `train` against a plain
   flow-matching loop written here as diffusers' train_dreambooth_lora_flux.py steps
   (cached latents and prompt, packed latents, guidance 1, the same LoRA targets), and
   seconds per picture of `generate` with the LoRA against a plain `pipe(...)` call with
   the same LoRA loaded, in this process. `--flux-only` runs this part alone.

`--full sd15` / `--full sdxl` / `--full flux` instead measure the full-size architecture with random
weights on a CUDA GPU (see bench/_full.py): training steps/s at batch 1 and native
resolution, peak GPU memory, seconds per image at 30 steps. Without CUDA it says so and
exits 2; `--dry-run` builds the configs on the meta device, checks their parameter counts
and runs the measuring code on the tiny model instead.

Everything runs on one CPU thread per process by default (--threads): on a shared
machine, torch's default of one thread per core can run tens of times slower as soon as
another process takes a core, which would swamp the differences measured here.

Usage (from the repository root):
    python bench/engine.py [--gen-steps 30] [--gen-reps 7] [--train-steps 40] [--threads 1]
    python bench/engine.py --switch-only [--switch-passes 4]
    python bench/engine.py --full sd15|sdxl|flux [--dry-run]
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/engine.py`, this file's folder comes first on sys.path and its name
# would hide the `engine` package; look there last (for bench/_full.py) instead.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [
    str(_BENCH.parent),
    *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
    str(_BENCH),
]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers import (  # noqa: E402
    AutoPipelineForImage2Image,
    AutoPipelineForInpainting,
    AutoPipelineForText2Image,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    FluxPipeline,
)
from peft import LoraConfig  # noqa: E402
from PIL import Image  # noqa: E402

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate  # noqa: E402
from engine.generation.prefetch import Prefetcher, read_model  # noqa: E402
from engine.generation.tools import canny_edges  # noqa: E402
from engine.jobs import ImagineRequest, ModelRef, StyleRef, encode  # noqa: E402
from engine.models.controlnet import tiny_controlnet  # noqa: E402
from engine.models.families import FAMILIES, Family  # noqa: E402
from engine.models.loader import load_pipeline  # noqa: E402
from engine.models.pipeline import Pipeline, t5_length  # noqa: E402
from engine.process import EngineOptions, EngineProcess  # noqa: E402
from engine.protocol import GenerateCommand  # noqa: E402
from engine.provenance.certificates import development_pair  # noqa: E402
from engine.training import TrainingRequest, train  # noqa: E402
from engine.training.export import save_lora  # noqa: E402

TRIGGER = "sbx7"
# The trigger is in the prompt already, so the engine passes it to the model unchanged.
PROMPT = f"a photo of {TRIGGER} person as an astronaut, oil painting"
GUIDANCE = 7.0
GEN_GOAL = 1.10
TRAIN_GOAL = 1.0


@dataclass(frozen=True, slots=True)
class Lora:
    path: Path
    sha256: str

    def ref(self) -> LoraRef:
        return LoraRef(self.path, self.sha256, TRIGGER)


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000.0


def spread(values: list[float]) -> str:
    return f"min {min(values):.3f} max {max(values):.3f} n={len(values)}"


# --- 3. training ------------------------------------------------------------------------


def training_images(resolution: int, count: int = 4) -> tuple[Image.Image, ...]:
    """Seeded noise crops: the arithmetic of a step does not depend on the pixels."""
    rng = np.random.default_rng(0)
    shape = (resolution, resolution, 3)
    return tuple(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)) for _ in range(count))


def steps_per_second(stamps: list[float]) -> float:
    """Steps after the first, over the time from the first step's end to the last's."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def lora_config(family: Family) -> LoraConfig:
    """The adapter train_dreambooth_lora.py adds, at the family's rank, alpha and targets."""
    return LoraConfig(
        r=family.recipe.rank,
        lora_alpha=family.recipe.alpha,
        init_lora_weights="gaussian",
        target_modules=list(family.lora_targets),
    )


def train_project(
    pipe: Pipeline,
    family: Family,
    images: tuple[Image.Image, ...],
    steps: int,
    out: Path,
    method: str = "lora",
) -> tuple[float, Lora]:
    stamps: list[float] = []

    def progress(step: int, total: int, loss: float, eta: float) -> None:
        stamps.append(time.perf_counter())

    request = TrainingRequest(images, TRIGGER, out, seed=0, steps=steps, method=method)
    result = train(pipe, family, request, progress=progress)
    return steps_per_second(stamps), Lora(result.path, result.sha256)


@torch.no_grad()
def encode_latents(
    vae: Any, images: tuple[Image.Image, ...], generator: torch.Generator
) -> torch.Tensor:
    """The images' scaled VAE latents, as diffusers' training scripts make them."""
    pixels = torch.stack(
        [
            torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)
            for img in images
        ]
    )
    return vae.encode(pixels).latent_dist.sample(generator) * vae.config.scaling_factor  # type: ignore[no-any-return]


def train_plain_inversion(
    pipe: Any, family: Family, images: tuple[Image.Image, ...], steps: int, *, clip: bool
) -> float:
    """diffusers' textual_inversion.py per step: the whole embedding table trainable,
    the caption encoded with it, the rows of the other tokens put back after the step."""
    recipe = family.recipe
    tokenizer, encoder, unet, vae = pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae
    generator = torch.Generator("cpu").manual_seed(1)
    latents = encode_latents(vae, images, generator)
    tokenizer.add_tokens([TRIGGER])
    encoder.resize_token_embeddings(len(tokenizer))
    token_id = tokenizer.convert_tokens_to_ids(TRIGGER)
    ids = tokenizer(
        f"a photo of {TRIGGER} person",
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.expand(recipe.batch_size, -1)
    unet.requires_grad_(False)
    encoder.requires_grad_(False)
    table = encoder.get_input_embeddings().weight
    table.requires_grad_(True)
    original = table.detach().clone()
    keep = torch.ones(len(tokenizer), dtype=torch.bool)
    keep[token_id] = False
    optimizer = torch.optim.AdamW([table], lr=5e-3)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # type: ignore[no-untyped-call]
    stamps: list[float] = []
    for _ in range(steps):
        index = torch.randint(len(latents), (recipe.batch_size,), generator=generator)
        model_input = latents[index]
        noise = torch.randn(model_input.shape, generator=generator)
        timesteps = torch.randint(
            scheduler.config.num_train_timesteps, (recipe.batch_size,), generator=generator
        )
        noisy = scheduler.add_noise(model_input, noise, timesteps)
        hidden = encoder(ids)[0]
        pred = unet(noisy, timesteps, encoder_hidden_states=hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        torch.autograd.backward(loss)
        if clip:  # textual_inversion.py does not clip; the project's trainer does
            torch.nn.utils.clip_grad_norm_([table], 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            table[keep] = original[keep]
        float(loss.detach())
        stamps.append(time.perf_counter())
    return steps_per_second(stamps)


def bench_methods(
    family: Family,
    models: Path,
    images: tuple[Image.Image, ...],
    steps: int,
    rounds: int,
    *,
    clip: bool,
) -> None:
    kinds = ("lora", "textual_inversion", "pivotal", "plain inversion")
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    for round_ in range(rounds):
        for kind in kinds if round_ % 2 == 0 else tuple(reversed(kinds)):
            pipe = load_pipeline("tiny", family, "cpu", models_dir=models)
            if kind == "plain inversion":
                rates[kind].append(train_plain_inversion(pipe, family, images, steps, clip=clip))
            else:
                out = models / f"{kind}-{round_}.safetensors"
                rates[kind].append(train_project(pipe, family, images, steps, out, kind)[0])
            del pipe
    median = {kind: statistics.median(found) for kind, found in rates.items()}
    print(
        f"\n4. training methods: {steps} steps at batch {family.recipe.batch_size}, "
        f"{family.resolution}px; median of {rounds} runs each"
    )
    for kind in kinds:
        print(f"   {kind:<20}{median[kind]:8.2f} steps/s   {runs(rates[kind])}")
    ratio = median["textual_inversion"] / median["plain inversion"]
    clipped = ", clipped" if clip else ""
    print(
        f"   ratio inversion/plain{clipped} {ratio:6.3f}   "
        f"{verdict(ratio, TRAIN_GOAL, at_most=False)}"
    )
    fastest = max(kinds[:3], key=median.__getitem__)
    print(f"   fastest per step: {fastest}")


def train_plain_flux(
    pipe: Any, family: Family, images: tuple[Image.Image, ...], steps: int, out: Path
) -> tuple[float, Lora]:
    """train_dreambooth_lora_flux.py per step, latents and prompt cached: uniform
    sigmas, x_t = (1 - sigma) x + sigma noise, the velocity noise - x as the target."""
    recipe = family.recipe
    transformer, vae = pipe.transformer, pipe.vae
    generator = torch.Generator("cpu").manual_seed(1)
    latents = encode_latents(vae, images, generator)
    latents = latents - vae.config.shift_factor * vae.config.scaling_factor
    with torch.no_grad():
        hidden, pooled, text_ids = pipe.encode_prompt(
            f"a photo of {TRIGGER} person", prompt_2=None, max_sequence_length=t5_length(pipe)
        )
    hidden = hidden.expand(recipe.batch_size, -1, -1)
    pooled = pooled.expand(recipe.batch_size, -1)
    scheduler = FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config)  # type: ignore[no-untyped-call]
    batch, channels, height, width = recipe.batch_size, *latents.shape[1:]
    image_ids = FluxPipeline._prepare_latent_image_ids(
        batch, height // 2, width // 2, "cpu", torch.float32
    )
    guidance = torch.ones(batch)

    transformer.requires_grad_(False)
    torch.manual_seed(0)
    transformer.add_adapter(lora_config(family), adapter_name="plain")
    params = [p for p in transformer.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate)
    stamps: list[float] = []
    transformer.train()
    for _ in range(steps):
        index = torch.randint(len(latents), (batch,), generator=generator)
        model_input = latents[index]
        noise = torch.randn(model_input.shape, generator=generator)
        u = torch.randint(scheduler.config.num_train_timesteps, (batch,), generator=generator)
        sigmas = scheduler.sigmas[u].view(batch, 1, 1, 1)
        noisy = (1.0 - sigmas) * model_input + sigmas * noise
        packed = FluxPipeline._pack_latents(noisy, batch, channels, height, width)
        pred = transformer(
            hidden_states=packed,
            timestep=scheduler.timesteps[u] / 1000,
            guidance=guidance,
            pooled_projections=pooled,
            encoder_hidden_states=hidden,
            txt_ids=text_ids,
            img_ids=image_ids,
            return_dict=False,
        )[0]
        pred = FluxPipeline._unpack_latents(pred, height * 8, width * 8, 8)
        loss = F.mse_loss(pred.float(), (noise - model_input).float(), reduction="mean")
        torch.autograd.backward(loss)
        torch.nn.utils.clip_grad_norm_(params, 1.0)  # the script's --max_grad_norm 1.0
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())
        stamps.append(time.perf_counter())
    transformer.eval()
    path, sha256 = save_lora(pipe, "plain", out)
    transformer.delete_adapters("plain")
    return steps_per_second(stamps), Lora(path, sha256)


def bench_flux(models: Path, steps: int, rounds: int, gen_steps: int, gen_reps: int) -> None:
    family = FAMILIES["tiny-flux"]
    images = training_images(family.resolution)
    rates: dict[str, list[float]] = {"project": [], "plain": []}
    lora: Lora | None = None
    for round_ in range(rounds):
        for which in ("project", "plain") if round_ % 2 == 0 else ("plain", "project"):
            pipe = load_pipeline("tiny-flux", family, "cpu", models_dir=models)
            out = models / f"flux-{which}-{round_}.safetensors"
            if which == "project":
                rate, lora = train_project(pipe, family, images, steps, out)
            else:
                rate, _ = train_plain_flux(pipe, family, images, steps, out)
            rates[which].append(rate)
            del pipe
    assert lora is not None
    project = statistics.median(rates["project"])
    plain = statistics.median(rates["plain"])
    print(
        f"\n5. FLUX (tiny): training {steps} steps at batch {family.recipe.batch_size}, "
        f"{family.resolution}px; median of {rounds} runs each"
    )
    print(f"   project train()     {project:8.2f} steps/s   {runs(rates['project'])}")
    print(f"   plain diffusers+peft{plain:8.2f} steps/s   {runs(rates['plain'])}")
    print(
        f"   ratio project/plain {project / plain:8.3f}   "
        f"{verdict(project / plain, TRAIN_GOAL, at_most=False)}"
    )

    pipe = load_pipeline("tiny-flux", family, "cpu", models_dir=models)
    request = GenerationRequest(
        f"a photo of {TRIGGER} person", lora=lora.ref(), steps=gen_steps, guidance=3.5
    )
    plain_pipe = load_pipeline("tiny-flux", family, "cpu", models_dir=models)
    plain_pipe.load_lora_weights(str(lora.path), adapter_name="user")

    def plain_call(seed: int) -> None:
        plain_pipe(
            request.prompt,
            num_inference_steps=gen_steps,
            guidance_scale=3.5,
            generator=torch.Generator("cpu").manual_seed(seed),
            max_sequence_length=t5_length(plain_pipe),
            width=family.resolution,
            height=family.resolution,
        )

    times: dict[str, list[float]] = {"project": [], "plain": []}
    for rep in range(gen_reps + 1):
        project_s = timed(lambda rep=rep: generate(pipe, replace(request, seed=rep)))
        plain_s = timed(lambda rep=rep: plain_call(rep))
        if rep:  # the first of each is a warm-up
            times["project"].append(project_s)
            times["plain"].append(plain_s)
    project_s = statistics.median(times["project"])
    plain_s = statistics.median(times["plain"])
    print(
        f"   generation, {gen_steps} steps, 1 image with the LoRA; median of {gen_reps} "
        "after a warm-up"
    )
    print(f"   project generate()  {project_s:8.3f} s      {spread(times['project'])}")
    print(f"   plain pipe()        {plain_s:8.3f} s      {spread(times['plain'])}")
    print(
        f"   ratio project/plain {project_s / plain_s:8.3f}   "
        f"{verdict(project_s / plain_s, GEN_GOAL, at_most=True)}"
    )


def train_plain(
    pipe: Any,
    family: Family,
    images: tuple[Image.Image, ...],
    steps: int,
    out: Path,
    *,
    clip: bool = False,
) -> tuple[float, Lora]:
    """The textbook loop: what diffusers' train_dreambooth_lora.py does per step, cached."""
    recipe = family.recipe
    unet, vae = pipe.unet, pipe.vae
    generator = torch.Generator("cpu").manual_seed(1)
    latents = encode_latents(vae, images, generator)
    with torch.no_grad():
        tokens = pipe.tokenizer(
            f"a photo of {TRIGGER} person",
            padding="max_length",
            max_length=pipe.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids
        hidden = pipe.text_encoder(tokens)[0]
    batch_hidden = hidden.expand(recipe.batch_size, -1, -1)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)  # type: ignore[no-untyped-call]

    unet.requires_grad_(False)
    torch.manual_seed(0)
    unet.add_adapter(lora_config(family), adapter_name="plain")
    params = [p for p in unet.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate)
    stamps: list[float] = []
    unet.train()
    for _ in range(steps):
        index = torch.randint(len(latents), (recipe.batch_size,), generator=generator)
        model_input = latents[index]
        noise = torch.randn(model_input.shape, generator=generator)
        timesteps = torch.randint(
            scheduler.config.num_train_timesteps, (recipe.batch_size,), generator=generator
        )
        noisy = scheduler.add_noise(model_input, noise, timesteps)
        pred = unet(noisy, timesteps, encoder_hidden_states=batch_hidden, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        torch.autograd.backward(loss)
        if clip:  # as train_dreambooth_lora.py's --max_grad_norm 1.0 (the project clips too)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # what a progress report reads; the project's trainer does the same
        stamps.append(time.perf_counter())
    unet.eval()
    path, sha256 = save_lora(pipe, "plain", out)
    unet.delete_adapters("plain")
    return steps_per_second(stamps), Lora(path, sha256)


# --- 1. generation ----------------------------------------------------------------------


STYLE_WEIGHTS = (0.9, 0.7)  # the talk's face + IKEA mix
STYLE_WORDS = ("ikea", "ghibli")  # short: the tiny tokenizer spells prompts out, 77 tokens
STRENGTH = 0.6
EDIT_STRENGTH = 0.95


@dataclass(frozen=True, slots=True)
class Scenario:
    """One kind of generation, done by the engine and by plain diffusers alike."""

    label: str
    request: ImagineRequest  # what the engine is sent (seed replaced per repetition)
    files: dict[str, Any]  # the command's files besides out_dir
    plain: Callable[[int], float]  # seed -> seconds of the plain diffusers call


def generate_command(scenario: Scenario, seed: int, job_id: int, out_dir: Path) -> GenerateCommand:
    request = replace(scenario.request, seed=seed)
    files = {**scenario.files, "out_dir": str(out_dir)}
    return {"op": "generate", "job_id": job_id, "request": encode(request), "files": files}  # type: ignore[typeddict-item]


def bench_request(lora: Lora, steps: int, **kw: Any) -> ImagineRequest:
    return ImagineRequest(
        PROMPT,
        steps=steps,
        guidance=GUIDANCE,
        model=ModelRef(blob="bench", sha256=lora.sha256, trigger=TRIGGER, version=1),
        **kw,
    )


async def engine_generate(engine: EngineProcess, command: GenerateCommand) -> tuple[float, float]:
    """Seconds from sending a generate command to its `done` event, and of those the
    seconds the engine reports inside the pipeline call."""
    start = time.perf_counter()
    await engine.send(command)
    while True:
        event = await engine.next_event()
        if event.get("job_id") != command["job_id"]:
            continue
        if event["event"] == "done" and "generated" in event:
            return time.perf_counter() - start, event["generated"]["seconds"]
        if event["event"] in ("failed", "stopped"):
            raise RuntimeError(f"engine job {command['job_id']}: {event}")


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def plain_scenarios(
    pipe: Any, loras: list[Lora], source: Path, mask: Path, steps: int, size: int
) -> dict[str, Callable[[int], float]]:
    """The plain diffusers calls: text-to-image with the LoRA, img2img with it (the
    pipeline made by from_pipe, as a diffusers user would), and the LoRA mixed with two
    styles by `set_adapters` weights. Each sets its adapters before it is timed."""
    pipe.load_lora_weights(str(loras[0].path), adapter_name="bench")
    pipe.load_lora_weights(str(loras[1].path), adapter_name="style_a")
    pipe.load_lora_weights(str(loras[2].path), adapter_name="style_b")
    img2img = AutoPipelineForImage2Image.from_pipe(pipe)
    inpaint = AutoPipelineForInpainting.from_pipe(pipe)
    controlled = AutoPipelineForText2Image.from_pipe(pipe, controlnet=tiny_controlnet(pipe))
    for made in (img2img, inpaint, controlled):
        made.set_progress_bar_config(disable=True)
    with Image.open(source) as opened:
        picture = opened.convert("RGB")
    with Image.open(mask) as opened:
        repaint = opened.convert("L")
    common = {
        "num_inference_steps": steps,
        "guidance_scale": GUIDANCE,
        "num_images_per_prompt": 1,
        "output_type": "pil",
    }

    def seeded(seed: int) -> dict[str, Any]:
        return {**common, "generator": [torch.Generator("cpu").manual_seed(seed)]}

    def text(seed: int) -> float:
        pipe.set_adapters(["bench"], adapter_weights=[1.0])
        return timed(lambda: pipe(prompt=PROMPT, width=size, height=size, **seeded(seed)))

    def image(seed: int) -> float:
        pipe.set_adapters(["bench"], adapter_weights=[1.0])
        return timed(
            lambda: img2img(prompt=PROMPT, image=picture, strength=STRENGTH, **seeded(seed))
        )

    def edit(seed: int) -> float:
        pipe.set_adapters(["bench"], adapter_weights=[1.0])
        return timed(
            lambda: inpaint(
                prompt=PROMPT,
                image=picture,
                mask_image=repaint,
                strength=EDIT_STRENGTH,
                width=size,
                height=size,
                **seeded(seed),
            )
        )

    def edges(seed: int) -> float:
        pipe.set_adapters(["bench"], adapter_weights=[1.0])
        return timed(
            lambda: controlled(
                prompt=PROMPT,
                image=canny_edges(picture, size, size),
                width=size,
                height=size,
                **seeded(seed),
            )
        )

    mixed_prompt = ", ".join([PROMPT, *STYLE_WORDS])

    def mix(seed: int) -> float:
        pipe.set_adapters(["bench", "style_a", "style_b"], adapter_weights=[1.0, *STYLE_WEIGHTS])
        return timed(lambda: pipe(prompt=mixed_prompt, width=size, height=size, **seeded(seed)))

    return {"text": text, "image": image, "edit": edit, "edges": edges, "mix": mix}


def scenarios(
    pipe: Any, loras: list[Lora], source: Path, mask: Path, steps: int, size: int
) -> list[Scenario]:
    plain = plain_scenarios(pipe, loras, source, mask, steps, size)
    lora_files = {"lora": str(loras[0].path)}
    styles = tuple(
        StyleRef(f"style{n}", "bench", lora.sha256, weight, words)
        for n, (lora, weight, words) in enumerate(
            zip(loras[1:3], STYLE_WEIGHTS, STYLE_WORDS, strict=True)
        )
    )
    return [
        Scenario("text-to-image", bench_request(loras[0], steps), lora_files, plain["text"]),
        Scenario(
            f"image-to-image, strength {STRENGTH:g}",
            bench_request(loras[0], steps, source="bench", strength=STRENGTH),
            {**lora_files, "source": str(source)},
            plain["image"],
        ),
        Scenario(
            f"inpainting, strength {EDIT_STRENGTH:g}",
            bench_request(loras[0], steps, source="bench", mask="bench", strength=EDIT_STRENGTH),
            {**lora_files, "source": str(source), "mask": str(mask)},
            plain["edit"],
        ),
        Scenario(
            "edge control (tiny ControlNet)",
            bench_request(loras[0], steps, edges="bench"),
            {**lora_files, "edges": str(source)},
            plain["edges"],
        ),
        Scenario(
            f"two-style mix {STYLE_WEIGHTS[0]:g}/{STYLE_WEIGHTS[1]:g}",
            bench_request(loras[0], steps, styles=styles),
            {**lora_files, "styles": [str(lora.path) for lora in loras[1:3]]},
            plain["mix"],
        ),
    ]


@dataclass
class Times:
    engine: list[float]
    inside: list[float]
    plain: list[float]


async def bench_generation(
    options: EngineOptions, cases: list[Scenario], reps: int, work: Path
) -> tuple[dict[str, Times], float]:
    engine = EngineProcess(options)
    started = time.perf_counter()
    await engine.start()
    startup = time.perf_counter() - started
    times: dict[str, Times] = {}
    job_id = 0
    try:
        for case in cases:
            found = times[case.label] = Times([], [], [])
            # rep 0 is the warm-up of each (the engine loads the LoRAs, builds img2img).
            for rep in range(reps + 1):
                job_id += 1
                command = generate_command(case, rep, job_id, work / f"gen-{job_id}")
                engine_s, inside_s = await engine_generate(engine, command)
                plain_s = case.plain(rep)
                if rep:
                    found.engine.append(engine_s)
                    found.inside.append(inside_s)
                    found.plain.append(plain_s)
    finally:
        await engine.stop()
    return times, startup


def half_mask(size: int, out: Path) -> Path:
    """The inpainting mask: the left half white (repainted)."""
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (0, 0, size // 2, size))
    mask.save(out)
    return out


def noise_picture(size: int, out: Path) -> Path:
    """The image-to-image source: seeded noise at the model's size, as a PNG."""
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(out)
    return out


# --- LoRA files --------------------------------------------------------------------------


def random_lora(pipe: Any, family: Family, seed: int, out: Path) -> Lora:
    """A LoRA file of the family's shape with random weights, as training would write it.

    Made without training, so that the timings before the training part run in a
    process whose heap no training has churned yet (that alone slows a later plain
    generation by about 10% here).
    """
    name = f"random{seed}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(lora_config(family), adapter_name=name)
        with torch.no_grad():
            for key, param in pipe.unet.named_parameters():
                if f"lora_B.{name}" in key:
                    param.normal_(0.0, 0.01)  # peft starts B at zero
    path, sha256 = save_lora(pipe, name, out)
    pipe.unet.delete_adapters(name)
    return Lora(path, sha256)


# --- 2. switching -----------------------------------------------------------------------


def bench_switch(
    pipe: Pipeline, a: Lora, b: Lora, colds: list[Lora], reps: int
) -> tuple[list[float], list[float]]:
    cache = LoraCache(pipe)
    cache.activate(a.ref())
    cache.activate(b.ref())
    hot: list[float] = []
    for _ in range(reps):
        for lora in (a, b):
            start = time.perf_counter()
            cache.activate(lora.ref())
            hot.append(time.perf_counter() - start)
    cold: list[float] = []
    for lora in colds:
        start = time.perf_counter()
        cache.activate(lora.ref())
        cold.append(time.perf_counter() - start)
        cache.evict(lora.sha256)  # untimed: the cache keeps holding just a and b
    cache.clear()
    return hot, cold


def bench_prefetch(pipe: Pipeline, colds: list[Lora], passes: int) -> dict[str, list[float]]:
    """Seconds of a cold load of each of `colds`, `passes` times: the plain library call,
    the cache reading the file, the cache taking it read ahead; and the read ahead itself."""
    times: dict[str, list[float]] = {"plain": [], "file": [], "ahead": [], "read": []}
    cache = LoraCache(pipe)
    prefetcher = Prefetcher(pin=torch.cuda.is_available())
    for _ in range(passes):
        for lora in colds:
            start = time.perf_counter()
            pipe.load_lora_weights(str(lora.path), adapter_name="plain")
            pipe.set_adapters(["plain"], adapter_weights=[1.0])
            times["plain"].append(time.perf_counter() - start)
            pipe.delete_adapters("plain")

            cache.prefetched = None
            times["file"].append(timed(lambda lora=lora: cache.activate(lora.ref())))
            cache.evict(lora.sha256)

            cache.prefetched = prefetcher
            prefetcher.request([(lora.path, lora.sha256)])
            prefetcher.settle()  # untimed: done while another job denoises
            times["ahead"].append(timed(lambda lora=lora: cache.activate(lora.ref())))
            cache.evict(lora.sha256)
            times["read"].append(
                timed(lambda lora=lora: read_model(lora.path, lora.sha256, pin=prefetcher.pin))
            )
    assert cache.reads == len(times["file"])  # every prefetched load skipped the file
    prefetcher.close()
    cache.clear()
    return times


def print_prefetch(times: dict[str, list[float]], colds: list[Lora]) -> None:
    size = colds[0].path.stat().st_size / 1e6
    print(f"   cold load three ways, {len(colds)} files of {size:.2f} MB, median")
    labels = {
        "plain": "plain load_lora_weights",
        "file": "activate, file         ",
        "ahead": "activate, read ahead   ",
        "read": "the read ahead itself  ",
    }
    for key, label in labels.items():
        where = "(prefetch thread)" if key == "read" else f"n={len(times[key])}"
        print(f"     {label} {median_ms(times[key]):8.2f} ms   {where}")
    ahead, file, plain = (statistics.median(times[key]) for key in ("ahead", "file", "plain"))
    print(f"     ratio read ahead/file  {ahead / file:8.3f}   read ahead/plain {ahead / plain:.3f}")


# --- the run ----------------------------------------------------------------------------


def verdict(ratio: float, goal: float, *, at_most: bool) -> str:
    ok = ratio <= goal if at_most else ratio >= goal
    return f"goal {'<=' if at_most else '>='} {goal:.2f}: {'met' if ok else 'NOT met'}"


def run_tiny(args: argparse.Namespace) -> int:
    began = time.perf_counter()
    family = FAMILIES["tiny"]
    print(
        f"selfiebooth engine bench: tiny model on cpu, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} cpus, {platform.python_version()}"
    )
    if args.flux_only:
        with tempfile.TemporaryDirectory(prefix="selfiebooth-bench-") as tmp:
            bench_flux(
                Path(tmp), args.train_steps, args.train_rounds, args.gen_steps, args.gen_reps
            )
        print(f"\ntotal {time.perf_counter() - began:.1f} s")
        return 0
    if args.switch_only:
        with tempfile.TemporaryDirectory(prefix="selfiebooth-bench-") as tmp:
            work = Path(tmp)
            scratch = load_pipeline("tiny", family, "cpu", models_dir=work / "models")
            loras = [
                random_lora(scratch, family, n, work / f"lora-{n}.safetensors") for n in range(7)
            ]
            hot, cold = bench_switch(scratch, loras[0], loras[1], loras[2:], args.switch_reps)
            print(f"\n2. LoRA switch on {family.name} (rank {family.recipe.rank}), median")
            print(f"   loaded, alternating {median_ms(hot):8.2f} ms       n={len(hot)}")
            print(f"   cold, new file      {median_ms(cold):8.2f} ms       n={len(cold)}")
            print_prefetch(bench_prefetch(scratch, loras[2:], args.switch_passes), loras[2:])
        print(f"\ntotal {time.perf_counter() - began:.1f} s")
        return 0
    if args.methods_only:
        with tempfile.TemporaryDirectory(prefix="selfiebooth-bench-") as tmp:
            images = training_images(family.resolution)
            bench_methods(
                family,
                Path(tmp),
                images,
                args.train_steps,
                args.train_rounds,
                clip=args.plain_clip,
            )
        print(f"\ntotal {time.perf_counter() - began:.1f} s")
        return 0
    with tempfile.TemporaryDirectory(prefix="selfiebooth-bench-") as tmp:
        work = Path(tmp)
        # The engine runs `python -m engine.worker`: from inside bench/ that would find this file.
        os.chdir(work)
        models = work / "models"
        images = training_images(family.resolution)
        scratch = load_pipeline("tiny", family, "cpu", models_dir=models)
        loras = [random_lora(scratch, family, n, work / f"lora-{n}.safetensors") for n in range(7)]
        del scratch

        # Generation first, while this process is fresh (see random_lora).
        pipe = load_pipeline("tiny", family, "cpu", models_dir=models)
        size = int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        source = noise_picture(size, work / "source.png")
        certificate, key = development_pair(work / "provenance")
        options = EngineOptions("tiny", "auto", models, certificate, key, device="cpu")
        mask = half_mask(size, work / "mask.png")
        cases = scenarios(pipe, loras, source, mask, args.gen_steps, size)
        times, startup = asyncio.run(bench_generation(options, cases, args.gen_reps, work))
        print(
            f"\n1. generation: {args.gen_steps} steps, 1 image, {family.resolution}px, "
            f"guidance {GUIDANCE:g}, with a LoRA; median of {args.gen_reps} after a warm-up"
        )
        for case in cases:
            found = times[case.label]
            engine_s = statistics.median(found.engine)
            plain_s = statistics.median(found.plain)
            print(f"   {case.label}")
            print(f"     engine subprocess   {engine_s:8.3f} s      {spread(found.engine)}")
            outside = [e - i for e, i in zip(found.engine, found.inside, strict=True)]
            print(
                f"       of which in pipe  {statistics.median(found.inside):8.3f} s      "
                f"outside it (protocol, LoRA check, PNG, file) {median_ms(outside):.1f} ms"
            )
            print(f"     plain diffusers     {plain_s:8.3f} s      {spread(found.plain)}")
            print(
                f"     ratio engine/plain  {engine_s / plain_s:8.3f}   "
                f"{verdict(engine_s / plain_s, GEN_GOAL, at_most=True)}"
            )
        print(f"   (engine start to ready: {startup:.2f} s, not in the figures)")

        del pipe
        pipe = load_pipeline("tiny", family, "cpu", models_dir=models)
        hot, cold = bench_switch(pipe, loras[0], loras[1], loras[2:], args.switch_reps)
        del pipe
        print(
            f"\n2. LoRA switch, LoraCache.activate on {family.name} (rank {family.recipe.rank}), "
            "median"
        )
        print(f"   loaded, alternating {median_ms(hot):8.2f} ms       n={len(hot)}")
        print(f"   cold, new file      {median_ms(cold):8.2f} ms       n={len(cold)}")
        print(f"   ratio cold/loaded   {statistics.median(cold) / statistics.median(hot):8.1f}")
        pipe = load_pipeline("tiny", family, "cpu", models_dir=models)
        print_prefetch(bench_prefetch(pipe, loras[2:], args.switch_passes), loras[2:])
        del pipe

        # Training last; the two alternate A B B A ... so drift hits both alike.
        rates: dict[str, list[float]] = {"project": [], "plain": []}
        for round_ in range(args.train_rounds):
            order = ("project", "plain") if round_ % 2 == 0 else ("plain", "project")
            for which in order:
                pipe = load_pipeline("tiny", family, "cpu", models_dir=models)
                out = work / f"{which}-{round_}.safetensors"
                if which == "project":
                    rate, _ = train_project(pipe, family, images, args.train_steps, out)
                else:
                    rate, _ = train_plain(
                        pipe, family, images, args.train_steps, out, clip=args.plain_clip
                    )
                rates[which].append(rate)
                del pipe
        project = statistics.median(rates["project"])
        plain = statistics.median(rates["plain"])
        print(
            f"\n3. training: {args.train_steps} steps at batch {family.recipe.batch_size}, "
            f"{family.resolution}px; median of {args.train_rounds} runs each"
        )
        print(f"   project train()     {project:8.2f} steps/s   {runs(rates['project'])}")
        label = "plain, clipped     " if args.plain_clip else "plain diffusers+peft"
        print(f"   {label}{plain:8.2f} steps/s   {runs(rates['plain'])}")
        print(
            f"   ratio project/plain {project / plain:8.3f}   "
            f"{verdict(project / plain, TRAIN_GOAL, at_most=False)}"
        )
        bench_methods(
            family, models, images, args.train_steps, args.train_rounds, clip=args.plain_clip
        )
        bench_flux(models, args.train_steps, args.train_rounds, args.gen_steps, args.gen_reps)
    print(f"\ntotal {time.perf_counter() - began:.1f} s")
    return 0


def runs(rates: list[float]) -> str:
    return "runs " + ", ".join(f"{r:.2f}" for r in rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--gen-steps", type=int, default=30, help="denoising steps (30)")
    parser.add_argument("--gen-reps", type=int, default=7, help="timed generations (7)")
    parser.add_argument("--train-steps", type=int, default=40, help="steps per training (40)")
    parser.add_argument("--train-rounds", type=int, default=4, help="trainings of each (4)")
    parser.add_argument(
        "--plain-clip",
        action="store_true",
        help="clip gradients in the plain training loop too (the project's trainer does)",
    )
    parser.add_argument("--switch-reps", type=int, default=20, help="a/b switches (20)")
    parser.add_argument(
        "--methods-only", action="store_true", help="only part 4: the training methods"
    )
    parser.add_argument("--flux-only", action="store_true", help="only part 5: FLUX")
    parser.add_argument(
        "--switch-only", action="store_true", help="only part 2: LoRA switch and prefetch"
    )
    parser.add_argument(
        "--switch-passes", type=int, default=4, help="cold loads of each file, each way (4)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of this process and of the engine (1; 0: torch's default)",
    )
    parser.add_argument(
        "--full", choices=("sd15", "sdxl", "flux"), help="full-size architecture on a CUDA GPU"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --full: check the configs, no GPU needed"
    )
    parser.add_argument(
        "--full-train-steps", type=int, default=30, help="with --full: training steps (30)"
    )
    parser.add_argument(
        "--full-gen-reps", type=int, default=3, help="with --full: timed generations (3)"
    )
    args = parser.parse_args(argv)
    if args.dry_run and not args.full:
        parser.error("--dry-run goes with --full")
    if args.train_steps < 2 or args.gen_reps < 1 or args.train_rounds < 1:
        parser.error("need --train-steps >= 2, --gen-reps >= 1 and --train-rounds >= 1")
    if args.threads and (not args.full or args.dry_run):
        # On a shared CPU, several threads per process can run many times slower than one
        # (OpenMP workers spin-waiting on cores another process holds). The engine
        # subprocess inherits the variables and so runs with as many as this process.
        torch.set_num_threads(args.threads)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
    if args.full:
        from _full import run_full

        return run_full(
            args.full,
            dry_run=args.dry_run,
            train_steps=args.full_train_steps,
            gen_steps=args.gen_steps,
            gen_reps=args.full_gen_reps,
        )
    return run_tiny(args)


if __name__ == "__main__":
    sys.exit(main())
