"""The HTTP side of `selfiebooth run`: Prometheus metrics (/metrics) and a health check
(/healthz) on the address `[operations] listen` names, and the admin web console
(bot.web) on `[web] listen`; one server when both name the same address.

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

from bot.config import Config, listen_address
from bot.core import Booth
from bot.core.telemetry import QUEUE_DEPTH, REGISTRY
from engine.jobs import KINDS
from engine.models.styles import MAX_STYLE_BYTES

__all__ = ["Chat", "HttpServer", "OperationsServer", "http_servers"]

_log = logging.getLogger(__name__)


class Chat(Protocol):
    @property
    def connected(self) -> bool: ...


class HttpServer:
    """One aiohttp application served on one address."""

    def __init__(self, app: web.Application, host: str, port: int, what: str) -> None:
        self.host, self.port, self.what = host, port, what
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        _log.info("%s on http://%s:%d/", self.what, self.host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()


def http_servers(booth: Booth, chats: Mapping[str, Chat], config: Config) -> list[HttpServer]:
    """The servers the config asks for: operations and the console, one per address."""
    apps: dict[tuple[str, int], tuple[web.Application, list[str]]] = {}
    console = listen_address(config.web)

    def app_on(address: tuple[str, int]) -> tuple[web.Application, list[str]]:
        if address not in apps:
            # The console takes style LoRA files; a request body is read only once its
            # session is checked (bot.web.console).
            size = MAX_STYLE_BYTES + (1 << 20) if address == console else 1 << 20
            apps[address] = (web.Application(client_max_size=size), [])
        return apps[address]

    if (address := listen_address(config.operations)) is not None:
        app, what = app_on(address)
        OperationsServer(booth, chats).add_routes(app)
        what.append("metrics and health checks")
    if console is not None:
        from bot.web import add_console_routes  # jinja2 is loaded only for the console

        app, what = app_on(console)
        add_console_routes(app, booth)
        what.append("the admin web console")
    return [HttpServer(app, *address, " and ".join(what)) for address, (app, what) in apps.items()]


class OperationsServer:
    def __init__(self, booth: Booth, chats: Mapping[str, Chat]) -> None:
        self.booth = booth
        self.chats = chats

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)

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
            for n, engine in enumerate(dispatcher.engines):
                healthy &= not engine.exited
                checks["engine" if n == 0 else f"engine {n + 1}"] = engine.describe()
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
