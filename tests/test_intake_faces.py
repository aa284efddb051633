"""analyze_photo on the shared real photos: one clear face accepted, the rest refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_images import (
    encode,
    exif_with_gps,
    faces_absent_reason,
    faces_dir,
    gradient,
    noise,
    people_photos,
)
from PIL import Image, ImageFilter

from engine.intake import FaceAnalyzer, IntakeSettings, PhotoAnalysis, PhotoRefused, analyze_photo

FACES = faces_dir()
pytestmark = pytest.mark.skipif(not (FACES / "people").is_dir(), reason=faces_absent_reason())

SETTINGS = IntakeSettings()
PEOPLE = people_photos(FACES)
FIRST_OF_EACH = sorted({p.parent.name: p for p in reversed(PEOPLE)}.values())


def _id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _open(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def _jpeg(img: Image.Image) -> bytes:
    return encode(img, "JPEG", quality=95)


def _refusal(data: bytes, analyzer: FaceAnalyzer) -> str:
    with pytest.raises(PhotoRefused) as info:
        analyze_photo(data, SETTINGS, 64, analyzer)
    return info.value.reason


def _face_crop(path: Path, analyzer: FaceAnalyzer, margin: float = 0.6) -> Image.Image:
    """The face of a photo with `margin` face widths around it (enough for the detector)."""
    result = analyze_photo(path.read_bytes(), SETTINGS, 64, analyzer)
    left, top, right, bottom = result.face_box
    pad = round((right - left) * margin)
    return result.image.crop((left - pad, top - pad, right + pad, bottom + pad))


def test_the_shared_photos_are_there() -> None:
    assert len(PEOPLE) >= 10
    assert len({p.parent for p in PEOPLE}) >= 2
    assert list(FACES.glob("multi/*.jpg"))


@pytest.mark.parametrize("path", PEOPLE, ids=_id)
def test_every_portrait_is_accepted(path: Path, analyzer: FaceAnalyzer) -> None:
    result = analyze_photo(path.read_bytes(), SETTINGS, 64, analyzer)
    assert result.crop.size == (64, 64)
    assert result.crop.mode == "RGB"
    width, height = result.image.size
    left, top, right, bottom = result.face_box
    assert 0 <= left < right <= width
    assert 0 <= top < bottom <= height
    assert result.descriptor.shape == (128,)
    assert result.sharpness >= SETTINGS.min_sharpness
    assert len(result.sha256) == 64


@pytest.mark.parametrize("path", FIRST_OF_EACH, ids=_id)
def test_crop_at_training_resolution(path: Path, analyzer: FaceAnalyzer) -> None:
    result = analyze_photo(path.read_bytes(), SETTINGS, 512, analyzer)
    assert result.crop.size == (512, 512)


@pytest.mark.parametrize("path", sorted(FACES.glob("multi/*.jpg")), ids=_id)
def test_group_photos_are_refused(path: Path, analyzer: FaceAnalyzer) -> None:
    assert "faces in this photo" in _refusal(path.read_bytes(), analyzer)


@pytest.mark.parametrize("path", sorted(FACES.glob("partial/*.jpg")), ids=_id)
def test_partial_faces_are_judged_without_crashing(path: Path, analyzer: FaceAnalyzer) -> None:
    try:
        result = analyze_photo(path.read_bytes(), SETTINGS, 64, analyzer)
    except PhotoRefused as refused:
        assert refused.reason
    else:
        assert isinstance(result, PhotoAnalysis)
        left, top, right, bottom = result.face_box
        assert 0 <= left < right <= result.image.width
        assert 0 <= top < bottom <= result.image.height
        assert result.crop.size == (64, 64)


@pytest.mark.parametrize("path", FIRST_OF_EACH, ids=_id)
def test_heavily_blurred_photo_is_too_blurry(path: Path, analyzer: FaceAnalyzer) -> None:
    sharp = analyze_photo(path.read_bytes(), SETTINGS, 64, analyzer)
    face_width = sharp.face_box[2] - sharp.face_box[0]
    # Sharpness is measured on the face at 128 px, so the blur scales with the face: a
    # radius of 3.2 px at that size. ("Too blurry" also means the face was still found.)
    blurred = sharp.image.filter(ImageFilter.GaussianBlur(face_width / 40))
    assert "too blurry" in _refusal(_jpeg(blurred), analyzer)


def test_person_small_in_a_large_canvas_is_too_small(analyzer: FaceAnalyzer) -> None:
    photo = _open(FACES / "people" / "barack_obama" / "1.jpg")
    small = photo.resize((photo.width // 3, photo.height // 3), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (1000, 1000), (200, 200, 200))
    canvas.paste(small, (350, 300))
    faces = analyzer.detect(canvas)
    assert len(faces) == 1  # found, but under 10% of the shorter side
    assert faces[0].width < SETTINGS.min_face_fraction * 1000
    assert "face too small" in _refusal(_jpeg(canvas), analyzer)


def test_much_smaller_second_face_is_ignored(analyzer: FaceAnalyzer) -> None:
    main = _open(FACES / "people" / "guido_van_rossum" / "3.jpg")
    other = _face_crop(FACES / "people" / "paul_allen" / "1.jpg", analyzer)
    main.paste(other.resize((main.width // 4, main.width // 4)), (10, 10))
    faces = analyzer.detect(main)
    assert len(faces) == 2  # both are seen...
    assert faces[1].width < SETTINGS.second_face_ratio * faces[0].width
    result = analyze_photo(_jpeg(main), SETTINGS, 64, analyzer)  # ...the small one ignored
    left, top, _, _ = result.face_box
    assert left > main.width // 4 and top > 10  # the main face, not the pasted one


def test_two_faces_of_comparable_size_are_refused(analyzer: FaceAnalyzer) -> None:
    left = _open(FACES / "people" / "paul_allen" / "1.jpg")
    right = _open(FACES / "people" / "steve_wozniak" / "3.jpg")
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)), "gray")
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))
    assert "2 faces in this photo" in _refusal(_jpeg(canvas), analyzer)


@pytest.mark.parametrize("kind", ["gradient", "noise", "flat"])
def test_image_without_a_face_is_refused(kind: str, analyzer: FaceAnalyzer) -> None:
    img = {
        "gradient": gradient(640, 480),
        "noise": noise(640, 480),
        "flat": Image.new("RGB", (640, 480), (90, 140, 200)),
    }[kind]
    assert "no face found" in _refusal(_jpeg(img), analyzer)


def test_rotated_upload_is_analysed_upright(analyzer: FaceAnalyzer) -> None:
    """A phone photo stored sideways with EXIF Orientation 6 still yields the face."""
    upright = _open(FACES / "people" / "paul_allen" / "1.jpg")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    data = encode(stored, "JPEG", quality=95, exif=exif_with_gps(orientation=6).tobytes())
    assert not analyzer.detect(stored)  # sideways, HOG finds nothing
    result = analyze_photo(data, SETTINGS, 64, analyzer)
    assert result.image.size == upright.size


def test_same_photo_gives_the_same_descriptor_and_hash(analyzer: FaceAnalyzer) -> None:
    data = (FACES / "people" / "steve_wozniak" / "3.jpg").read_bytes()
    a = analyze_photo(data, SETTINGS, 64, analyzer)
    b = analyze_photo(bytes(data), SETTINGS, 64, analyzer)
    assert a.sha256 == b.sha256
    assert a.dhash == b.dhash
    assert float(abs(a.descriptor - b.descriptor).max()) == 0.0
