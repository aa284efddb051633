"""One photo on its own: decode, find exactly one dominant face, judge its size and
sharpness, describe it, and cut the training crop.

Every outcome is a PhotoAnalysis or a PhotoRefused: an unexpected failure on one crafted
file refuses that file, and the others of its batch still get their verdicts.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.intake.crop import face_crop
from engine.intake.decode import decode_image
from engine.intake.errors import PhotoRefused
from engine.intake.faces import Face, FaceAnalyzer
from engine.intake.quality import dhash, sharpness
from engine.intake.settings import IntakeSettings

__all__ = ["UNREADABLE", "PhotoAnalysis", "analyze_photo"]

_log = logging.getLogger(__name__)

UNREADABLE = "this photo could not be processed: send the original photo, or another one"


@dataclass(frozen=True, slots=True)
class PhotoAnalysis:
    sha256: str  # of the bytes as uploaded: exact duplicates
    image: Image.Image  # upright, sRGB, metadata-free
    crop: Image.Image  # square, at the training resolution
    face_box: tuple[int, int, int, int]  # in `image` coordinates
    descriptor: np.ndarray  # 128 float32
    sharpness: float
    dhash: int


def analyze_photo(
    data: bytes,
    settings: IntakeSettings,
    resolution: int,
    analyzer: FaceAnalyzer,
    screen: Callable[[Image.Image], None] | None = None,
) -> PhotoAnalysis:
    """Analyse one upload, or raise PhotoRefused with a reason a person can act on.

    `screen` sees the decoded image before anything else (the content filter), so that a
    photo it refuses is refused whatever else is wrong with it; it raises PhotoRefused.
    """
    try:
        return _analyze(data, settings, resolution, analyzer, screen)
    except PhotoRefused:
        raise
    except Exception:
        # Not the user's to read: the traceback goes to the log at INFO (the command line
        # prints warnings and worse only), the user gets a reason.
        _log.info("a photo could not be analysed", exc_info=True)
        raise PhotoRefused(UNREADABLE) from None


def _analyze(
    data: bytes,
    settings: IntakeSettings,
    resolution: int,
    analyzer: FaceAnalyzer,
    screen: Callable[[Image.Image], None] | None,
) -> PhotoAnalysis:
    image = decode_image(data, settings)
    if screen is not None:
        screen(image)
    scale = min(1.0, settings.detection_max_side / max(image.size))
    small = image
    if scale < 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        small = image.resize(size, Image.Resampling.BILINEAR)

    faces = analyzer.detect(small)
    if not faces:
        raise PhotoRefused(
            "no face found: send a photo where your face is clearly visible and facing the camera"
        )
    main = faces[0]
    others = [
        f
        for f in faces[1:]
        if f.width >= main.width * settings.second_face_ratio
        and f.score >= settings.second_face_min_score
    ]
    if others:
        raise PhotoRefused(
            f"{len(others) + 1} faces in this photo: send a photo with only you in it"
        )

    face_px = main.width / scale
    if face_px < settings.min_face_px or main.width < settings.min_face_fraction * min(small.size):
        raise PhotoRefused("face too small: move closer, or crop the photo around your face")

    box = _scale_box(main, 1 / scale, image.size)
    face_sharpness = sharpness(image.crop(box))
    if face_sharpness < settings.min_sharpness:
        raise PhotoRefused("too blurry: hold the camera still and send a sharper photo")

    full_face = Face(box, main.score)
    return PhotoAnalysis(
        sha256=hashlib.sha256(data).hexdigest(),
        image=image,
        crop=face_crop(image, full_face, resolution),
        face_box=box,
        descriptor=analyzer.descriptor(small, main),
        sharpness=face_sharpness,
        dhash=dhash(image),
    )


def _scale_box(face: Face, factor: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    left, top, right, bottom = (round(v * factor) for v in face.box)
    # dlib may return boxes that reach past the edge for faces cut off by it.
    return (max(left, 0), max(top, 0), min(right, size[0]), min(bottom, size[1]))
