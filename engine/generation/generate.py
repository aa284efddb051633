"""Text-to-image with an optional per-user LoRA: prompt in, marked PNGs out."""

from __future__ import annotations

import re
import secrets
import time

import torch
from PIL import Image

from engine.generation.adapters import LoraCache
from engine.generation.png import encode_png_with_metadata
from engine.generation.preview import latents_to_preview
from engine.generation.sizes import native_resolution, size_for
from engine.generation.spec import (
    MAX_IMAGES,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    LoraRef,
    PreviewFn,
    StepFn,
    check_request,
)
from engine.models.pipeline import Pipeline
from engine.provenance import embed

__all__ = ["generate", "with_trigger"]


def with_trigger(prompt: str, lora: LoraRef | None) -> str:
    """`prompt` with the LoRA's trigger word put in front when the user left it out."""
    if lora is None or re.search(rf"\b{re.escape(lora.trigger)}\b", prompt, re.IGNORECASE):
        return prompt
    return f"{lora.trigger} {lora.class_word}, {prompt}"


@torch.no_grad()
def generate(
    pipeline: Pipeline,
    request: GenerationRequest,
    *,
    adapters: LoraCache | None = None,
    progress: StepFn | None = None,
    preview: PreviewFn | None = None,
    preview_every: int = 0,
    watermark: int | None = None,
) -> GenerationResult:
    """Generate `request.count` images; the same seed and parameters give the same images.

    With `watermark` (a job id), each image carries it as an invisible mark (engine.provenance)
    before it is encoded.
    """
    check_request(request)
    adapters = adapters or LoraCache.for_pipeline(pipeline)
    adapters.activate(request.lora)

    prompt = with_trigger(request.prompt, request.lora)
    width, height = size_for(native_resolution(pipeline), request.aspect_ratio)
    seed = request.seed if request.seed is not None else secrets.randbelow(2**32 - MAX_IMAGES)
    # CPU generators give the same noise on any device, so a seed means the same picture.
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(request.count)]
    latents = None
    if request.variation_seed is not None:
        latents = _variation_latents(pipeline, request, seed, width, height)

    def on_step_end(
        pipe: object, step: int, timestep: object, kwargs: dict[str, object]
    ) -> dict[str, object]:
        if progress is not None:
            progress(step + 1, request.steps)
        done = step + 1
        latents = kwargs.get("latents")
        wanted = preview is not None and preview_every and done % preview_every == 0
        if wanted and done < request.steps and isinstance(latents, torch.Tensor):
            assert preview is not None
            image = latents_to_preview(
                latents, sdxl=_is_sdxl(pipeline), scale=int(pipeline.vae_scale_factor)
            )
            preview(done, image)
        return kwargs

    started = time.monotonic()
    output = pipeline(
        prompt=prompt,
        negative_prompt=request.negative_prompt or None,
        width=width,
        height=height,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        num_images_per_prompt=request.count,
        generator=generators,
        latents=latents,
        callback_on_step_end=on_step_end,
        output_type="pil",
    )
    parameters: dict[str, str | int | float] = {
        "prompt": prompt,
        "negative_prompt": request.negative_prompt,
        "steps": request.steps,
        "guidance": request.guidance,
        "width": width,
        "height": height,
        "aspect_ratio": request.aspect_ratio,
        "base_model": str(pipeline.config.get("_name_or_path", "")),
        "lora_sha256": request.lora.sha256 if request.lora else "",
        "lora_scale": request.lora.scale if request.lora else 0.0,
    }
    seconds = time.monotonic() - started
    images: list[GeneratedImage] = []
    for i, image in enumerate(output.images):
        if not isinstance(image, Image.Image):
            raise TypeError(f"the pipeline returned a {type(image).__name__}, not a PIL image")
        if watermark is not None:
            image = embed(image, watermark)
        png = encode_png_with_metadata(image, {**parameters, "seed": seed + i})
        images.append(GeneratedImage(png, seed + i, width, height))
    return GenerationResult(tuple(images), prompt, {**parameters, "seed": seed}, seconds)


def _variation_latents(
    pipeline: Pipeline, request: GenerationRequest, seed: int, width: int, height: int
) -> torch.Tensor:
    """Starting noise between the varied picture's and each new seed's.

    Drawn exactly as the pipeline draws it (CPU generator, batch of one, the UNet's dtype),
    so strength 0 gives back the varied picture itself.
    """
    assert request.variation_seed is not None
    scale = int(pipeline.vae_scale_factor)
    shape = (1, int(pipeline.unet.config.in_channels), height // scale, width // scale)
    dtype = pipeline.unet.dtype

    def noise(s: int) -> torch.Tensor:
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=dtype)

    base = noise(request.variation_seed)
    blended = [
        _slerp(base, noise(seed + i), request.variation_strength) for i in range(request.count)
    ]
    return torch.cat(blended).to(pipeline.unet.device)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation: blended Gaussian noise keeps the norm the scheduler expects."""
    if t == 0:
        return a
    a32, b32 = a.float().flatten(), b.float().flatten()
    cos = torch.clamp(torch.dot(a32, b32) / (a32.norm() * b32.norm()), -1.0, 1.0)
    omega = torch.arccos(cos)
    if omega.abs() < 1e-4:
        mixed = (1 - t) * a.float() + t * b.float()
    else:
        mixed = (
            torch.sin((1 - t) * omega) * a.float() + torch.sin(t * omega) * b.float()
        ) / torch.sin(omega)
    return mixed.to(a.dtype)


def _is_sdxl(pipeline: Pipeline) -> bool:
    return type(pipeline).__name__.startswith("StableDiffusionXL")
