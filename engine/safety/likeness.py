"""The likeness check: does a picture show the face of another user of the bot?

Every user is one row of an index: the mean of the 128-d dlib descriptors of their
accepted photos (a user's own photos lie 0.2 to 0.45 from that mean, other people 0.6 and
more on ../shared/faces). A face in a picture is somebody's likeness when it lies within
the identity threshold of their mean; it is the requester's own when it lies nearer to
theirs than to anybody else's, so a user who looks like another user can still have
pictures of themselves. Faces of nobody known match no row and pass.

The search is numpy brute force over an (N, 128) float32 matrix: one matrix-vector
product, a few milliseconds at 100k users (bench/likeness_guard.py). Far beyond that, an
approximate index (FAISS HNSW or IVF, hnswlib) would take its place behind `match`.

Descriptors are biometric data: this module never logs them, and `remove` overwrites a
user's row as well as dropping it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.intake.faces import Face, FaceAnalyzer

__all__ = ["DESCRIPTOR_SIZE", "FaceIndex", "Likeness", "face_descriptors", "found_faces"]

DESCRIPTOR_SIZE = 128


@dataclass(frozen=True, slots=True)
class Likeness:
    """A face that is another user's: who (for admins only) and how close."""

    user_id: int
    distance: float


class FaceIndex:
    """Each user's mean descriptor, searchable by brute force.

    Rows are kept as sums and counts so that a photo added later updates its user's mean
    without reading the others again. Not thread-safe: change and search it from one
    thread (the bot's event loop); only detection needs a worker thread.
    """

    def __init__(self, threshold: float, capacity: int = 64) -> None:
        if not 0.0 < threshold < 2.0:
            raise ValueError(f"the identity threshold must be above 0 and below 2, got {threshold}")
        self.threshold = threshold
        self._row: dict[int, int] = {}  # user id -> row
        self._users = np.zeros(capacity, dtype=np.int64)
        self._sums = np.zeros((capacity, DESCRIPTOR_SIZE), dtype=np.float64)
        self._counts = np.zeros(capacity, dtype=np.int64)
        self._means = np.zeros((capacity, DESCRIPTOR_SIZE), dtype=np.float32)
        self._square_norms = np.zeros(capacity, dtype=np.float32)

    def __len__(self) -> int:
        return len(self._row)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._row

    @property
    def photos(self) -> int:
        """How many descriptors the index holds, all users together."""
        return int(self._counts[: len(self._row)].sum())

    def photos_of(self, user_id: int) -> int:
        row = self._row.get(user_id)
        return 0 if row is None else int(self._counts[row])

    def users(self) -> set[int]:
        return set(self._row)

    def add(self, user_id: int, descriptor: np.ndarray) -> None:
        """One more accepted photo of `user_id`."""
        vector = _checked(descriptor)
        row = self._row.get(user_id)
        if row is None:
            row = self._append(user_id)
        self._sums[row] += vector
        self._counts[row] += 1
        self._update(row)

    def replace(self, user_id: int, descriptors: Iterable[np.ndarray]) -> None:
        """`user_id`'s photos are exactly these now (none: the user leaves the index)."""
        self.remove(user_id)
        for descriptor in descriptors:
            self.add(user_id, descriptor)

    def remove(self, user_id: int) -> None:
        """The user leaves the index; their row is overwritten, not only forgotten."""
        row = self._row.pop(user_id, None)
        if row is None:
            return
        last = len(self._row)  # the old last row, now outside the live range
        if row != last:
            moved = int(self._users[last])
            for array in (self._users, self._sums, self._counts, self._means, self._square_norms):
                array[row] = array[last]
            self._row[moved] = row
        for array in (self._users, self._sums, self._counts, self._means, self._square_norms):
            array[last] = 0

    def match(self, descriptor: np.ndarray, requester: int | None) -> Likeness | None:
        """The other user whose likeness `descriptor` is, or None (the requester, or nobody)."""
        n = len(self._row)
        if n == 0:
            return None
        query = _checked(descriptor).astype(np.float32)
        # |q - m|^2 = |m|^2 - 2 m.q + |q|^2: one matrix-vector product over all users.
        squared = self._square_norms[:n] - 2.0 * (self._means[:n] @ query) + float(query @ query)
        np.maximum(squared, 0.0, out=squared)
        own_row = self._row.get(requester) if requester is not None else None
        own = float("inf")
        if own_row is not None:
            own = float(squared[own_row])
            squared[own_row] = np.inf
        best = int(np.argmin(squared))
        nearest = float(squared[best])
        if nearest > self.threshold**2 or nearest >= own:
            return None
        return Likeness(int(self._users[best]), round(float(np.sqrt(nearest)), 4))

    def _append(self, user_id: int) -> int:
        row = len(self._row)
        if row == len(self._users):
            self._grow()
        self._row[user_id] = row
        self._users[row] = user_id
        return row

    def _grow(self) -> None:
        size = 2 * len(self._users)
        self._users = _resized(self._users, size)
        self._sums = _resized(self._sums, size)
        self._counts = _resized(self._counts, size)
        self._means = _resized(self._means, size)
        self._square_norms = _resized(self._square_norms, size)

    def _update(self, row: int) -> None:
        mean = (self._sums[row] / self._counts[row]).astype(np.float32)
        self._means[row] = mean
        self._square_norms[row] = float(mean @ mean)


def face_descriptors(image: Image.Image, analyzer: FaceAnalyzer, max_side: int) -> np.ndarray:
    """The descriptors of every face dlib finds in `image`, as an (M, 128) float32 array.

    The image is scaled down to `max_side` first, as intake does (speed); every face
    counts, small and background ones included, since any of them may be somebody's.
    """
    return found_faces(image, analyzer, max_side)[1]


def found_faces(
    image: Image.Image, analyzer: FaceAnalyzer, max_side: int
) -> tuple[list[Face], np.ndarray]:
    """Every face in `image` (boxes in its own pixels) and their descriptors, found as
    `face_descriptors` finds them."""
    image = image.convert("RGB")
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        size = (round(image.width * scale), round(image.height * scale))
        image = image.resize(size, Image.Resampling.BILINEAR)
    faces = analyzer.detect(image)
    if not faces:
        return [], np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
    descriptors = np.stack([analyzer.descriptor(image, face) for face in faces])
    left, top, right, bottom = (np.array([f.box[i] for f in faces]) / scale for i in range(4))
    boxes = [
        Face((round(a), round(b), round(c), round(d)), f.score)
        for a, b, c, d, f in zip(left, top, right, bottom, faces, strict=True)
    ]
    return boxes, descriptors


def _checked(descriptor: np.ndarray) -> np.ndarray:
    vector = np.asarray(descriptor, dtype=np.float64).reshape(-1)
    if vector.shape != (DESCRIPTOR_SIZE,) or not np.all(np.isfinite(vector)):
        raise ValueError(
            f"a face descriptor has {DESCRIPTOR_SIZE} finite numbers, got shape {vector.shape}"
        )
    return vector


def _resized(array: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    return out
