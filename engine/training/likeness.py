"""How much a trained model looks like its user, and which checkpoint looks most like
them: the faces in a few validation pictures ("a photo of TRIGGER person", fixed seeds)
against the mean dlib descriptor of the user's accepted photos.

dlib's descriptors put two photos of one person typically below 0.6 apart
(engine.jobs.SAME_PERSON), and two people above it; the score is the mean distance over
the pictures in which a face was found (the closest face of each). Where no picture
shows a face (the tiny model draws noise), there is no score: nothing is made up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from engine.intake.faces import FaceAnalyzer
from engine.jobs import likeness_words
from engine.safety.likeness import found_faces

__all__ = ["FaceLikeness", "LikenessScore", "Scorer", "best_step"]

# Faces are looked for at most this large, as the upload intake does.
_DETECTION_SIDE = 1024


@dataclass(frozen=True, slots=True)
class LikenessScore:
    distance: float | None  # None: no face in any picture
    faces: int  # pictures in which a face was found
    pictures: int

    def words(self) -> str:
        """The score as users read it."""
        return likeness_words(self.distance, self.faces, self.pictures)


class Scorer(Protocol):
    def __call__(self, pictures: Sequence[Image.Image]) -> LikenessScore: ...


class FaceLikeness:
    """Scores pictures against `reference`, the mean descriptor of a user's photos."""

    def __init__(self, reference: Sequence[float], analyzer: FaceAnalyzer) -> None:
        self.reference = np.asarray(reference, dtype=np.float32)
        if self.reference.shape != (128,) or not np.all(np.isfinite(self.reference)):
            raise ValueError(
                f"a likeness reference has 128 finite numbers, got {self.reference.shape}"
            )
        self.analyzer = analyzer

    def __call__(self, pictures: Sequence[Image.Image]) -> LikenessScore:
        closest = []
        for picture in pictures:
            _, descriptors = found_faces(picture, self.analyzer, _DETECTION_SIDE)
            if len(descriptors):
                closest.append(float(np.linalg.norm(descriptors - self.reference, axis=1).min()))
        distance = float(np.mean(closest)) if closest else None
        return LikenessScore(distance, len(closest), len(pictures))


def best_step(scores: Sequence[tuple[int, LikenessScore]]) -> int | None:
    """The step whose pictures look most like the user (the lowest distance; the later of
    equals); None when no step has a score."""
    scored = [(score.distance, -step) for step, score in scores if score.distance is not None]
    return -min(scored)[1] if scored else None
