"""Several users' pictures in one denoising batch, each with its own LoRA.

On a GPU the denoiser's big matmuls cost about the same for a batch of eight as for one,
so users who ask at the same moment share one run of the pipeline: the base layers see the
whole batch, and each LoRA layer adds its user's low-rank term to that user's rows only
(peft's mixed-adapter batches, `LoraLayer(x, adapter_names=[...])`). A row without a
LoRA runs the bare model ("__base__").

Only plain text-to-image requests with the same steps, guidance, size and negative prompt
share a batch; a request with styles, a picture to start from or a model with an embedding
(textual inversion, pivotal tuning) needs its own run. Each picture keeps its own seed's
noise (one CPU generator per row), so it matches the picture `generate` makes alone, to
the rounding of a batched matmul.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from peft.tuners.lora import LoraLayer

from engine.generation.adapters import LoraCache
from engine.generation.generate import package, preview_of, with_trigger
from engine.generation.sizes import native_resolution, size_for, size_multiple
from engine.generation.spec import (
    MAX_IMAGES,
    GenerationRequest,
    GenerationResult,
    PreviewFn,
    StepFn,
    check_request,
)
from engine.models.pipeline import Pipeline, denoiser, text_options

__all__ = ["BASE", "batch_key", "generate_together"]

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


def batch_key(request: GenerationRequest) -> tuple[object, ...] | None:
    """Requests with equal keys can share a batch; None: this one runs alone."""
    if (
        request.styles
        or request.source is not None
        or request.edges is not None
        or request.variation_seed is not None
    ):
        return None
    return (request.steps, request.guidance, request.aspect_ratio, request.negative_prompt)


@torch.no_grad()
def generate_together(
    pipeline: Pipeline,
    requests: Sequence[GenerationRequest],
    *,
    adapters: LoraCache | None = None,
    watermarks: Sequence[int | None] | None = None,
    progress: StepFn | None = None,
    previews: Sequence[PreviewFn | None] = (),
    preview_every: int = 0,
) -> list[GenerationResult]:
    """The results of `requests`, in order, made in one run of the pipeline.

    `progress` hears each step once for the whole batch; `previews[i]`, when given, gets
    a preview of request i's first picture every `preview_every` steps.
    """
    if not requests:
        return []
    keys = {batch_key(request) for request in requests}
    if None in keys or len(keys) > 1:
        raise ValueError(
            "only plain text-to-image requests with the same steps, guidance, aspect ratio "
            "and negative prompt share a batch"
        )
    for request in requests:
        check_request(request)
    marks = list(watermarks) if watermarks is not None else [None] * len(requests)
    if len(marks) != len(requests):
        raise ValueError(f"{len(marks)} watermarks for {len(requests)} requests")
    if previews and len(previews) != len(requests):
        raise ValueError(f"{len(previews)} preview callbacks for {len(requests)} requests")
    adapters = adapters or LoraCache.for_pipeline(pipeline)
    loras = {request.lora for request in requests}
    if len(loras) == 1:  # one adapter for every row: no per-row routing needed
        adapters.activate(requests[0].lora)
        names = [""] * len(requests)
    else:
        names = adapters.activate_each([request.lora for request in requests])

    first = requests[0]
    width, height = size_for(
        native_resolution(pipeline), first.aspect_ratio, size_multiple(pipeline)
    )
    prompts: list[str] = []
    rows: list[str] = []
    generators: list[torch.Generator] = []
    seeds: list[int] = []
    asked = [with_trigger(request.prompt, request.lora) for request in requests]
    for request, name, prompt in zip(requests, names, asked, strict=True):
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32 - MAX_IMAGES)
        seeds.append(seed)
        for i in range(request.count):
            prompts.append(prompt)
            rows.append(name or BASE)
            generators.append(torch.Generator("cpu").manual_seed(seed + i))

    negative = [first.negative_prompt] * len(prompts) if first.negative_prompt else None
    starts = [sum(request.count for request in requests[:i]) for i in range(len(requests))]

    def on_step_end(
        pipe: object, step: int, timestep: object, kwargs: dict[str, object]
    ) -> dict[str, object]:
        done = step + 1
        if progress is not None:
            progress(done, first.steps)
        latents = kwargs.get("latents")
        due = preview_every and done % preview_every == 0 and done < first.steps
        if due and isinstance(latents, torch.Tensor):
            for show, at in zip(previews, starts, strict=True):
                if show is not None:
                    show(done, preview_of(pipeline, latents[at : at + 1], width, height))
        return kwargs

    routed = _rows_use(pipeline, rows) if len(set(rows)) > 1 else contextlib.nullcontext()
    started = time.monotonic()
    with routed:
        output = pipeline(
            prompt=prompts,
            negative_prompt=negative,
            num_inference_steps=first.steps,
            guidance_scale=first.guidance,
            num_images_per_prompt=1,
            generator=generators,
            callback_on_step_end=on_step_end,
            output_type="pil",
            width=width,
            height=height,
            **text_options(pipeline),
        )
    seconds = time.monotonic() - started
    results = []
    at = 0
    for request, prompt, seed, mark in zip(requests, asked, seeds, marks, strict=True):
        pictures = output.images[at : at + request.count]
        at += request.count
        results.append(
            package(pipeline, request, pictures, prompt, seed, (width, height), seconds, mark)
        )
    return results


@contextlib.contextmanager
def _rows_use(pipeline: Pipeline, rows: list[str]) -> Iterator[None]:
    """Every LoRA layer of the denoiser runs row i of its input with adapter rows[i].

    A pipeline with classifier-free guidance runs the unconditional rows before the
    conditional ones, so a layer that sees twice the rows gives both halves the same
    adapters.
    """

    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        batch = args[0].shape[0] if args else kwargs["x"].shape[0]
        if batch % len(rows):
            raise RuntimeError(f"a LoRA layer saw {batch} rows in a batch of {len(rows)}")
        return args, {**kwargs, "adapter_names": rows * (batch // len(rows))}

    handles = [
        module.register_forward_pre_hook(hook, with_kwargs=True)
        for module in denoiser(pipeline).modules()
        if isinstance(module, LoraLayer) and isinstance(module, torch.nn.Module)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
