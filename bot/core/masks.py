"""Which part of a picture `/edit` repaints: a mask (white: repaint, black: keep) made
from the faces found in it, or one the user drew.

`face` is each face's box, widened to take in the hair, the ears and the chin, as an
ellipse. `background` is everything but the person: a coarse silhouette of a head and
shoulders under each face, reaching the bottom of the picture. Coarse is enough: the
inpainting blends at the edge, and a margin of the person redrawn reads as lighting.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFilter

from bot.core.types import BoothError
from engine.intake.faces import Face

__all__ = ["REGIONS", "drawn_mask", "region_mask"]

REGIONS = ("background", "face")

NO_FACE = (
    "I found no face in your picture, so I cannot tell {region} apart, and nothing was "
    "queued: use a picture where your face is clearly visible, or attach a mask (white "
    "where to repaint)."
)


def region_mask(size: tuple[int, int], faces: Sequence[Face], region: str) -> Image.Image:
    """The mask of `region` (one of REGIONS) for a picture of `size` with `faces`."""
    if region not in REGIONS:
        raise BoothError(
            f"There is no region {region!r} to repaint: one of {', '.join(REGIONS)}, "
            "or attach a mask."
        )
    if not faces:
        where = "your face" if region == "face" else "you from the background"
        raise BoothError(NO_FACE.format(region=where))
    person = Image.new("L", size, 0)
    draw = ImageDraw.Draw(person)
    for face in faces:
        left, top, right, bottom = face.box
        w, h = face.width, face.height
        if region == "face":
            draw.ellipse((left - 0.2 * w, top - 0.45 * h, right + 0.2 * w, bottom + 0.2 * h), 255)
            continue
        draw.ellipse((left - 0.35 * w, top - 0.7 * h, right + 0.35 * w, bottom + 0.35 * h), 255)
        cx = (left + right) / 2
        neck = bottom + 0.1 * h
        shoulders = bottom + 0.8 * h
        draw.polygon(
            [
                (cx - 0.45 * w, neck),
                (cx + 0.45 * w, neck),
                (cx + 1.6 * w, shoulders),
                (cx + 1.8 * w, size[1]),
                (cx - 1.8 * w, size[1]),
                (cx - 1.6 * w, shoulders),
            ],
            255,
        )
    # A soft edge, so the repainted part meets the kept one without a seam.
    soft = max(1, round(min(size) / 100))
    person = person.filter(ImageFilter.GaussianBlur(soft))
    if region == "face":
        return person
    return Image.eval(person, lambda v: 255 - v)


def drawn_mask(mask: Image.Image) -> Image.Image:
    """A user's mask as black and white (light: repaint); BoothError if it repaints
    nothing or everything, which is surely not what was meant."""
    bw = mask.convert("L").point(lambda v: 255 if v >= 128 else 0)
    low, high = bw.getextrema()
    if high == 0:
        raise BoothError(
            "Your mask is all dark, so nothing would be repainted, and nothing was queued: "
            "paint white where the picture should change."
        )
    if low == 255:
        raise BoothError(
            "Your mask is all white, so the whole picture would be repainted, and nothing "
            "was queued: use /imagine with the picture attached for that."
        )
    return bw
