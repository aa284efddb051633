"""Shared fixtures: a config in a temporary data dir, the core over it, the shared photos."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.config import Config, load_config
from bot.core import Booth, open_booth
from engine.intake import FaceAnalyzer

REPO = Path(__file__).resolve().parents[1]
FACES = Path(os.environ.get("SELFIEBOOTH_FACES_DIR", REPO.parent / "shared" / "faces"))
FACES_ABSENT = "../shared/faces is absent (the shared test photos are not part of the repository)"


@pytest.fixture(scope="session")
def faces() -> Path:
    if not (FACES / "people").is_dir():
        pytest.skip(FACES_ABSENT)
    return FACES


def person(faces: Path, name: str) -> list[Path]:
    return sorted((faces / "people" / name).glob("*.jpg"))


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(None, environ={}, data_dir=tmp_path / "data")


@pytest.fixture
async def booth(config: Config, analyzer: FaceAnalyzer) -> AsyncIterator[Booth]:
    async with open_booth(config, analyzer) as booth:
        yield booth
