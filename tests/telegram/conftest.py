"""Fixtures of the Telegram tests: a fake Bot API on loopback for the real PTB bot."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fakes.telegram_api import FakeTelegram


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram()
    await server.start()
    yield server
    await server.stop()
