"""Shared fixtures: a config in a temporary data dir, the core over it, the shared photos."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers_images import faces_absent_reason, faces_dir

from bot.config import Config, load_config
from bot.core import Booth, open_booth
from engine.intake import FaceAnalyzer


@pytest.fixture(scope="session")
def faces() -> Path:
    root = faces_dir()
    if not (root / "people").is_dir():
        pytest.skip(faces_absent_reason())
    return root


@pytest.fixture(scope="session")
def analyzer() -> FaceAnalyzer:
    return FaceAnalyzer()


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
