"""Judging photos as a set: duplicates, identity consistency and the photo limit.

A single photo can look fine on its own and still not belong: the same photo twice, or
someone else's face among yours. The reference identity is the user's accepted photos;
for a first batch it is the largest group of mutually matching faces in it, so one odd
photo is refused whatever its position in the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.intake.quality import hamming
from engine.intake.settings import IntakeSettings

__all__ = ["Candidate", "KnownPhoto", "judge_set"]

DUPLICATE = "duplicate: you already sent this photo; send a different one"
NEAR_DUPLICATE = "almost the same as a photo you already sent: send a different one"
OTHER_PERSON = "this is not the same person as your other photos: send photos of yourself only"


@dataclass(frozen=True, slots=True)
class KnownPhoto:
    sha256: str
    dhash: int
    descriptor: np.ndarray


Candidate = KnownPhoto  # a new photo carries the same three facts


def judge_set(
    candidates: Sequence[Candidate | None],
    known: Sequence[KnownPhoto],
    settings: IntakeSettings,
) -> list[str | None]:
    """A refusal reason or None (accepted) for each candidate; None entries stay None.

    None in `candidates` stands for a photo already refused on its own.
    """
    verdicts: list[str | None] = [None] * len(candidates)
    seen = list(known)
    for i, cand in enumerate(candidates):
        if cand is None:
            continue
        verdicts[i] = _duplicate_reason(cand, seen, settings)
        if verdicts[i] is None:
            seen.append(cand)

    alive = [i for i, c in enumerate(candidates) if c is not None and verdicts[i] is None]
    new = {i: np.asarray(candidates[i].descriptor) for i in alive}  # type: ignore[union-attr]
    known_descriptors = [np.asarray(k.descriptor) for k in known]
    reference = _reference(known_descriptors, new, settings.identity_threshold)
    for i in alive:
        # A photo of the reference group is compared with the others, never with itself.
        others = [d for j, d in reference.items() if j != i]
        distances = [_dist(new[i], d) for d in others]
        if distances and float(np.median(distances)) > settings.identity_threshold:
            verdicts[i] = OTHER_PERSON

    room = settings.max_photos - len(known)
    for i, cand in enumerate(candidates):
        if cand is None or verdicts[i] is not None:
            continue
        if room <= 0:
            verdicts[i] = (
                f"you already have {settings.max_photos} photos, the most that is kept: "
                "train now, or forget your photos and start again"
            )
        room -= 1
    return verdicts


def identity_outliers(descriptors: Sequence[np.ndarray], threshold: float) -> list[int]:
    """Indexes of the faces that do not look like the group's person (the intake's rule).

    Run again at training time: photos accepted under a looser threshold, or stored by a
    bug, must not train a model of somebody else's face.
    """
    group = {i: np.asarray(d) for i, d in enumerate(descriptors)}
    reference = _reference([], group, threshold)
    outliers = []
    for i, descriptor in group.items():
        others = [d for j, d in reference.items() if j != i]
        distances = [_dist(descriptor, d) for d in others]
        if distances and float(np.median(distances)) > threshold:
            outliers.append(i)
    return outliers


def _duplicate_reason(
    cand: Candidate, seen: Sequence[KnownPhoto], settings: IntakeSettings
) -> str | None:
    for other in seen:
        if cand.sha256 == other.sha256:
            return DUPLICATE
        if hamming(cand.dhash, other.dhash) <= settings.duplicate_hash_distance:
            return NEAR_DUPLICATE
    return None


def _reference(
    known: list[np.ndarray], new: dict[int, np.ndarray], threshold: float
) -> dict[int, np.ndarray]:
    """The descriptors that stand for the user, keyed by candidate index (-1, -2... for known)."""
    if known:
        return {-1 - n: d for n, d in enumerate(known)}
    if not new:
        return {}
    # The anchor is the face that matches the most others; ties go to the earliest.
    counts = {i: sum(_dist(a, b) <= threshold for b in new.values()) for i, a in new.items()}
    anchor = new[max(counts, key=lambda i: (counts[i], -i))]
    return {i: d for i, d in new.items() if _dist(anchor, d) <= threshold}


def _dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32)))
