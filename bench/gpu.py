"""The engine's speed on a GPU, family by family, side by side with diffusers' own recipes.

For each family (SD1.5, SDXL, FLUX.1-dev: the full-size architectures with random
weights, built on the GPU by bench/_full.py; the arithmetic does not depend on the
weights) one run prints, as it goes:

1. Training, optimiser steps/s and peak memory, over `--train-steps` steps:
   - the baseline, a loop written here as diffusers' DreamBooth-LoRA examples train:
     autocast in the family's half precision, the photo encoded by the VAE at every step
     (and, for SD, the caption by the text encoders), batch 1, torch's default AdamW,
     no compile;
   - the engine's `engine.training.train`: latents and captions encoded once, fused
     AdamW, SDPA, gradient checkpointing as configured by default.
   And the wall time of the family's default face recipe for `--photos` photos, projected
   from each rate.
2. Pictures with a user's LoRA at the family's resolution and steps:
   - the baseline, a plain pipeline that loads the user's LoRA per request
     (`load_lora_weights`) and unloads it after (`unload_lora_weights`);
   - the engine's `generate` through its LoRA cache; on CUDA with the denoiser compiled
     and users hotswapped into one slot (engine.models.speed, engine.generation.hotswap),
     the compile's one-off cost printed apart. Cold: the first picture of a user whose
     LoRA is not loaded; hot: the next one.
   - The LoRA switch, p50 ms: activating another user's LoRA that the engine holds.
3. Several users at once, each with their own LoRA, images/s: the baseline one after the
   other, the engine one after the other, and the engine's one denoising batch
   (engine.generation.together); with the largest pixel difference between a batched
   picture and the same request made alone, and whether the same seed gives the same
   picture twice.

The headline, from the last selfie accepted to the first picture, is projected as the
engine's recipe wall time plus its cold picture (the engine already running).

On a machine without CUDA, `--tiny` runs the same code on the tiny models on the CPU:
it checks the script, and its figures say nothing about a GPU.

Usage (from the repository root):
    python bench/gpu.py [--family sd15 sdxl flux] [--train-steps 30] [--users 1 4 8]
    python bench/gpu.py --tiny
"""

from __future__ import annotations

import sys
from pathlib import Path

# As in bench/engine.py: keep this folder from hiding the `engine` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [
    str(_BENCH.parent),
    *(p for p in sys.path if Path(p or ".").resolve() != _BENCH),
    str(_BENCH),
]

import argparse  # noqa: E402
import io  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager, nullcontext  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _full import FULL_FAMILIES, assemble, build_full  # noqa: E402
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline  # noqa: E402
from peft import LoraConfig  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from engine.generation import GenerationRequest, LoraCache, LoraRef, generate  # noqa: E402
from engine.generation.hotswap import HotswapCache  # noqa: E402
from engine.generation.together import generate_together  # noqa: E402
from engine.models.families import FAMILIES, Family, dtype_for  # noqa: E402
from engine.models.loader import load_pipeline  # noqa: E402
from engine.models.pipeline import Pipeline, denoiser, is_flux, t5_length  # noqa: E402
from engine.models.speed import compile_denoiser, compiled  # noqa: E402
from engine.training import TrainingRequest, file_sha256, train  # noqa: E402

TRIGGER = "sbx7"
PROMPT = f"a photo of {TRIGGER} person as an astronaut, studio lighting"
# The goals' settings: SD1.5 25 steps, SDXL 30, FLUX.1-dev 28 (its family default).
GEN_STEPS = {"sd15": 25, "sdxl": 30, "flux": 28, "tiny": 4, "tiny-flux": 4}


# --- measuring helpers -------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def peak(device: torch.device, into: list[float]) -> Iterator[None]:
    """Appends the peak GPU memory (GiB) reached inside the block; 0 on a CPU."""
    if device.type == "cuda":
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    into.append(torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0)


def timed(device: torch.device, call: Callable[[], object]) -> float:
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


def rate(stamps: list[float]) -> float:
    """Steps per second from the end of the first step to the end of the last."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")


def photos(resolution: int, count: int) -> tuple[Image.Image, ...]:
    rng = np.random.default_rng(0)
    return tuple(
        Image.fromarray(rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8))
        for _ in range(count)
    )


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


# --- 1. training ---------------------------------------------------------------------------


def train_baseline(pipe: Any, family: Family, images: tuple[Image.Image, ...], steps: int) -> float:
    """diffusers' DreamBooth-LoRA example's step: encode, noise, predict, AdamW. Steps/s."""
    net = denoiser(pipe)
    device, dtype = net.device, net.dtype
    flux = is_flux(pipe)
    recipe = family.recipe
    pictures = [
        torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
        for img in images
    ]
    scheduler_class = FlowMatchEulerDiscreteScheduler if flux else DDPMScheduler
    scheduler = scheduler_class.from_config(pipe.scheduler.config)  # type: ignore[no-untyped-call]
    caption = f"a photo of {TRIGGER} person"
    autocast = (
        torch.autocast("cuda", dtype=dtype)
        if device.type == "cuda" and dtype != torch.float32
        else nullcontext()
    )
    hidden: Any = None
    pooled: Any = None
    if flux:  # the FLUX script encodes a fixed instance prompt once
        with torch.no_grad():
            hidden, pooled, _ = pipe.encode_prompt(
                caption, prompt_2=None, max_sequence_length=t5_length(pipe)
            )

    net.requires_grad_(False)
    torch.manual_seed(0)
    targets = list(family.lora_targets)
    config = LoraConfig(r=recipe.rank, lora_alpha=recipe.alpha, target_modules=targets)
    net.add_adapter(config, adapter_name="baseline")
    params = [p for p in net.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate)
    stamps: list[float] = []
    net.train()
    try:
        for step in range(steps):
            batch = pictures[step % len(pictures)][None].to(device, dtype)
            with autocast:
                with torch.no_grad():
                    latents = pipe.vae.encode(batch).latent_dist.sample()
                    if flux:
                        latents = latents - pipe.vae.config.shift_factor
                    latents = latents * pipe.vae.config.scaling_factor
                noise = torch.randn_like(latents)
                if flux:
                    pred, target = _flux_step(pipe, scheduler, latents, noise, hidden, pooled)
                else:
                    pred, target = _sd_step(pipe, scheduler, latents, noise, caption, family)
                loss = F.mse_loss(pred.float(), target.float())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            float(loss.detach())
            stamps.append(time.perf_counter())
    finally:
        net.eval()
        net.delete_adapters("baseline")
    return rate(stamps)


def _sd_step(
    pipe: Any, scheduler: Any, latents: torch.Tensor, noise: torch.Tensor, caption: str, f: Family
) -> tuple[torch.Tensor, torch.Tensor]:
    device = latents.device
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (1,), device=device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    kwargs: dict[str, Any] = {}
    with torch.no_grad():
        encoded = pipe.encode_prompt(caption, device, 1, False)
    if f.pipeline == "sdxl":
        res = f.resolution
        time_ids = torch.tensor([[res, res, 0, 0, res, res]], device=device, dtype=latents.dtype)
        kwargs["added_cond_kwargs"] = {"text_embeds": encoded[2], "time_ids": time_ids}
    pred = pipe.unet(noisy, timesteps, encoded[0], return_dict=False, **kwargs)[0]
    return pred, noise


def _flux_step(
    pipe: Any,
    scheduler: Any,
    latents: torch.Tensor,
    noise: torch.Tensor,
    hidden: torch.Tensor,
    pooled: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    _, channels, height, width = latents.shape
    index = torch.randint(scheduler.config.num_train_timesteps, (1,))
    sigma = scheduler.sigmas[index].to(latents.device, latents.dtype).view(1, 1, 1, 1)
    noisy = (1.0 - sigma) * latents + sigma * noise
    packed = FluxPipeline._pack_latents(noisy, 1, channels, height, width)
    ids = FluxPipeline._prepare_latent_image_ids(
        1, height // 2, width // 2, latents.device, latents.dtype
    )
    text_ids = torch.zeros(hidden.shape[1], 3, device=latents.device, dtype=latents.dtype)
    pred = pipe.transformer(
        hidden_states=packed,
        timestep=(scheduler.timesteps[index] / 1000).to(latents.device),
        guidance=torch.ones(1, device=latents.device),
        pooled_projections=pooled,
        encoder_hidden_states=hidden,
        txt_ids=text_ids,
        img_ids=ids,
        return_dict=False,
    )[0]
    scale = int(pipe.vae_scale_factor)
    pred = FluxPipeline._unpack_latents(pred, height * scale, width * scale, scale)
    return pred, noise - latents


def train_engine(
    pipe: Pipeline, family: Family, images: tuple[Image.Image, ...], steps: int, out: Path
) -> tuple[float, LoraRef]:
    stamps: list[float] = []

    def progress(step: int, total: int, loss: float, eta: float) -> None:
        stamps.append(time.perf_counter())  # after float(loss): the step has finished

    request = TrainingRequest(images, TRIGGER, out / "user0.safetensors", steps=steps)
    result = train(pipe, family, request, progress=progress)
    return rate(stamps), LoraRef(result.path, result.sha256, TRIGGER)


def users_of(first: LoraRef, count: int, out: Path) -> list[LoraRef]:
    """`count` users' LoRA files of the trained one's shape: its weights, perturbed."""
    with safe_open(str(first.path), framework="pt") as f:
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
        metadata = f.metadata() or {}
    refs = [first]
    for user in range(1, count):
        generator = torch.Generator().manual_seed(user)
        changed = {
            key: t + 0.01 * torch.randn(t.shape, generator=generator, dtype=torch.float32).to(t)
            for key, t in tensors.items()
        }
        path = out / f"user{user}.safetensors"
        save_file(changed, str(path), metadata=metadata)
        refs.append(LoraRef(path, file_sha256(path), TRIGGER))
    return refs


# --- 2 and 3. pictures ---------------------------------------------------------------------


def request(lora: LoraRef, steps: int, guidance: float, seed: int) -> GenerationRequest:
    return GenerationRequest(PROMPT, lora=lora, seed=seed, steps=steps, guidance=guidance)


def baseline_picture(pipe: Any, req: GenerationRequest) -> None:
    assert req.lora is not None
    pipe.load_lora_weights(str(req.lora.path), adapter_name="user")
    pipe(
        req.prompt,
        num_inference_steps=req.steps,
        guidance_scale=req.guidance,
        generator=torch.Generator("cpu").manual_seed(req.seed or 0),
        output_type="pil",
    )
    pipe.unload_lora_weights()


def bench_family(name: str, args: argparse.Namespace, device: torch.device, work: Path) -> None:
    family = FAMILIES[name]
    work.mkdir(parents=True, exist_ok=True)
    steps = args.gen_steps or GEN_STEPS[name]
    guidance = family.guidance if family.guidance is not None else 7.0
    started = time.perf_counter()
    if name in FULL_FAMILIES:
        parts = build_full(name, device, work)
        dtype = dtype_for(family, device)
        for module in parts.values():
            if isinstance(module, torch.nn.Module):
                module.to(dtype=dtype).eval().requires_grad_(False)
        pipe: Any = assemble(name, parts)
    else:
        pipe = load_pipeline(name, family, device, models_dir=work / "models")
    print(f"\n{name}: {family.resolution} px, built in {time.perf_counter() - started:.1f} s")

    # 1. training
    images = photos(family.resolution, 4)
    memory: list[float] = []
    try:
        with peak(device, memory):
            base_rate = train_baseline(pipe, family, images, args.train_steps)
        base_line = f"{base_rate:7.3f} steps/s, peak {memory[-1]:6.2f} GiB"
    except torch.OutOfMemoryError:
        base_rate, base_line = float("nan"), "out of memory"
    if device.type == "cuda":
        torch.cuda.empty_cache()
    with peak(device, memory):
        engine_rate, first = train_engine(pipe, family, images, args.train_steps, work)
    total = family.recipe.total_steps(args.photos)
    batch = family.recipe.batch_size
    # Photos per second: the baseline steps with one photo, the recipe with `batch`.
    base_photos, engine_photos = base_rate, engine_rate * batch
    print(f"  training, {args.train_steps} steps; the engine at the recipe's batch {batch}")
    print(f"    baseline  {base_line}")
    print(f"    engine    {engine_rate:7.3f} steps/s, peak {memory[-1]:6.2f} GiB")
    print(f"    engine/baseline {engine_photos / base_photos:.2f}x photos per second")
    recipe_s = total * batch / engine_photos
    print(
        f"    default face recipe, {args.photos} photos = {total} steps: "
        f"baseline {total * batch / base_photos:.0f} s, engine {recipe_s:.0f} s (projected)"
    )

    # 2. one picture
    users = users_of(first, max(args.users) + 2, work)
    fast = device.type == "cuda" and not args.no_compile
    cache: LoraCache = HotswapCache(pipe, family.recipe.rank) if fast else LoraCache(pipe)

    def engine_picture(user: LoraRef, seed: int) -> None:
        generate(pipe, request(user, steps, guidance, seed), adapters=cache)

    def engine_one_by_one(n: int) -> None:
        for seed, user in enumerate(users[:n]):
            engine_picture(user, seed)

    base = [
        timed(device, lambda: baseline_picture(pipe, request(users[0], steps, guidance, 0)))
        for _ in range(args.reps + 1)
    ][1:]  # the first is a warm-up
    with compiled(pipe, compile_denoiser(pipe, "auto") if fast else None):
        first_s = timed(device, lambda: engine_picture(users[-1], 0))
        cold_s = timed(device, lambda: engine_picture(users[0], 1))
        hot = [timed(device, lambda: engine_picture(users[0], 2)) for _ in range(args.reps)]
        switches = [timed(device, lambda i=i: cache.activate(users[i % 2])) for i in range(8)]
        one_by_one = {n: n / timed(device, lambda n=n: engine_one_by_one(n)) for n in args.users}
    cache.clear()
    print(f"  a picture, {steps} steps, with the user's LoRA")
    print(f"    baseline (load, generate, unload)  {statistics.median(base):7.3f} s")
    if fast:
        print(f"    engine, first picture (compiles)   {first_s:7.3f} s, once per engine start")
    print(f"    engine cold (LoRA not loaded)      {cold_s:7.3f} s")
    print(f"    engine hot                         {statistics.median(hot):7.3f} s")
    print(f"    LoRA switch p50                    {statistics.median(switches) * 1000:7.2f} ms")
    headline = recipe_s + cold_s
    print(f"  headline, last selfie to first picture: {headline:.0f} s (projected)")

    # 3. several users at once
    together_cache = LoraCache(pipe, capacity=max(args.users) + 2)
    print("  users at once, images/s: baseline one by one | engine one by one | engine batched")
    for n in args.users:
        reqs = [request(user, steps, guidance, 100 + i) for i, user in enumerate(users[:n])]

        def baseline_all(reqs: list[GenerationRequest] = reqs) -> None:
            for req in reqs:
                baseline_picture(pipe, req)

        def batched(reqs: list[GenerationRequest] = reqs) -> None:
            generate_together(pipe, reqs, adapters=together_cache)

        together_cache.clear()  # the baseline's unload takes every adapter out
        base_rate = n / timed(device, baseline_all)
        batched()  # a warm-up at this batch size
        batch_rate = n / timed(device, batched)
        print(
            f"    {n} users: {base_rate:6.3f} | {one_by_one[n]:6.3f} | {batch_rate:6.3f}"
            f"   batched/one-by-one {batch_rate / one_by_one[n]:.2f}x"
        )
    reqs = [request(user, steps, guidance, 7 + i) for i, user in enumerate(users[:2])]
    together = generate_together(pipe, reqs, adapters=together_cache)
    again = generate_together(pipe, reqs, adapters=together_cache)
    alone = [generate(pipe, req, adapters=together_cache) for req in reqs]
    worst = max(
        int(np.abs(pixels(t.images[0].png) - pixels(a.images[0].png)).max())
        for t, a in zip(together, alone, strict=True)
    )
    same = all(t.images[0].png == a.images[0].png for t, a in zip(together, again, strict=True))
    print(f"  batched vs alone: largest pixel difference {worst}/255; same seed twice: {same}")
    together_cache.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--family", nargs="+", choices=FULL_FAMILIES, default=list(FULL_FAMILIES))
    parser.add_argument("--tiny", action="store_true", help="the tiny models, on any device")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--gen-steps", type=int, default=0, help="0: the goal's steps")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--reps", type=int, default=3, help="timed hot pictures")
    parser.add_argument("--photos", type=int, default=10, help="for the recipe's wall time")
    parser.add_argument("--no-compile", action="store_true", help="the engine uncompiled")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        print("bench/gpu.py needs a CUDA GPU for the full-size models; --tiny runs on a CPU")
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    names = ["tiny", "tiny-flux"] if args.tiny else args.family
    where = torch.cuda.get_device_name(device) if cuda else "CPU (not a GPU figure)"
    print(f"bench/gpu.py on {where}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="selfiebooth-gpu-") as tmp:
        for name in names:
            bench_family(name, args, device, Path(tmp) / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
