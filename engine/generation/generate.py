"""Pictures with an optional per-user LoRA and style LoRAs: text-to-image and the
picture tools (image-to-image, inpainting, edge control, upscale); a prompt (and the
pictures attached) in, marked PNGs out.

The tools run the family's pipelines made from the loaded one (engine.generation.tools):
the same modules, and so the same adapters.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import ControlNetModel, FluxPipeline, UNet2DConditionModel
from PIL import Image

from engine.generation.adapters import LoraCache
from engine.generation.png import encode_png_with_metadata
from engine.generation.preview import latents_to_preview
from engine.generation.sizes import native_resolution, size_for, size_multiple
from engine.generation.spec import (
    MAX_IMAGES,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    LoraRef,
    PreviewFn,
    StepFn,
    StyleLora,
    check_request,
)
from engine.generation.tools import (
    canny_edges,
    edge_control,
    fit_mask,
    fit_source,
    image_to_image,
    inpainting,
)
from engine.models.pipeline import Pipeline, denoiser, is_flux, text_options
from engine.provenance import embed

__all__ = ["NO_CONTROLNET", "generate", "package", "preview_of", "with_styles", "with_trigger"]

NO_CONTROLNET = "edge control is not set up for this model: set model.controlnet"


def with_trigger(prompt: str, lora: LoraRef | None) -> str:
    """`prompt` with the LoRA's trigger word put in front when the user left it out."""
    if lora is None or re.search(rf"\b{re.escape(lora.trigger)}\b", prompt, re.IGNORECASE):
        return prompt
    return f"{lora.trigger} {lora.class_word}, {prompt}"


def with_styles(prompt: str, styles: Sequence[StyleLora]) -> str:
    """`prompt` followed by the trigger words of the styles in use (weight above 0) that
    it does not hold already."""
    words = [
        style.trigger.strip()
        for style in styles
        if style.weight > 0
        and style.trigger.strip()
        and style.trigger.strip().lower() not in prompt.lower()
    ]
    return ", ".join([prompt, *words])


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
    controlnet: ControlNetModel | None = None,
    inpainting_unet: UNet2DConditionModel | None = None,
) -> GenerationResult:
    """Generate `request.count` images; the same seed and parameters give the same images.

    With `watermark` (a job id), each image carries it as an invisible mark (engine.provenance)
    before it is encoded. `controlnet` is the family's, for edge control;
    `inpainting_unet` the deployment's dedicated inpainting UNet, if it has one.
    """
    check_request(request)
    adapters = adapters or LoraCache.for_pipeline(pipeline)
    adapters.activate(request.lora, request.styles)

    prompt = with_styles(with_trigger(request.prompt, request.lora), request.styles)
    flux = is_flux(pipeline)
    multiple = size_multiple(pipeline)
    width, height = size_for(native_resolution(pipeline), request.aspect_ratio, multiple)
    seed = request.seed if request.seed is not None else secrets.randbelow(2**32 - MAX_IMAGES)
    # CPU generators give the same noise on any device, so a seed means the same picture.
    generators = [torch.Generator("cpu").manual_seed(seed + i) for i in range(request.count)]
    # Tools that start from a picture denoise only the last int(steps * strength) steps.
    total = request.steps
    run = pipeline
    inputs: dict[str, Any] = {"width": width, "height": height}
    source = request.source
    if source is not None:
        total = min(int(request.steps * request.strength), request.steps)
        inputs = {"strength": request.strength}
        if request.upscale > 1:
            # Multiples of the latents' scale, as close to the factor as that allows.
            width, height = (side * request.upscale // multiple * multiple for side in source.size)
            inputs["image"] = source.convert("RGB").resize(
                (width, height), Image.Resampling.LANCZOS
            )
        else:
            inputs["image"] = fit_source(source, width, height)
        if request.mask is not None:
            run = inpainting(pipeline, inpainting_unet)
            if inpainting_unet is not None:
                adapters.sibling(run).activate(request.lora, request.styles)
            inputs |= {"mask_image": fit_mask(request.mask, width, height)}
            inputs |= {"width": width, "height": height}
        else:
            run = image_to_image(pipeline)
            if flux:  # FLUX's image-to-image sizes its latents by these, not the picture
                inputs |= {"width": width, "height": height}
    elif request.edges is not None:
        if controlnet is None:
            raise ValueError(NO_CONTROLNET)
        run = edge_control(pipeline, controlnet)
        inputs["image"] = canny_edges(request.edges, width, height)
    elif request.variation_seed is not None:
        inputs["latents"] = _variation_latents(pipeline, request, seed, width, height)

    def on_step_end(
        pipe: object, step: int, timestep: object, kwargs: dict[str, object]
    ) -> dict[str, object]:
        if progress is not None:
            progress(step + 1, total)
        done = step + 1
        latents = kwargs.get("latents")
        wanted = preview is not None and preview_every and done % preview_every == 0
        if wanted and done < total and isinstance(latents, torch.Tensor):
            assert preview is not None
            preview(done, preview_of(pipeline, latents, width, height))
        return kwargs

    started = time.monotonic()
    output = run(
        prompt=prompt,
        negative_prompt=request.negative_prompt or None,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        num_images_per_prompt=request.count,
        generator=generators,
        callback_on_step_end=on_step_end,
        output_type="pil",
        **text_options(pipeline),
        **inputs,
    )
    seconds = time.monotonic() - started
    return package(
        pipeline, request, output.images, prompt, seed, (width, height), seconds, watermark
    )


def package(
    pipeline: Pipeline,
    request: GenerationRequest,
    pictures: Sequence[object],
    prompt: str,
    seed: int,
    size: tuple[int, int],
    seconds: float,
    watermark: int | None,
) -> GenerationResult:
    """The request's pictures as marked PNGs carrying the parameters that made them."""
    width, height = size
    parameters: dict[str, str | int | float] = {
        "tool": request.tool,
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
        "styles": ", ".join(f"{style.name}:{style.weight:g}" for style in request.styles),
        "style_sha256": ", ".join(style.sha256 for style in request.styles),
    }
    if request.source is not None:
        parameters["strength"] = request.strength  # how much of the source was redrawn
    if request.upscale > 1:
        parameters["upscale"] = request.upscale
    images: list[GeneratedImage] = []
    for i, image in enumerate(pictures):
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
    so strength 0 gives back the varied picture itself; FLUX's packed into 2x2 patches
    after blending, as its pipeline packs its own.
    """
    assert request.variation_seed is not None
    scale = int(pipeline.vae_scale_factor)
    net = denoiser(pipeline)
    channels = int(net.config.in_channels)
    if is_flux(pipeline):
        channels //= 4
    shape = (1, channels, height // scale, width // scale)
    dtype = net.dtype

    def noise(s: int) -> torch.Tensor:
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s), dtype=dtype)

    base = noise(request.variation_seed)
    blended = [
        _slerp(base, noise(seed + i), request.variation_strength) for i in range(request.count)
    ]
    latents = torch.cat(blended)
    if is_flux(pipeline):
        latents = FluxPipeline._pack_latents(latents, request.count, channels, *shape[2:])
    return latents.to(net.device)


def preview_of(pipeline: Pipeline, latents: torch.Tensor, width: int, height: int) -> Image.Image:
    """A preview of the first picture of a batch, from its latents mid-run."""
    if is_flux(pipeline):
        return _flux_preview(pipeline, latents, height, width)
    scale = int(pipeline.vae_scale_factor)
    return latents_to_preview(latents, sdxl=_is_sdxl(pipeline), scale=scale)


def _flux_preview(
    pipeline: Pipeline, latents: torch.Tensor, height: int, width: int
) -> Image.Image:
    """The first picture of a FLUX batch decoded by the VAE: no fixed projection of its
    latent channels to RGB is known here, as there is for SD's four."""
    scale = int(pipeline.vae_scale_factor)
    vae = pipeline.vae
    first = FluxPipeline._unpack_latents(latents[:1], height, width, scale)
    first = first / vae.config.scaling_factor + vae.config.shift_factor
    decoded = vae.decode(first.to(vae.dtype), return_dict=False)[0]
    image = pipeline.image_processor.postprocess(decoded, output_type="pil")[0]  # type: ignore[attr-defined]
    if not isinstance(image, Image.Image):
        raise TypeError(f"the VAE gave a {type(image).__name__}, not a PIL image")
    return image


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
