"""Face-aware square crop: the face centred, with room for hair and shoulders."""

from __future__ import annotations

from PIL import Image

from engine.intake.faces import Face

__all__ = ["face_crop"]

# The crop is this many face widths wide: head, hair and a bit of shoulders, the framing
# DreamBooth face recipes train on.
_FACE_WIDTHS = 2.6
# The face sits slightly above the centre, as in a portrait.
_VERTICAL_SHIFT = 0.15


def face_crop(img: Image.Image, face: Face, resolution: int) -> Image.Image:
    """A square crop around `face`, kept inside the image, resized to `resolution`."""
    width, height = img.size
    side = min(round(face.width * _FACE_WIDTHS), width, height)
    cx, cy = face.center
    cy += face.height * _VERTICAL_SHIFT
    left = min(max(round(cx - side / 2), 0), width - side)
    top = min(max(round(cy - side / 2), 0), height - side)
    square = img.crop((left, top, left + side, top + side))
    return square.resize((resolution, resolution), Image.Resampling.LANCZOS)
