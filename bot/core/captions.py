"""Words the front ends show with results: the visible AI-generated statement of each picture.

One of three provenance marks (with the PNG metadata and the invisible watermark); every
front end sends it with every generated picture, so it lives in the core.
"""

from __future__ import annotations

from bot.core.types import Export

__all__ = ["export_caption", "image_caption", "samples_caption"]

# Telegram captions hold 1024 characters, Discord messages 2000; stay far below both.
_MAX_PROMPT = 200


def image_caption(job_id: int, prompt: str, *, withheld: int = 0) -> str:
    prompt = " ".join(prompt.split())
    if len(prompt) > _MAX_PROMPT:
        prompt = prompt[: _MAX_PROMPT - 1] + "…"
    caption = f"AI-generated image (selfiebooth job {job_id}): {prompt}"
    if withheld:
        caption += f"\n{withheld} picture(s) were withheld by the safety filter."
    return caption


def samples_caption(job_id: int) -> str:
    """The caption of a training's validation samples (its likeness was measured on them)."""
    return (
        f"AI-generated validation samples of your model (selfiebooth training job {job_id}): "
        "what its likeness was measured on."
    )


def export_caption(export: Export) -> str:
    """What a user is told with their model file, in either format (bot.core.exports)."""
    if export.format != "kohya":
        use = "as diffusers keeps it: load it with pipeline.load_lora_weights"
        if export.family_pipeline == "flux":
            use = (
                "a FLUX LoRA in the diffusers layout (FLUX models have no kohya file here): "
                "put it in ComfyUI's or Forge's LoRA folder, or load it in diffusers with "
                "pipeline.load_lora_weights"
            )
        if export.method != "lora":
            use += (
                f" and its embedding.* vectors with pipeline.load_textual_inversion"
                f" (token '{export.trigger_word}')"
            )
    elif export.method == "textual_inversion":
        use = (
            "an embedding: put it in the embeddings folder of AUTOMATIC1111, Forge or ComfyUI "
            "(in ComfyUI write 'embedding:" + export.trigger_word + "')"
        )
    elif export.method == "pivotal":
        use = (
            "in the kohya layout with your trigger's embedding inside: put it in the LoRA "
            "folder of AUTOMATIC1111 or Forge"
        )
    else:
        use = "in the kohya layout: put it in the LoRA folder of AUTOMATIC1111, Forge or ComfyUI"
    return (
        f"Your model, version {export.version}, {use}, and write '{export.trigger_word} person' "
        "in the prompt. It is a likeness of you: keep it private."
    )
