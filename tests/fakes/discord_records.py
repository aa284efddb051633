"""The records of the fake Discord (users, messages, interactions, requests) and the
helpers that write and read its wire format; see discord_api.py."""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

APP_ID = 1_100_000_000_000_000_001
BOT_TOKEN = "fake-discord-bot-token"  # not a secret: it only opens this fake
GUILD_ID = 1_100_000_000_000_000_002
CHANNEL_ID = 1_100_000_000_000_000_003
EPHEMERAL = 1 << 6
LOADING = 1 << 7
ACK_DEADLINE = 3.0
TOKEN_LIFETIME = 15 * 60.0
DEFAULT_SIZE_LIMIT = 10 * 1024 * 1024
# Option types of application commands (Discord's numbering).
OPTION_TYPES = {"string": 3, "integer": 4, "boolean": 5, "number": 10, "attachment": 11}
DISCORD_EPOCH_MS = 1_420_070_400_000
_sequence = itertools.count()


def snowflake() -> int:
    """A new id that, as Discord's do, carries its creation time (milliseconds since
    Discord's epoch, above bit 22): discord.py reads `created_at` from it."""
    now = int(time.time() * 1000) - DISCORD_EPOCH_MS
    return (now << 22) | (next(_sequence) % (1 << 22))


@dataclass(frozen=True)
class FakeUser:
    id: int
    name: str
    # Guild permissions as Discord sends them (a decimal bit field).
    permissions: int = 0

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "discriminator": "0",
            "global_name": self.name.title(),
            "avatar": None,
        }


BOT_USER = FakeUser(APP_ID, "selfiebooth")


@dataclass
class FakeMessage:
    id: int
    channel_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    interaction_id: int | None = None
    deleted: bool = False
    # Every state the message showed: (monotonic time, content, attachment names).
    history: list[tuple[float, str, tuple[str, ...]]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def custom_ids(self) -> list[str]:
        return [c["custom_id"] for row in self.components for c in row.get("components", [])]

    def button(self, label: str) -> str:
        """The custom id of the button labelled `label` (a prefix is enough)."""
        for row in self.components:
            for c in row.get("components", []):
                if str(c.get("label", "")).startswith(label):
                    return str(c["custom_id"])
        raise AssertionError(f"no button {label!r} on message {self.id}: {self.components}")

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "type": 0 if self.interaction_id is None else 20,
            "content": self.content,
            "author": BOT_USER.payload() | {"bot": True},
            "attachments": self.attachments,
            "embeds": self.embeds,
            "components": self.components,
            "flags": self.flags,
            "timestamp": "2026-11-01T12:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "pinned": False,
        }
        if self.interaction_id is not None:
            data["webhook_id"] = str(APP_ID)
            data["application_id"] = str(APP_ID)
        return data


@dataclass
class FakeInteraction:
    id: int
    token: str
    kind: int
    user: FakeUser
    payload: dict[str, Any]
    size_limit: int
    dispatched_at: float | None = None
    callback_type: int | None = None
    callback_at: float | None = None
    # The message the interaction answered with, or the component's message.
    original: int | None = None
    followups: list[int] = field(default_factory=list)
    expired: bool = False
    autocomplete: list[dict[str, Any]] | None = None

    @property
    def name(self) -> str:
        return str(self.payload["data"].get("name") or self.payload["data"].get("custom_id"))


@dataclass(frozen=True)
class Request:
    at: float
    method: str
    path: str
    status: int


class FakeCdn:
    """Files by key: what users attached, and what the bot uploaded."""

    def __init__(self, base: Callable[[], str]) -> None:
        self._base = base
        self.files: dict[str, bytes] = {}
        self.downloads: list[str] = []  # keys, in the order they were fetched

    def store(self, channel_id: int, name: str, data: bytes) -> dict[str, Any]:
        """Keep `data`; its attachment as a message carries it."""
        attachment_id = snowflake()
        key = f"attachments/{channel_id}/{attachment_id}/{name}"
        self.files[key] = data
        url = f"{self._base()}/cdn/{key}"
        return {
            "id": str(attachment_id),
            "filename": name,
            "size": len(data),
            "url": url,
            "proxy_url": url,
        }

    def read(self, attachment: dict[str, Any]) -> bytes:
        return self.files[str(attachment["url"]).split("/cdn/", 1)[1]]

    async def handle(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if key not in self.files:
            return web.Response(status=404)
        self.downloads.append(key)
        return web.Response(body=self.files[key], content_type="application/octet-stream")


class Buckets:
    """Discord's rate limits as fixed windows per key, and the headers that announce them."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._windows: dict[str, tuple[float, int]] = {}

    def take(self, key: str) -> float | None:
        """Count one request; None if allowed, else the seconds until the window ends."""
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count >= self.limit:
            return start + self.window - now
        self._windows[key] = (start, count + 1)
        return None

    def headers(self, key: str, response: web.Response) -> web.Response:
        """X-RateLimit-* as Discord sends them, so that a client can keep within them."""
        now = time.monotonic()
        start, count = self._windows.get(key, (now, 0))
        response.headers["X-RateLimit-Limit"] = str(self.limit)
        response.headers["X-RateLimit-Remaining"] = str(max(0, self.limit - count))
        response.headers["X-RateLimit-Reset-After"] = f"{max(0.0, start + self.window - now):.3f}"
        response.headers["X-RateLimit-Bucket"] = f"bucket-{abs(hash(key)) % 10**8}"
        return response


def interaction_payload(
    interaction_id: int,
    user: FakeUser,
    kind: int,
    data: dict[str, Any],
    size_limit: int,
    channel_id: int,
    *,
    dm: bool,
) -> dict[str, Any]:
    """An INTERACTION_CREATE as Discord sends it, from a guild channel or a DM."""
    payload: dict[str, Any] = {
        "id": str(interaction_id),
        "application_id": str(APP_ID),
        "type": kind,
        "data": data,
        "token": f"itoken-{interaction_id}",
        "version": 1,
        "locale": "en-US",
        "app_permissions": str((1 << 41) - 1),
        "entitlements": [],
        "attachment_size_limit": size_limit,
        "authorizing_integration_owners": {"0": str(GUILD_ID)},
        "channel_id": str(channel_id),
    }
    if dm:
        return payload | {
            "context": 1,
            "channel": {"id": str(channel_id), "type": 1, "recipients": [user.payload()]},
            "user": user.payload(),
        }
    return payload | {
        "context": 0,
        "guild_id": str(GUILD_ID),
        "guild_locale": "en-US",
        "channel": {
            "id": str(channel_id),
            "type": 0,
            "guild_id": str(GUILD_ID),
            "name": "selfies",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
        },
        "member": {
            "user": user.payload(),
            "roles": [],
            "joined_at": "2026-01-01T00:00:00+00:00",
            "deaf": False,
            "mute": False,
            "flags": 0,
            "permissions": str(user.permissions),
        },
    }


def json_response(data: Any, status: int = 200) -> web.Response:
    # Exactly "application/json": discord.py parses nothing else as JSON.
    response = web.Response(body=json.dumps(data).encode(), status=status)
    response.headers["Content-Type"] = "application/json"
    return response


def error_response(status: int, code: int, message: str) -> web.Response:
    return json_response({"code": code, "message": message}, status)


def rate_limited(retry_after: float) -> web.Response:
    response = json_response(
        {"message": "You are being rate limited.", "retry_after": retry_after, "global": False},
        429,
    )
    # Without Via, discord.py takes a 429 for a Cloudflare ban and gives up.
    response.headers["Via"] = "1.1 google"
    response.headers["Retry-After"] = f"{retry_after:.3f}"
    response.headers["X-RateLimit-Scope"] = "user"
    return response


async def read_body(request: web.Request) -> tuple[dict[str, Any], dict[int, tuple[str, bytes]]]:
    """The JSON payload and the files of a request (JSON or multipart)."""
    if request.content_type != "multipart/form-data":
        raw = await request.read()
        return (json.loads(raw) if raw else {}), {}
    payload: dict[str, Any] = {}
    files: dict[int, tuple[str, bytes]] = {}
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        name = getattr(part, "name", None)
        data = await part.read()  # type: ignore[union-attr]
        if name == "payload_json":
            payload = json.loads(data)
        elif name is not None and (m := re.fullmatch(r"files\[(\d+)\]", name)):
            files[int(m[1])] = (getattr(part, "filename", None) or name, bytes(data))
    return payload, files
