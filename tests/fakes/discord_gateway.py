"""The gateway websocket of the fake Discord: HELLO, IDENTIFY and READY, heartbeat ACKs,
DISPATCH frames, and RESUME after a dropped connection (missed frames are replayed).

Frames are plain-text JSON, which discord.py accepts whatever compression it asked for.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from fakes.discord_records import APP_ID, BOT_TOKEN, BOT_USER, snowflake

__all__ = ["FakeGateway"]

HEARTBEAT_MS = 41_250


class FakeGateway:
    def __init__(
        self,
        resume_url: Callable[[], str],
        on_send: Callable[[dict[str, Any]], None],
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self._resume_url = resume_url
        self._on_send = on_send  # sees each DISPATCH just before it goes out
        self._notify = notify
        self.log: list[dict[str, Any]] = []  # every frame the bot sent
        self.connections: list[str] = []  # the path of each connection
        self.session_id: str | None = None
        self._seq = 0
        self._sent: list[dict[str, Any]] = []  # the session's dispatches, for RESUME
        self._ws: web.WebSocketResponse | None = None

    @property
    def connected(self) -> bool:
        return self._ws is not None and self.session_id is not None and not self._ws.closed

    def frames(self, op: int) -> list[dict[str, Any]]:
        return [f for f in self.log if f.get("op") == op]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH now, or keep it for the RESUME if the bot is away."""
        self._seq += 1
        frame = {"op": 0, "s": self._seq, "t": event, "d": data}
        self._sent.append(frame)
        if self.connected:
            await self._send(frame)

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        self._on_send(frame)
        await self._ws.send_str(json.dumps(frame))

    async def drop(self) -> None:
        """Cut the websocket without a close frame, as a network failure would."""
        ws = self._ws
        assert ws is not None
        self._ws = None
        request = ws._req  # aiohttp keeps no public handle on the connection
        if request is not None and request.transport is not None:
            request.transport.abort()
        await self._notify()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections.append(request.path)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": HEARTBEAT_MS}}))
        async for msg in ws:
            frame = json.loads(msg.data)
            self.log.append(frame)
            op, d = frame.get("op"), frame.get("d") or {}
            if op == 1:
                await ws.send_str(json.dumps({"op": 11}))
            elif op == 2:
                if d.get("token") != BOT_TOKEN:
                    await ws.close(code=4004, message=b"Authentication failed.")
                    break
                self._ws, self.session_id, self._seq, self._sent = ws, f"s{snowflake()}", 0, []
                await self.dispatch("READY", self._ready())
            elif op == 6:
                if d.get("session_id") != self.session_id or d.get("token") != BOT_TOKEN:
                    await ws.send_str(json.dumps({"op": 9, "d": False}))
                    continue
                self._ws = ws
                for missed in [f for f in self._sent if f["s"] > int(d.get("seq") or 0)]:
                    await self._send(missed)
                self._seq += 1
                await ws.send_str(json.dumps({"op": 0, "s": self._seq, "t": "RESUMED", "d": {}}))
            await self._notify()
        if self._ws is ws:
            self._ws = None
        await self._notify()
        return ws

    def _ready(self) -> dict[str, Any]:
        return {
            "v": 10,
            "user": BOT_USER.payload() | {"bot": True},
            "session_id": self.session_id,
            "resume_gateway_url": self._resume_url(),
            "guilds": [],
            "application": {"id": str(APP_ID), "flags": 0},
        }
