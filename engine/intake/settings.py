"""Settings of photo intake; the `[intake]` table of the config file."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IntakeSettings"]


@dataclass(frozen=True, slots=True)
class IntakeSettings:
    # Files above this size are refused before they are decoded.
    max_file_mb: float = 20.0
    # Images with more pixels are refused before decoding (decompression bombs).
    max_pixels: int = 40_000_000
    # The shorter side of an image must be at least this many pixels.
    min_side_px: int = 128
    # The longer side may be at most this many times the shorter one (checked from the
    # header, before decoding): a selfie is not a 1:2400 strip.
    max_aspect_ratio: float = 4.0
    # Every picture is decoded or scaled down to at most this longest side before the
    # content filter, the face detector or storage see it: it bounds memory per upload.
    working_max_side: int = 2048
    # Accepted photos kept per user; DESIGN.md asks for 5 to 20.
    max_photos: int = 20
    # The main face's width must be at least this fraction of the image's shorter side...
    min_face_fraction: float = 0.1
    # ...and at least this many pixels wide.
    min_face_px: int = 48
    # A second face narrower than this fraction of the main face is ignored (background).
    second_face_ratio: float = 0.5
    # A second face whose detector score is below this is ignored: HOG's weak hits are mostly
    # patches, prints and logos (measured on ../shared/faces: real faces score 0.5 to 2.0).
    second_face_min_score: float = 0.4
    # Largest descriptor distance for "same person"; dlib documents 0.6.
    identity_threshold: float = 0.6
    # Variance of the Laplacian of the face at 128x128 below which a photo is too blurry.
    min_sharpness: float = 40.0
    # Perceptual hashes (64 bits) this close or closer mark a near duplicate.
    duplicate_hash_distance: int = 6
    # Images are scaled down to this longest side for face detection (speed).
    detection_max_side: int = 1024

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 1024 * 1024)
