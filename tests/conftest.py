"""Shared fixtures: a config in a temporary data dir, the core over it, the shared photos,
and the tiny model's pipeline (built once per session, loaded once per module)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers_images import faces_absent_reason, faces_dir

from bot.config import Config, load_config
from bot.core import Booth, open_booth
from engine.intake import FaceAnalyzer

if TYPE_CHECKING:
    from engine.models.pipeline import Pipeline


@pytest.fixture(scope="session")
def faces() -> Path:
    root = faces_dir()
    if not (root / "people").is_dir():
        pytest.skip(faces_absent_reason())
    return root


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the tiny model is built, once for the whole run."""
    return tmp_path_factory.getbasetemp() / "models"


@pytest.fixture(scope="module")
def pipe(models_dir: Path) -> Pipeline:
    """The tiny model's pipeline, one per module: tests load adapters into it."""
    # Imported here: most tests never load a model, and diffusers is slow to import.
    from engine.models import FAMILIES
    from engine.models.loader import load_pipeline

    return load_pipeline("tiny", FAMILIES["tiny"], "cpu", models_dir=models_dir)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    config = load_config(None, environ={}, data_dir=tmp_path / "data")
    # Tests type faster than people: the command rate limit has tests of its own.
    moderation = dataclasses.replace(
        config.moderation, commands_per_minute=6000, command_burst=1000
    )
    return dataclasses.replace(config, moderation=moderation)


@pytest.fixture
async def booth(config: Config, analyzer: FaceAnalyzer) -> AsyncIterator[Booth]:
    async with open_booth(config, analyzer) as booth:
        yield booth
