"""Cheap image measures: sharpness of the face, and a perceptual hash for near duplicates."""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["dhash", "hamming", "sharpness"]


def sharpness(face: Image.Image) -> float:
    """Variance of the Laplacian of the face at 128x128 grey: low means blurry.

    Resizing first makes the figure comparable across photos of any size.
    """
    g = np.asarray(face.convert("L").resize((128, 128), Image.Resampling.BILINEAR), np.float32)
    lap = -4 * g[1:-1, 1:-1] + g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:]
    return float(lap.var())


def dhash(img: Image.Image) -> int:
    """64-bit difference hash: survives re-encoding, resizing and small edits."""
    g = np.asarray(img.convert("L").resize((9, 8), Image.Resampling.LANCZOS), np.int16)
    bits = (g[:, 1:] > g[:, :-1]).flatten()
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()
