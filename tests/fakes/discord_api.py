"""A local fake of Discord for the tests: the HTTP API routes the bot uses, a gateway
websocket and a CDN, all on one aiohttp server on loopback.

The real discord.py client connects to it. It records every request and enforces the
platform's rules the bot must keep (first callback within 3 seconds, one callback per
interaction, no follow-up before it, 2000 characters, 10 files, 5 rows of 5 buttons,
file size, rate limits); a broken rule is answered as Discord would and kept in
`violations`, which the tests assert empty. Tests wait on its records with `wait_for`,
never with sleeps.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from fakes.discord_gateway import FakeGateway
from fakes.discord_records import (
    ACK_DEADLINE,
    APP_ID,
    BOT_TOKEN,
    BOT_USER,
    CHANNEL_ID,
    DEFAULT_SIZE_LIMIT,
    EPHEMERAL,
    LOADING,
    OPTION_TYPES,
    TOKEN_LIFETIME,
    Buckets,
    FakeCdn,
    FakeInteraction,
    FakeMessage,
    FakeUser,
    Request,
    error_response,
    interaction_payload,
    json_response,
    rate_limited,
    read_body,
    snowflake,
)

__all__ = [
    "BOT_TOKEN",
    "CHANNEL_ID",
    "EPHEMERAL",
    "FakeDiscord",
    "FakeInteraction",
    "FakeMessage",
    "FakeUser",
    "snowflake",
]


class FakeDiscord:
    """The fake; `await start()`, then point the bot at `api_url` and `gateway_url`."""

    def __init__(
        self,
        *,
        ack_deadline: float = ACK_DEADLINE,
        token_lifetime: float = TOKEN_LIFETIME,
        webhook_rate: tuple[int, float] = (30, 1.0),
    ) -> None:
        self.ack_deadline = ack_deadline
        self.token_lifetime = token_lifetime
        # Requests per window for one interaction token, as Discord's webhook buckets.
        self.buckets = Buckets(*webhook_rate)
        self.violations: list[str] = []
        self.requests: list[Request] = []
        self.commands: dict[str | None, list[dict[str, Any]]] = {}
        self.messages: dict[int, FakeMessage] = {}
        self.interactions: dict[int, FakeInteraction] = {}
        self.dm_channels: dict[int, int] = {}  # user id -> DM channel id
        self.forbidden_channels: set[int] = set()
        self.cdn = FakeCdn(lambda: self.base)
        self.gateway = FakeGateway(
            lambda: f"ws://127.0.0.1:{self.port}/resume", self._dispatched, self._notify
        )
        self._throttle_next: list[str] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[self._record])
        r = app.router
        api = "/api/v10"
        r.add_get(f"{api}/gateway", self._gateway_url)
        r.add_get(f"{api}/gateway/bot", self._gateway_url)
        r.add_get(f"{api}/users/@me", self._me)
        r.add_get(f"{api}/oauth2/applications/@me", self._application)
        r.add_put(f"{api}/applications/{{app}}/commands", self._put_commands)
        r.add_put(f"{api}/applications/{{app}}/guilds/{{guild}}/commands", self._put_commands)
        r.add_post(f"{api}/interactions/{{id}}/{{token}}/callback", self._callback)
        r.add_post(f"{api}/webhooks/{{app}}/{{token}}", self._followup)
        r.add_route(
            "*", f"{api}/webhooks/{{app}}/{{token}}/messages/{{message}}", self._webhook_msg
        )
        r.add_post(f"{api}/channels/{{channel}}/messages", self._channel_post)
        r.add_route("*", f"{api}/channels/{{channel}}/messages/{{message}}", self._channel_msg)
        r.add_post(f"{api}/users/@me/channels", self._open_dm)
        r.add_get("/cdn/{key:.+}", self.cdn.handle)
        r.add_get("/gateway", self.gateway.handle)
        r.add_get("/resume", self.gateway.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    # waiting -----------------------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, check: Callable[[], Any], what: str, within: float = 60.0) -> Any:
        """Wait until `check()` returns something true (which is returned), or fail."""

        async def wait() -> Any:
            async with self._changed:
                while not (value := check()):
                    if self.violations:
                        raise AssertionError(f"while waiting for {what}: {self.violations}")
                    await self._changed.wait()
                return value

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            raise AssertionError(f"timed out after {within} s waiting for {what}") from None

    def violate(self, text: str) -> None:
        # Waiters notice at the next notify (every request ends with one).
        self.violations.append(text)

    # what tests do as users ----------------------------------------------------------------

    def attachment(self, filename: str, data: bytes, *, size: int | None = None) -> dict[str, Any]:
        """An attachment a user uploaded; `size` may claim more than the bytes held."""
        attachment = self.cdn.store(CHANNEL_ID, filename, data)
        content_type = "image/jpeg" if filename.endswith(".jpg") else "image/png"
        return attachment | {
            "size": len(data) if size is None else size,
            "content_type": content_type,
        }

    @property
    def downloads(self) -> list[str]:
        return self.cdn.downloads

    async def command(
        self,
        user: FakeUser,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        dm: bool = False,
        focused: str | None = None,
    ) -> FakeInteraction:
        """A user runs /name with options (attachment options take attachment() dicts)."""
        command = self._command(name)
        kinds = {o["name"]: o["type"] for o in command.get("options", [])}
        data: dict[str, Any] = {"id": command["id"], "name": name, "type": 1, "options": []}
        attachments: dict[str, Any] = {}
        for key, value in (options or {}).items():
            if key not in kinds:
                raise AssertionError(f"/{name} has no option {key!r}: {sorted(kinds)}")
            option: dict[str, Any] = {"name": key, "type": kinds[key], "value": value}
            if kinds[key] == OPTION_TYPES["attachment"]:
                attachments[value["id"]] = value
                option["value"] = value["id"]
            if key == focused:
                option["focused"] = True
            data["options"].append(option)
        if attachments:
            data["resolved"] = {"attachments": attachments}
        kind = 4 if focused else 2
        return await self.dispatch_interaction(user, kind, data, size_limit=size_limit, dm=dm)

    async def press(
        self,
        user: FakeUser,
        message: FakeMessage,
        custom_id: str,
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
    ) -> FakeInteraction:
        if custom_id not in message.custom_ids():
            raise AssertionError(f"message {message.id} has no button {custom_id!r}")
        data = {"custom_id": custom_id, "component_type": 2}
        return await self.dispatch_interaction(
            user, 3, data, size_limit=size_limit, message=message
        )

    async def dispatch_interaction(
        self,
        user: FakeUser,
        kind: int,
        data: dict[str, Any],
        *,
        size_limit: int = DEFAULT_SIZE_LIMIT,
        dm: bool = False,
        message: FakeMessage | None = None,
    ) -> FakeInteraction:
        interaction_id = snowflake()
        in_dm = dm or (message is not None and message.channel_id in self.dm_channels.values())
        if message is not None:
            channel_id = message.channel_id
        else:
            channel_id = self._dm(user.id) if in_dm else CHANNEL_ID
        payload = interaction_payload(
            interaction_id, user, kind, data, size_limit, channel_id, dm=in_dm
        )
        interaction = FakeInteraction(
            interaction_id, payload["token"], kind, user, payload, size_limit
        )
        if message is not None:
            payload["message"] = message.payload()
            interaction.original = message.id
        self.interactions[interaction_id] = interaction
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def expire(self, interaction: FakeInteraction) -> None:
        """End the interaction's token now, as 15 minutes would."""
        interaction.expired = True

    def throttle_next(self, method: str) -> None:
        """Answer the next webhook request of `method` with a 429 (Retry-After 0.3 s)."""
        self._throttle_next.append(method)

    # what tests read ---------------------------------------------------------------------

    def original(self, interaction: FakeInteraction) -> FakeMessage | None:
        return self.messages.get(interaction.original) if interaction.original else None

    def answered(self, interaction: FakeInteraction) -> FakeMessage | None:
        """The interaction's own message once it shows an answer (not "thinking")."""
        message = self.original(interaction)
        if message is None or message.loading or interaction.callback_type in (6, None):
            return None
        return message

    async def reply(self, interaction: FakeInteraction, what: str = "") -> FakeMessage:
        result: FakeMessage = await self.wait_for(
            lambda: self.answered(interaction), what or f"the answer to {interaction.name}"
        )
        return result

    def followups(self, interaction: FakeInteraction) -> list[FakeMessage]:
        return [self.messages[m] for m in interaction.followups]

    def channel_messages(self, channel_id: int) -> list[FakeMessage]:
        return [
            m
            for m in self.messages.values()
            if m.channel_id == channel_id and m.interaction_id is None and not m.deleted
        ]

    def dm_messages(self, user: FakeUser) -> list[FakeMessage]:
        channel = self.dm_channels.get(user.id)
        return [] if channel is None else self.channel_messages(channel)

    def file(self, attachment: dict[str, Any]) -> bytes:
        return self.cdn.read(attachment)

    def bot_requests(self, pattern: str) -> list[Request]:
        return [r for r in self.requests if re.search(pattern, f"{r.method} {r.path}")]

    async def settled(self, within: float = 30.0) -> None:
        """Every interaction answered (none left "thinking"), and no rule broken."""
        await self.wait_for(
            lambda: all(
                i.callback_at is not None
                and not ((m := self.original(i)) is not None and m.loading and not i.followups)
                for i in self.interactions.values()
                if i.dispatched_at is not None
            ),
            "every interaction to be answered",
            within,
        )
        assert self.violations == [], self.violations

    # the gateway ---------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        await self.wait_for(lambda: self.gateway.connected, "the bot's IDENTIFY")

    @property
    def session_id(self) -> str | None:
        return self.gateway.session_id

    @property
    def connections(self) -> list[str]:
        return self.gateway.connections

    def frames(self, op: int) -> list[dict[str, Any]]:
        return self.gateway.frames(op)

    async def drop_gateway(self) -> None:
        await self.gateway.drop()

    def _dispatched(self, frame: dict[str, Any]) -> None:
        # The 3 seconds start when the bot is sent the interaction (again, on a RESUME).
        if frame.get("t") == "INTERACTION_CREATE":
            self.interactions[int(frame["d"]["id"])].dispatched_at = time.monotonic()

    async def _gateway_url(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    # HTTP: the bot's own routes ------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        bot_route = request.path.startswith("/api/v10/") and not request.path.startswith(
            ("/api/v10/interactions/", "/api/v10/webhooks/")
        )
        if bot_route and request.headers.get("Authorization") != f"Bot {BOT_TOKEN}":
            response: web.StreamResponse = error_response(401, 0, "401: Unauthorized")
        else:
            response = await handler(request)
        self.requests.append(
            Request(time.monotonic(), request.method, request.path, response.status)
        )
        await self._notify()
        return response

    async def _me(self, request: web.Request) -> web.Response:
        return json_response(BOT_USER.payload() | {"bot": True, "flags": 0, "verified": True})

    async def _application(self, request: web.Request) -> web.Response:
        return json_response(
            {
                "id": str(APP_ID),
                "name": "selfiebooth",
                "description": "",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": FakeUser(1, "owner").payload(),
                "verify_key": "00",
                "flags": 0,
            }
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        body = await request.json()
        out = []
        for command in body:
            name = command.get("name", "")
            if not re.fullmatch(r"[-_a-z0-9]{1,32}", name) or not command.get("description"):
                return error_response(400, 50035, f"Invalid Form Body: command {name!r}")
            out.append(command | {"id": str(snowflake()), "application_id": str(APP_ID)})
        self.commands[request.match_info.get("guild")] = out
        return json_response(out)

    def _command(self, name: str) -> dict[str, Any]:
        for commands in self.commands.values():
            for command in commands:
                if command["name"] == name:
                    return command
        raise AssertionError(f"/{name} was never registered: {list(self.commands)}")

    async def _channel_post(self, request: web.Request) -> web.Response:
        channel_id = int(request.match_info["channel"])
        if channel_id in self.forbidden_channels:
            return error_response(403, 50001, "Missing Access")
        body, files = await read_body(request)
        message = FakeMessage(snowflake(), channel_id)
        problem = self._apply(message, body, files, DEFAULT_SIZE_LIMIT)
        if problem is not None:
            return problem
        self.messages[message.id] = message
        return self._limited(f"channel:{channel_id}", json_response(message.payload()))

    async def _channel_msg(self, request: web.Request) -> web.Response:
        message = self.messages.get(int(request.match_info["message"]))
        if message is None or message.deleted:
            return error_response(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            message.deleted = True
            return web.Response(status=204)
        body, files = await read_body(request)
        problem = self._apply(message, body, files, DEFAULT_SIZE_LIMIT)
        return problem or json_response(message.payload())

    async def _open_dm(self, request: web.Request) -> web.Response:
        body = await request.json()
        user_id = int(body["recipient_id"])
        channel_id = self._dm(user_id)
        return json_response(
            {
                "id": str(channel_id),
                "type": 1,
                "recipients": [FakeUser(user_id, f"user{user_id}").payload()],
                "last_message_id": None,
            }
        )

    def _dm(self, user_id: int) -> int:
        return self.dm_channels.setdefault(user_id, snowflake())

    # HTTP: interactions and their webhooks -------------------------------------------------

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(int(request.match_info["id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            return error_response(404, 10062, "Unknown interaction")
        now = time.monotonic()
        assert interaction.dispatched_at is not None
        late = now - interaction.dispatched_at
        if late > self.ack_deadline:
            self.violate(f"{interaction.name}: first callback after {late:.2f} s")
            return error_response(404, 10062, "Unknown interaction")
        if interaction.callback_type is not None:
            self.violate(f"{interaction.name}: a second callback")
            return error_response(400, 40060, "Interaction has already been acknowledged.")
        body, files = await read_body(request)
        kind, data = int(body["type"]), body.get("data") or {}
        message: FakeMessage | None = None
        if kind in (4, 5):
            message = FakeMessage(
                snowflake(),
                int(interaction.payload["channel_id"]),
                flags=int(data.get("flags", 0)) & EPHEMERAL | (LOADING if kind == 5 else 0),
                interaction_id=interaction.id,
            )
            if kind == 4:
                problem = self._apply(message, data, files, interaction.size_limit)
                if problem is not None:
                    return problem
            else:
                message.history.append((now, "", ()))
            self.messages[message.id] = message
            interaction.original = message.id
        elif kind == 7:
            message = self.messages[interaction.original or 0]
            problem = self._apply(message, data, files, interaction.size_limit)
            if problem is not None:
                return problem
        elif kind == 8:
            interaction.autocomplete = list(data.get("choices", []))
        elif kind == 6:
            message = self.messages.get(interaction.original or 0)
        interaction.callback_type, interaction.callback_at = kind, now
        out: dict[str, Any] = {
            "interaction": {
                "id": str(interaction.id),
                "type": interaction.kind,
                "response_message_id": str(message.id) if message else None,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(message and message.ephemeral),
            }
        }
        if message is not None and kind in (4, 5, 7):
            out["resource"] = {"type": kind, "message": message.payload()}
        return json_response(out)

    def _interaction_of(self, request: web.Request) -> FakeInteraction | web.Response:
        token = request.match_info["token"]
        interaction = next((i for i in self.interactions.values() if i.token == token), None)
        if interaction is None:
            return error_response(404, 10015, "Unknown Webhook")
        assert interaction.dispatched_at is not None
        if (
            interaction.expired
            or time.monotonic() - interaction.dispatched_at > self.token_lifetime
        ):
            return error_response(401, 50027, "Invalid Webhook Token")
        if interaction.callback_type is None:
            self.violate(f"{interaction.name}: webhook used before any callback")
            return error_response(404, 10015, "Unknown Webhook")
        return interaction

    async def _followup(self, request: web.Request) -> web.Response:
        found = self._interaction_of(request)
        if isinstance(found, web.Response):
            return found
        interaction = found
        throttled = self._throttled(request, interaction)
        if throttled is not None:
            return throttled
        body, files = await read_body(request)
        original = self.original(interaction)
        if interaction.callback_type == 5 and original is not None and original.loading:
            # Discord: the first follow-up after a deferred reply edits the "thinking" one.
            problem = self._apply(original, body, files, interaction.size_limit, edit=True)
            return problem or self._limited(interaction.token, json_response(original.payload()))
        message = FakeMessage(
            snowflake(),
            int(interaction.payload["channel_id"]),
            flags=int(body.get("flags", 0)) & EPHEMERAL,
            interaction_id=interaction.id,
        )
        problem = self._apply(message, body, files, interaction.size_limit)
        if problem is not None:
            return problem
        self.messages[message.id] = message
        interaction.followups.append(message.id)
        return self._limited(interaction.token, json_response(message.payload()))

    async def _webhook_msg(self, request: web.Request) -> web.Response:
        found = self._interaction_of(request)
        if isinstance(found, web.Response):
            return found
        interaction = found
        throttled = self._throttled(request, interaction)
        if throttled is not None:
            return throttled
        ref = request.match_info["message"]
        message_id = interaction.original if ref == "@original" else int(ref)
        ours = {interaction.original, *interaction.followups}
        message = self.messages.get(message_id or 0)
        if message is None or message.deleted or message_id not in ours:
            return error_response(404, 10008, "Unknown Message")
        if request.method == "DELETE":
            message.deleted = True
            return self._limited(interaction.token, web.Response(status=204))
        if request.method == "GET":
            return json_response(message.payload())
        body, files = await read_body(request)
        problem = self._apply(message, body, files, interaction.size_limit, edit=True)
        return problem or self._limited(interaction.token, json_response(message.payload()))

    # rules ---------------------------------------------------------------------------------

    def _apply(
        self,
        message: FakeMessage,
        body: dict[str, Any],
        files: dict[int, tuple[str, bytes]],
        size_limit: int,
        *,
        edit: bool = False,
    ) -> web.Response | None:
        """Check a message body against Discord's limits and apply it to `message`."""
        content = body.get("content")
        if content is not None and len(content) > 2000:
            return self._refuse(f"content of {len(content)} characters", 50035)
        if len(files) > 10:
            return self._refuse(f"{len(files)} files in one message", 50035)
        for name, data in files.values():
            if len(data) > size_limit:
                self.violate(f"file {name} of {len(data)} bytes over the limit {size_limit}")
                return error_response(413, 40005, "Request entity too large")
        rows = body.get("components")
        if rows is not None:
            if len(rows) > 5 or any(len(r.get("components", [])) > 5 for r in rows):
                return self._refuse("more than 5 rows of 5 components", 50035)
            for row in rows:
                for c in row.get("components", []):
                    if len(c.get("custom_id", "")) > 100 or len(c.get("label", "")) > 80:
                        return self._refuse(f"component too long: {c}", 50035)
            message.components = rows
        if content is not None:
            message.content = content
        if "embeds" in body and body["embeds"] is not None:
            message.embeds = body["embeds"]
        if "attachments" in body or files:
            message.attachments = self._attachments(message, body.get("attachments"), files)
        if edit or body:
            message.flags &= ~LOADING
        if "flags" in body and not edit:
            message.flags |= int(body["flags"]) & EPHEMERAL
        message.history.append(
            (time.monotonic(), message.content, tuple(a["filename"] for a in message.attachments))
        )
        return None

    def _attachments(
        self,
        message: FakeMessage,
        listed: list[dict[str, Any]] | None,
        files: dict[int, tuple[str, bytes]],
    ) -> list[dict[str, Any]]:
        kept = {a["id"]: a for a in message.attachments}
        out = []
        entries = listed if listed is not None else [{"id": i} for i in files]
        for entry in entries:
            index = entry.get("id")
            if str(index) in kept:
                out.append(kept[str(index)])
            elif str(index).isdigit() and int(index) in files:
                name, data = files[int(index)]
                out.append(self.cdn.store(message.channel_id, name, data))
        return out

    def _refuse(self, what: str, code: int) -> web.Response:
        self.violate(what)
        return error_response(400, code, f"Invalid Form Body: {what}")

    def _throttled(self, request: web.Request, interaction: FakeInteraction) -> web.Response | None:
        if request.method in self._throttle_next:
            self._throttle_next.remove(request.method)
            return rate_limited(0.3)
        retry_after = self.buckets.take(interaction.token)
        if retry_after is not None:
            self.violate(f"{interaction.name}: over the rate limit ({self.buckets.limit})")
            return rate_limited(retry_after)
        return None

    def _limited(self, key: str, response: web.Response) -> web.Response:
        return self.buckets.headers(key, response)

    def messages_of(self, user: FakeUser) -> Iterator[FakeMessage]:
        for i in self.interactions.values():
            if i.user == user:
                for m in (i.original, *i.followups):
                    if m is not None and m in self.messages:
                        yield self.messages[m]
