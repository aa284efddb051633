"""Fixtures of the Discord tests: a fake Discord on loopback and the real bot over the real
core (SQLite, the engine subprocess on the tiny model)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator

import pytest
from discord_harness import ADMIN, EDIT_INTERVAL, Bot, running_bot
from fakes.discord_api import FakeDiscord

from bot.config import Config
from engine.intake import FaceAnalyzer


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def discord_config(config: Config, fake: FakeDiscord) -> Config:
    discord = dataclasses.replace(
        config.discord,
        api_base_url=fake.api_url,
        gateway_url=fake.gateway_url,
        admin_ids=(str(ADMIN.id),),
        edit_interval=EDIT_INTERVAL,
    )
    training = dataclasses.replace(
        config.training, min_photos=3, steps=4, checkpoint_every=2, sample_every=4
    )
    # The image filter has tests of its own; here its model would only add load time.
    screening = dataclasses.replace(config.image_filter, enabled=False)
    return dataclasses.replace(config, discord=discord, training=training, image_filter=screening)


@pytest.fixture
async def bot(
    discord_config: Config, fake: FakeDiscord, analyzer: FaceAnalyzer
) -> AsyncIterator[Bot]:
    async with running_bot(discord_config, fake, analyzer) as running:
        yield running
