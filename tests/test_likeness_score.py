"""The likeness score of a trained model (engine.training.likeness), on the real photos in
../shared/faces, and the choice of the checkpoint that looks most like the user, with a
scorer injected into the real trainer on the tiny model."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_images import person
from PIL import Image
from safetensors.numpy import load_file
from test_dispatcher import ANN, TIMEOUT, watch, with_photos

from bot.config import Config
from bot.core import open_booth
from engine.intake import FaceAnalyzer
from engine.jobs import SAME_PERSON
from engine.models import FAMILIES
from engine.models.loader import load_pipeline
from engine.provenance import read_job_id
from engine.safety.likeness import found_faces
from engine.training import TrainingRequest, train
from engine.training.likeness import FaceLikeness, LikenessScore, best_step
from engine.training.samples import VALIDATION_SEEDS, render_validation

TINY = FAMILIES["tiny"]


def pictures(faces: Path, name: str) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in person(faces, name)]


def test_one_persons_other_photos_score_below_the_threshold_and_others_above(
    faces: Path, analyzer: FaceAnalyzer
) -> None:
    own = pictures(faces, "paul_allen")
    reference = np.mean([found_faces(p, analyzer, 1024)[1][0] for p in own[:3]], axis=0)
    scorer = FaceLikeness(reference.tolist(), analyzer)
    same = scorer(own[3:])
    assert same.distance is not None and same.distance < SAME_PERSON
    assert same.faces == same.pictures == len(own) - 3
    for stranger in ("steve_wozniak", "barack_obama"):
        other = scorer(pictures(faces, stranger)[:3])
        assert other.distance is not None and other.distance > SAME_PERSON, stranger
    assert "the same person" in same.words() and "not like you yet" in other.words()


def test_no_face_means_no_score(analyzer: FaceAnalyzer) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    score = FaceLikeness([0.0] * 128, analyzer)([Image.fromarray(noise)] * 2)
    assert score == LikenessScore(None, 0, 2)
    assert score.words().startswith("no face found in the 2 validation samples")
    with pytest.raises(ValueError, match="128 finite numbers"):
        FaceLikeness([0.0] * 127, analyzer)


def test_the_best_step_is_the_lowest_distance_and_the_later_of_equals() -> None:
    def at(distance: float | None) -> LikenessScore:
        return LikenessScore(distance, 0 if distance is None else 4, 4)

    assert best_step([(2, at(0.5)), (4, at(0.4)), (6, at(0.45)), (8, at(None))]) == 4
    assert best_step([(2, at(0.4)), (4, at(0.4))]) == 4
    assert best_step([(2, at(None)), (4, at(None))]) is None
    assert best_step([]) is None


def test_training_keeps_the_weights_of_the_best_scoring_step(
    models_dir: Path, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    crops = tuple(
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).resize(
            (TINY.resolution, TINY.resolution)
        )
        for _ in range(2)
    )
    pipe = load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)
    base = TrainingRequest(crops, "sbx7", tmp_path / "a.safetensors", seed=3, steps=8)

    def run(
        name: str, distances: dict[int, float | None]
    ) -> tuple[dict[str, np.ndarray], int, LikenessScore | None]:
        seen: list[int] = []

        def validate(step: int) -> LikenessScore:
            seen.append(step)
            distance = distances[step]
            return LikenessScore(distance, 0 if distance is None else 4, 4)

        request = dataclasses.replace(base, output=tmp_path / name, validations=4)
        result = train(pipe, TINY, request, validate=validate)
        assert seen == [2, 4, 6, 8]
        return load_file(str(result.path)), result.likeness_step, result.likeness

    last, last_step, last_score = run("last.safetensors", {2: 0.7, 4: 0.6, 6: 0.5, 8: 0.4})
    early, early_step, early_score = run("early.safetensors", {2: 0.7, 4: 0.3, 6: 0.5, 8: 0.4})
    blind, blind_step, blind_score = run("blind.safetensors", dict.fromkeys((2, 4, 6, 8)))
    assert (last_step, early_step, blind_step) == (8, 4, 8)
    assert last_score == LikenessScore(0.4, 4, 4) and early_score == LikenessScore(0.3, 4, 4)
    assert blind_score == LikenessScore(None, 0, 4)

    # The same seed and steps: the last step's weights are the same (up to the order of
    # CPU threads' sums), and step 4's differ from them.
    def apart(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
        return max(float(np.abs(a[k] - b[k]).max()) for k in a)

    assert apart(last, blind) < 1e-5 < apart(early, last)


def test_the_validation_pictures_are_fixed_seeds_of_the_trigger(models_dir: Path) -> None:
    pipe = load_pipeline("tiny", TINY, "cpu", models_dir=models_dir)
    request = TrainingRequest((), "sbx7", Path("unused"))
    first = render_validation(pipe, request)
    assert len(first) == len(VALIDATION_SEEDS)
    again = render_validation(pipe, request)
    assert all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True)
    )


async def test_the_samples_a_score_is_based_on_are_kept_with_the_version_and_erased(
    config: Config,
) -> None:
    training = dataclasses.replace(config.training, min_photos=2, steps=8, checkpoint_every=4)
    async with open_booth(dataclasses.replace(config, training=training), dispatch=True) as booth:
        await with_photos(booth, ANN, 2)
        ticket = await booth.train(ANN)
        final = await asyncio.wait_for(watch(booth, ticket.job_id), TIMEOUT)
        assert final[-1].state == "succeeded", final[-1]
        outcome = await booth.outcome(ANN, ticket.job_id)
        assert outcome.likeness == (
            "No face found in the 4 validation samples, so there is no likeness score."
        )
        assert len(outcome.pictures) == 4 and outcome.actions == ()
        assert all(read_job_id(png) == ticket.job_id for png in outcome.pictures)
        [lora] = (await booth.status(ANN)).loras
        stored = json.loads(lora.likeness or "{}")
        assert (stored["distance"], stored["faces"], stored["samples"]) == (None, 0, 4)
        assert all([await booth.blobs.exists(key) for key in stored["pictures"]])
        await booth.forget(ANN)
        assert not any([await booth.blobs.exists(key) for key in stored["pictures"]])
