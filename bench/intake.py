"""Speed of photo intake: `analyze_photo` against the bare dlib calls it wraps.

For every photo in the shared faces directory (people/*/, multi/, partial/) this measures,
on one CPU thread:

* `analyze_photo` end to end (decode, EXIF orientation, metadata stripping, scaling to the
  detection size, HOG detection, size/sharpness checks, 5-point landmarks + 128-d
  descriptor, face crop, perceptual hash): photos per second, mean and median ms per
  photo, and the split of that time between decode, detect, descriptor and the rest;
* the plain library calls on the same decoded images at the same detection size: dlib's
  HOG detector with one upsampling step, then the shape predictor and the ResNet
  descriptor of the largest face found (for every image with a face, including those
  `analyze_photo` refuses before describing them), and the ratio of the two.

Usage: python bench/intake.py [--faces DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlib
import numpy as np
from PIL import Image

# Run as `python bench/intake.py`, this folder comes first on sys.path, and its engine.py
# would hide the `engine` package.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]

import engine.intake.analyze as analyze_module  # noqa: E402
from engine.intake import (  # noqa: E402
    FaceAnalyzer,
    IntakeSettings,
    PhotoRefused,
    analyze_photo,
    decode_image,
)
from engine.intake.faces import Face, model_dir  # noqa: E402


@dataclass
class Phases:
    decode: float = 0.0
    detect: float = 0.0
    descriptor: float = 0.0

    def total(self) -> float:
        return self.decode + self.detect + self.descriptor


@dataclass
class Timings:
    phases: Phases = field(default_factory=Phases)


class TimedAnalyzer(FaceAnalyzer):
    """FaceAnalyzer that adds the time of each call to `timings.phases`."""

    def __init__(self, timings: Timings) -> None:
        super().__init__()
        self.timings = timings

    def detect(self, img: Image.Image) -> list[Face]:
        start = time.perf_counter()
        try:
            return super().detect(img)
        finally:
            self.timings.phases.detect += time.perf_counter() - start

    def descriptor(self, img: Image.Image, face: Face) -> np.ndarray:
        start = time.perf_counter()
        try:
            return super().descriptor(img, face)
        finally:
            self.timings.phases.descriptor += time.perf_counter() - start


def timed_decode(timings: Timings) -> Callable[..., Image.Image]:
    def decode(data: bytes, settings: IntakeSettings) -> Image.Image:
        start = time.perf_counter()
        try:
            return decode_image(data, settings)
        finally:
            timings.phases.decode += time.perf_counter() - start

    return decode


def detection_size(img: Image.Image, settings: IntakeSettings) -> Image.Image:
    """The image as analyze_photo hands it to the detector."""
    scale = min(1.0, settings.detection_max_side / max(img.size))
    if scale >= 1.0:
        return img
    size = (round(img.width * scale), round(img.height * scale))
    return img.resize(size, Image.Resampling.BILINEAR)


class PlainDlib:
    """The same three models, called directly."""

    def __init__(self) -> None:
        models = model_dir()
        self.detector: Any = dlib.get_frontal_face_detector()
        self.landmarks: Any = dlib.shape_predictor(
            str(models / "shape_predictor_5_face_landmarks.dat")
        )
        self.encoder: Any = dlib.face_recognition_model_v1(
            str(models / "dlib_face_recognition_resnet_model_v1.dat")
        )

    def __call__(self, pixels: np.ndarray) -> np.ndarray | None:
        rects = self.detector(pixels, 1)
        if not rects:
            return None
        largest = max(rects, key=lambda r: r.width() * r.height())
        shape = self.landmarks(pixels, largest)
        return np.asarray(self.encoder.compute_face_descriptor(pixels, shape))


def photos_in(root: Path) -> list[Path]:
    found = [*root.glob("people/*/*.jpg"), *root.glob("multi/*.jpg"), *root.glob("partial/*.jpg")]
    return sorted(found)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def main(argv: list[str] | None = None) -> int:
    default_faces = os.environ.get(
        "SELFIEBOOTH_FACES_DIR", str(Path(__file__).resolve().parents[1].parent / "shared/faces")
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path(default_faces), help="faces directory")
    parser.add_argument("--repeat", type=int, default=1, help="passes over all photos")
    parser.add_argument("--resolution", type=int, default=512, help="training crop size")
    args = parser.parse_args(argv)

    photos = photos_in(args.faces)
    if not photos:
        print(f"no photos under {args.faces} (people/*/*.jpg, multi/*.jpg, partial/*.jpg)")
        return 1
    settings = IntakeSettings()
    uploads = [p.read_bytes() for p in photos]

    timings = Timings()
    analyzer = TimedAnalyzer(timings)
    plain = PlainDlib()
    analyze_module.decode_image = timed_decode(timings)  # type: ignore[attr-defined]

    # What the library gets: the decoded image at detection size, as an array (not timed).
    arrays = [np.asarray(detection_size(decode_image(d, settings), settings)) for d in uploads]
    # Warm up both paths once (page in the models, first-call allocations).
    plain(arrays[0])
    with contextlib.suppress(PhotoRefused):
        analyze_photo(uploads[0], settings, args.resolution, analyzer)
    timings.phases = Phases()

    ours: list[float] = []
    library: list[float] = []
    verdicts: dict[str, int] = {}
    for _ in range(args.repeat):
        for data in uploads:
            start = time.perf_counter()
            try:
                analyze_photo(data, settings, args.resolution, analyzer)
                verdict = "accepted"
            except PhotoRefused as refused:
                verdict = refused.reason.split(":")[0]
            ours.append(time.perf_counter() - start)
            verdicts[verdict] = verdicts.get(verdict, 0) + 1
        for pixels in arrays:
            start = time.perf_counter()
            plain(pixels)
            library.append(time.perf_counter() - start)

    total, lib_total = sum(ours), sum(library)
    phases = timings.phases
    rest = total - phases.total()
    print(f"faces dir: {args.faces}")
    print(
        f"photos: {len(photos)} x {args.repeat} pass(es); crop {args.resolution} px; "
        f"detection at <= {settings.detection_max_side} px; dlib {dlib.__version__}"
    )
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    print()
    print("analyze_photo")
    print(f"  throughput      {len(ours) / total:8.2f} photos/s")
    print(f"  mean            {ms(statistics.mean(ours))}")
    print(f"  median          {ms(statistics.median(ours))}")
    for name, seconds in (
        ("decode", phases.decode),
        ("detect", phases.detect),
        ("descriptor", phases.descriptor),
        ("other", rest),
    ):
        print(f"  {name:<14}  {ms(seconds / len(ours))} per photo  {seconds / total:6.1%}")
    print()
    print("plain dlib (detector + shape predictor + descriptor, same images and size)")
    print(f"  throughput      {len(library) / lib_total:8.2f} photos/s")
    print(f"  mean            {ms(statistics.mean(library))}")
    print(f"  median          {ms(statistics.median(library))}")
    print()
    print(f"ratio analyze_photo / plain dlib: {total / lib_total:.2f}x")
    print(
        "ratio (detect + descriptor inside analyze_photo) / plain dlib: "
        f"{(phases.detect + phases.descriptor) / lib_total:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
