"""The operations endpoint of `selfiebooth run`: Prometheus metrics (/metrics) and a
health check (/healthz) over HTTP, on the address `[operations] listen` names.

/healthz answers 200 when the database answers a query, the engine process is running
(or not started yet: it starts with the first job), and every chat served is connected;
otherwise 503. Both answers say what each check found.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot.core import Booth
from bot.core.telemetry import QUEUE_DEPTH, REGISTRY
from engine.jobs import KINDS

__all__ = ["Chat", "OperationsServer"]

_log = logging.getLogger(__name__)


class Chat(Protocol):
    @property
    def connected(self) -> bool: ...


class OperationsServer:
    def __init__(self, booth: Booth, chats: Mapping[str, Chat], host: str, port: int) -> None:
        self.booth = booth
        self.chats = chats
        self.host, self.port = host, port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        _log.info("metrics and health checks on http://%s:%d/", self.host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def health(self) -> tuple[bool, dict[str, str]]:
        """Whether all is well, and what each check found."""
        checks: dict[str, str] = {}
        healthy = True
        try:
            await self.booth.jobs.depth()
            checks["database"] = "ok"
        except Exception as exc:  # whatever the driver raises, the answer is "down"
            healthy = False
            checks["database"] = f"failing: {type(exc).__name__}: {exc}"
        dispatcher = self.booth.dispatcher
        if dispatcher is not None:
            healthy &= not dispatcher.engine.exited
            checks["engine"] = dispatcher.engine.describe()
        for name, chat in self.chats.items():
            healthy &= chat.connected
            checks[name] = "connected" if chat.connected else "not connected"
        return healthy, checks

    async def _metrics(self, request: web.Request) -> web.Response:
        # The queue is counted now: other processes (the command line) add to it too.
        depth = await self.booth.jobs.depth()
        for kind in KINDS:
            QUEUE_DEPTH.labels(kind).set(depth.get(kind, 0))
        return web.Response(
            body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, request: web.Request) -> web.Response:
        healthy, checks = await self.health()
        status = "ok" if healthy else "unhealthy"
        return web.json_response(
            {"status": status, "checks": checks}, status=200 if healthy else 503
        )
