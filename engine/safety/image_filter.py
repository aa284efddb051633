"""The image filter: NudeNet's detector on every picture that enters or leaves the engine.

NudeNet 3 ships its 320n ONNX model inside the wheel, so this works offline. The detector
is loaded on first use (onnxruntime and OpenCV are heavy imports that the bot process,
which only checks uploads, should not pay for at start-up). Images go to it as arrays in
memory; nothing is written to disk and nothing is pickled.

NudeNet pads a picture to a square before scaling it to its 320 x 320 input, so a long thin
picture (128 x 312500) would make it allocate that whole square (about 290 GB). Every
picture is therefore scaled to at most `MAX_SIDE` first, and boxes are mapped back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "MAX_SIDE",
    "NUDENET_LABELS",
    "Detection",
    "ImageFilter",
    "ImageVerdict",
    "check_classes",
]

_log = logging.getLogger(__name__)

# The longest side a picture reaches the detector with: four times its input size, so that
# scaling down to 320 still averages enough pixels, and the padded square stays small.
MAX_SIDE = 1280

# The classes NudeNet 3's detector reports (nudenet.nudenet.__labels), kept here so that
# configuration can be checked without importing onnxruntime.
NUDENET_LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED",
    "FACE_FEMALE",
    "BUTTOCKS_EXPOSED",
    "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED",
    "MALE_BREAST_EXPOSED",
    "ANUS_EXPOSED",
    "FEET_EXPOSED",
    "BELLY_COVERED",
    "FEET_COVERED",
    "ARMPITS_COVERED",
    "ARMPITS_EXPOSED",
    "FACE_MALE",
    "BELLY_EXPOSED",
    "MALE_GENITALIA_EXPOSED",
    "ANUS_COVERED",
    "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)


@dataclass(frozen=True, slots=True)
class Detection:
    label: str  # one of NUDENET_LABELS
    score: float
    box: tuple[int, int, int, int]  # x, y, width, height in image pixels


@dataclass(frozen=True, slots=True)
class ImageVerdict:
    allowed: bool
    blocked_by: tuple[str, ...]  # classes found at or above their threshold, sorted
    detections: tuple[Detection, ...]  # everything the detector saw, blocked or not

    def scores(self) -> dict[str, float]:
        """The highest score of each blocking class (for review items and logs)."""
        best: dict[str, float] = {}
        for d in self.detections:
            if d.label in self.blocked_by:
                best[d.label] = max(best.get(d.label, 0.0), round(d.score, 3))
        return best


def check_classes(blocked_classes: Mapping[str, float]) -> None:
    """Raise ValueError naming a class NudeNet does not know or a threshold out of (0, 1]."""
    for label, threshold in blocked_classes.items():
        if label not in NUDENET_LABELS:
            raise ValueError(
                f"{label!r} is not a NudeNet class; use one of {', '.join(NUDENET_LABELS)}"
            )
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold of {label} must be above 0 and at most 1, got {threshold}")


class ImageFilter:
    """Blocks an image when NudeNet finds a configured class at or above its threshold.

    Thread-safe: onnxruntime sessions may run from several threads, and the first load is
    guarded. `threads` caps onnxruntime's intra-op threads, since the engine and the bot
    share the CPU with other work.
    """

    def __init__(self, blocked_classes: Mapping[str, float], *, threads: int = 1) -> None:
        check_classes(blocked_classes)
        self.blocked_classes = dict(blocked_classes)
        self.threads = threads
        self._detector: _Detector | None = None
        self._lock = threading.Lock()

    def check(self, image: Image.Image) -> ImageVerdict:
        detections = self._load().detect(image)
        blocked = sorted(
            {
                d.label
                for d in detections
                if d.label in self.blocked_classes and d.score >= self.blocked_classes[d.label]
            }
        )
        return ImageVerdict(not blocked, tuple(blocked), detections)

    def _load(self) -> _Detector:
        with self._lock:
            if self._detector is None:
                self._detector = _Detector(self.threads)
            return self._detector


class _Detector:
    """nudenet.NudeDetector's pre- and post-processing around our own onnxruntime session.

    NudeDetector builds its session with default options (a thread per core); this one
    is built with the thread cap, and everything else is NudeNet's own code.
    """

    def __init__(self, threads: int) -> None:
        import os

        import nudenet
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        model = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
        self.session = onnxruntime.InferenceSession(
            model, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.resolution = 320  # the model's input size (NudeDetector's default)
        _log.info("NudeNet 320n loaded (%d thread(s))", threads)

    def detect(self, image: Image.Image) -> tuple[Detection, ...]:
        from nudenet.nudenet import _postprocess, _read_image

        factor = max(1.0, max(image.size) / MAX_SIDE)
        if factor > 1.0:
            size = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
            image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        # NudeNet reads files with OpenCV, as BGR; an array in that order goes the same way.
        bgr = np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1])
        blob, x_ratio, y_ratio, x_pad, y_pad, width, height = _read_image(bgr, self.resolution)
        outputs = self.session.run(None, {self.input_name: blob})
        found: list[dict[str, Any]] = _postprocess(
            outputs,
            x_pad,
            y_pad,
            x_ratio,
            y_ratio,
            width,
            height,
            self.resolution,
            self.resolution,
        )
        out = []
        for d in found:
            x, y, w, h = (round(v * factor) for v in d["box"])
            out.append(Detection(str(d["class"]), float(d["score"]), (x, y, w, h)))
        return tuple(out)
