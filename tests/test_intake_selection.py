"""judge_set: duplicates, identity consistency and the photo limit, on real and synthetic faces."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from helpers_images import encode, faces_absent_reason, faces_dir, people_photos
from PIL import Image

from engine.intake import (
    FaceAnalyzer,
    IntakeSettings,
    KnownPhoto,
    PhotoAnalysis,
    analyze_photo,
    judge_set,
)
from engine.intake.selection import DUPLICATE, NEAR_DUPLICATE, OTHER_PERSON

FACES = faces_dir()
PEOPLE = people_photos(FACES)
NAMES = sorted({p.parent.name for p in PEOPLE})
SETTINGS = IntakeSettings()
needs_faces = pytest.mark.skipif(not (FACES / "people").is_dir(), reason=faces_absent_reason())

Analyses = dict[str, list[PhotoAnalysis]]


def known(a: PhotoAnalysis) -> KnownPhoto:
    return KnownPhoto(sha256=a.sha256, dhash=a.dhash, descriptor=a.descriptor)


def is_limit(verdict: str | None, limit: int) -> bool:
    return verdict is not None and f"already have {limit} photos" in verdict


@pytest.fixture(scope="module")
def people(analyzer: FaceAnalyzer) -> Analyses:
    """Every shared portrait analysed once, by person, in file-name order."""
    out: Analyses = {}
    for path in PEOPLE:
        analysis = analyze_photo(path.read_bytes(), SETTINGS, 64, analyzer)
        out.setdefault(path.parent.name, []).append(analysis)
    return out


# --- real faces ----------------------------------------------------------------------------


@needs_faces
@pytest.mark.parametrize("name", NAMES)
def test_each_persons_own_set_is_accepted(name: str, people: Analyses) -> None:
    photos = [known(a) for a in people[name]]
    assert len(photos) >= 2
    assert judge_set(photos, [], SETTINGS) == [None] * len(photos)


@needs_faces
@pytest.mark.parametrize("name", NAMES)
def test_each_persons_photos_match_their_known_photos(name: str, people: Analyses) -> None:
    first, *rest = (known(a) for a in people[name])
    assert judge_set(rest, [first], SETTINGS) == [None] * len(rest)


@needs_faces
@pytest.mark.parametrize("position", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("intruder", ["joe_biden", "guido_van_rossum", "steve_wozniak"])
def test_one_other_person_in_a_first_batch_is_refused_wherever_it_is(
    position: int, intruder: str, people: Analyses
) -> None:
    batch: list[KnownPhoto | None] = [known(a) for a in people["barack_obama"][:4]]
    assert len(batch) == 4
    batch.insert(position, known(people[intruder][0]))
    expected: list[str | None] = [None] * 5
    expected[position] = OTHER_PERSON
    assert judge_set(batch, [], SETTINGS) == expected


@needs_faces
def test_candidates_are_judged_against_known_photos(people: Analyses) -> None:
    reference = [known(a) for a in people["guido_van_rossum"][:4]]
    candidates = [known(people["paul_allen"][0]), known(people["guido_van_rossum"][4])]
    assert judge_set(candidates, reference, SETTINGS) == [OTHER_PERSON, None]


@needs_faces
def test_known_photos_outweigh_a_batch_of_someone_else(people: Analyses) -> None:
    """Once a user has accepted photos, a whole batch of another person is refused."""
    reference = [known(a) for a in people["steve_wozniak"][:2]]
    batch = [known(a) for a in people["paul_allen"]]
    assert judge_set(batch, reference, SETTINGS) == [OTHER_PERSON] * len(batch)


@needs_faces
def test_exact_duplicates_are_refused(people: Analyses) -> None:
    a, b = (known(x) for x in people["paul_allen"][:2])
    assert judge_set([a, b, a], [], SETTINGS) == [None, None, DUPLICATE]
    assert judge_set([b, a], [a], SETTINGS) == [None, DUPLICATE]


def _reencoded(analysis: PhotoAnalysis) -> bytes:
    img = analysis.image
    smaller = img.resize(
        (round(img.width * 0.8), round(img.height * 0.8)), Image.Resampling.BICUBIC
    )
    return encode(smaller, "JPEG", quality=70)


@needs_faces
@pytest.mark.parametrize("name", NAMES)
def test_reencoded_and_resized_copy_is_a_near_duplicate(
    name: str, people: Analyses, analyzer: FaceAnalyzer
) -> None:
    original = max(people[name], key=lambda a: a.image.width)
    copy = analyze_photo(_reencoded(original), SETTINGS, 64, analyzer)
    assert copy.sha256 != original.sha256  # not caught as an exact duplicate
    assert judge_set([known(copy)], [known(original)], SETTINGS) == [NEAR_DUPLICATE]
    assert judge_set([known(original), known(copy)], [], SETTINGS) == [None, NEAR_DUPLICATE]


@needs_faces
def test_photo_limit_with_real_photos(people: Analyses) -> None:
    batch = [known(a) for a in people["guido_van_rossum"]]
    settings = IntakeSettings(max_photos=3)
    verdicts = judge_set(batch, [], settings)
    assert verdicts[:3] == [None, None, None]
    assert all(is_limit(v, 3) for v in verdicts[3:])


# --- synthetic faces -----------------------------------------------------------------------
# dlib descriptors of two people are typically 0.7-1.0 apart, of one person 0.3-0.5: with
# components of N(0, 0.0625^2) two people are about 1.0 apart, and a noise of N(0, 0.015^2)
# keeps one person's photos about 0.25 apart.

_RNG = np.random.default_rng(20240601)
_BASES = {name: _RNG.normal(0, 0.0625, 128) for name in ("ann", "bob", "cat")}


def fake(person: str, n: int, seed: int = 0) -> KnownPhoto:
    rng = np.random.default_rng([seed, n, ord(person[0])])
    descriptor = (_BASES[person] + rng.normal(0, 0.015, 128)).astype(np.float32)
    sha = hashlib.sha256(f"{person}-{n}-{seed}".encode()).hexdigest()
    return KnownPhoto(sha256=sha, dhash=int(rng.integers(0, 2**63)), descriptor=descriptor)


def test_synthetic_descriptors_behave_like_dlib_ones() -> None:
    same = np.linalg.norm(fake("ann", 1).descriptor - fake("ann", 2).descriptor)
    other = np.linalg.norm(fake("ann", 1).descriptor - fake("bob", 1).descriptor)
    assert same < 0.4 < SETTINGS.identity_threshold < 0.8 < other


@pytest.mark.parametrize("position", range(6))
def test_synthetic_odd_one_out_is_refused_wherever_it_is(position: int) -> None:
    batch: list[KnownPhoto | None] = [fake("ann", i) for i in range(5)]
    batch.insert(position, fake("bob", 0))
    verdicts = judge_set(batch, [], SETTINGS)
    assert verdicts == [OTHER_PERSON if i == position else None for i in range(6)]


def test_a_tie_in_a_first_batch_goes_to_the_earliest_person() -> None:
    batch = [fake("bob", 0), fake("ann", 0), fake("ann", 1), fake("bob", 1)]
    assert judge_set(batch, [], SETTINGS) == [None, OTHER_PERSON, OTHER_PERSON, None]


def test_known_photos_of_another_person_refuse_the_candidate() -> None:
    reference = [fake("ann", i) for i in range(3)]
    verdicts = judge_set([fake("bob", 0), fake("ann", 9), fake("cat", 0)], reference, SETTINGS)
    assert verdicts == [OTHER_PERSON, None, OTHER_PERSON]


def test_single_first_photo_is_accepted() -> None:
    assert judge_set([fake("cat", 0)], [], SETTINGS) == [None]


def test_exact_duplicate_by_sha256_even_with_another_hash() -> None:
    a = fake("ann", 0)
    same_bytes = KnownPhoto(sha256=a.sha256, dhash=~a.dhash & (2**64 - 1), descriptor=a.descriptor)
    assert judge_set([same_bytes], [a], SETTINGS) == [DUPLICATE]


def test_near_duplicate_threshold_on_the_perceptual_hash() -> None:
    a = fake("ann", 0)
    limit = SETTINGS.duplicate_hash_distance
    close = KnownPhoto("x" * 64, a.dhash ^ ((1 << limit) - 1), fake("ann", 1).descriptor)
    far = KnownPhoto("y" * 64, a.dhash ^ ((1 << (limit + 1)) - 1), fake("ann", 2).descriptor)
    assert judge_set([close, far], [a], SETTINGS) == [NEAR_DUPLICATE, None]


def test_photo_limit_refuses_the_photos_beyond_it() -> None:
    settings = IntakeSettings(max_photos=3)
    verdicts = judge_set([fake("ann", i) for i in range(5)], [], settings)
    assert verdicts[:3] == [None, None, None]
    assert is_limit(verdicts[3], 3) and is_limit(verdicts[4], 3)


def test_photo_limit_counts_known_photos() -> None:
    settings = IntakeSettings(max_photos=3)
    reference = [fake("ann", i) for i in range(2)]
    verdicts = judge_set([fake("ann", i) for i in range(2, 5)], reference, settings)
    assert verdicts[0] is None
    assert all(is_limit(v, 3) for v in verdicts[1:])
    full = [fake("ann", i) for i in range(3)]
    assert is_limit(judge_set([fake("ann", 7)], full, settings)[0], 3)


def test_refused_photos_do_not_use_up_the_limit() -> None:
    settings = IntakeSettings(max_photos=3)
    a = fake("ann", 0)
    batch = [a, a, fake("bob", 0), fake("ann", 1), fake("ann", 2)]
    assert judge_set(batch, [], settings) == [None, DUPLICATE, OTHER_PERSON, None, None]


def test_none_entries_stay_none() -> None:
    assert judge_set([], [], SETTINGS) == []
    assert judge_set([None, None], [fake("ann", 0)], SETTINGS) == [None, None]
    batch = [None, fake("ann", 0), None, fake("ann", 1), None]
    assert judge_set(batch, [], SETTINGS) == [None] * 5
    # A None is neither counted against the limit nor mistaken for a person.
    verdicts = judge_set(batch, [], IntakeSettings(max_photos=1))
    assert verdicts[:3] == [None, None, None] and verdicts[4] is None
    assert is_limit(verdicts[3], 1)
    mixed = [None, fake("bob", 0), fake("ann", 0), None, fake("ann", 1)]
    assert judge_set(mixed, [], SETTINGS) == [None, OTHER_PERSON, None, None, None]
