"""Face detection and 128-d identity descriptors with dlib's shipped models.

The models come from the `face_recognition_models` package. Its `__init__` imports
pkg_resources, which recent setuptools no longer ships, so the model files are found by
path without importing it.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import dlib
import numpy as np
from PIL import Image

__all__ = ["Face", "FaceAnalyzer", "model_dir"]

# HOG scores below this are mostly false positives (measured on ../shared/faces).
_MIN_SCORE = 0.0


@dataclass(frozen=True, slots=True)
class Face:
    # Box in the coordinates of the image that was analysed: left, top, right, bottom.
    box: tuple[int, int, int, int]
    score: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)


def model_dir() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "the face_recognition_models package is missing: pip install face_recognition_models"
        )
    return Path(spec.origin).parent / "models"


class FaceAnalyzer:
    """dlib's HOG detector, 5-point landmarks and ResNet descriptor, loaded once.

    dlib's objects are not documented as thread-safe, so calls are serialised.
    """

    def __init__(self) -> None:
        models = model_dir()
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._encoder = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )
        self._lock = threading.Lock()

    def detect(self, img: Image.Image) -> list[Face]:
        """Faces in `img`, largest first."""
        pixels = np.asarray(img.convert("RGB"))
        with self._lock:
            # One upsampling step finds faces down to about 40 px.
            rects, scores, _ = self._detector.run(pixels, 1, _MIN_SCORE)
        faces = [
            Face((r.left(), r.top(), r.right(), r.bottom()), float(s))
            for r, s in zip(rects, scores, strict=True)
        ]
        return sorted(faces, key=lambda f: f.width * f.height, reverse=True)

    def descriptor(self, img: Image.Image, face: Face) -> np.ndarray:
        """The 128-d descriptor of `face`; same person typically below 0.6 apart."""
        pixels = np.asarray(img.convert("RGB"))
        rect = dlib.rectangle(*face.box)
        with self._lock:
            shape = self._landmarks(pixels, rect)
            vector = self._encoder.compute_face_descriptor(pixels, shape)
        return np.asarray(vector, dtype=np.float32)
