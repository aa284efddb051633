"""A fake Telegram Bot API server (aiohttp) for the Telegram front end's tests.

It speaks the wire format python-telegram-bot uses (form fields, JSON inside fields,
multipart files, `attach://` media groups), keeps the chats' messages so that edits,
deletions and button presses behave as on Telegram (including "message is not modified"
and the 64-byte callback data limit), records every call with its time, serves the
updates a test scripts through long polling, and can answer with 429s or drop the
connection on chosen calls. Tests wait on its calls with timeouts, never with sleeps.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["Call", "FakeTelegram", "Person"]

TOKEN = "123456:TEST-fake-token-never-logged"
BOT_ID = 777000
BOT_USERNAME = "selfiebooth_test_bot"
DOWNLOAD_LIMIT = 20 * 1024 * 1024


@dataclass
class Call:
    method: str
    params: dict[str, str]
    files: dict[str, tuple[str, bytes]]  # part name -> (file name, bytes)
    at: float  # loop time when it arrived
    status: int = 200
    result: Any = None

    def json(self, name: str) -> Any:
        return json.loads(self.params[name])

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        return int(value) if value is not None else None

    @property
    def text(self) -> str:
        return self.params.get("text", "")

    @property
    def ok(self) -> bool:
        return self.status == 200

    def buttons(self) -> list[str]:
        """The callback data of the inline keyboard sent with this call."""
        if "reply_markup" not in self.params:
            return []
        rows = self.json("reply_markup").get("inline_keyboard", [])
        return [b["callback_data"] for row in rows for b in row if "callback_data" in b]


@dataclass(frozen=True)
class Person:
    id: int
    first_name: str

    def as_user(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": False, "first_name": self.first_name}


@dataclass
class _Failure:
    kind: str  # "429" or "disconnect"
    retry_after: int = 1


class _ApiError(Exception):
    def __init__(self, status: int, description: str, **parameters: Any) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class FakeTelegram:
    token: str = TOKEN
    calls: list[Call] = field(default_factory=list)
    messages: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    # Sizes the server announces for files, when a test says they are bigger than their bytes.
    announced_sizes: dict[str, int] = field(default_factory=dict)
    served: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(100)
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._queries: dict[str, bool] = {}  # id -> answered
        self._failures: defaultdict[str, list[_Failure]] = defaultdict(list)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # server ----------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.*}", self._download)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def file_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    # what a test scripts: people, chats, messages, presses ---------------------------

    @staticmethod
    def private(person: Person) -> dict[str, Any]:
        return {"id": person.id, "type": "private", "first_name": person.first_name}

    @staticmethod
    def group(chat_id: int = -100500, title: str = "Friends") -> dict[str, Any]:
        return {"id": chat_id, "type": "supergroup", "title": title}

    async def say(
        self, person: Person, text: str, chat: dict[str, Any] | None = None, **extra: Any
    ) -> dict[str, Any]:
        message = self._user_message(person, chat, text=text, **extra)
        if text.startswith("/"):
            length = len(text.split()[0])
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return await self._deliver({"message": message})

    async def photo(
        self,
        person: Person,
        data: bytes,
        *,
        chat: dict[str, Any] | None = None,
        media_group_id: str | None = None,
        caption: str | None = None,
        file_size: int | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A photo as Telegram sends it: a small thumbnail size and the full size; sent in
        reply to the message `reply_to`, if given."""
        thumb = self.add_file(b"thumbnail: never worth downloading")
        full = self.add_file(data, file_size)
        sizes = [
            {"file_id": thumb, "file_unique_id": thumb, "width": 90, "height": 90},
            {
                "file_id": full,
                "file_unique_id": full,
                "width": 1280,
                "height": 960,
                "file_size": file_size or len(data),
            },
        ]
        extra: dict[str, Any] = {"photo": sizes, **self._captioned(caption)}
        if media_group_id:
            extra["media_group_id"] = media_group_id
        if reply_to is not None:
            extra["reply_to_message"] = reply_to
        return await self._deliver({"message": self._user_message(person, chat, **extra)})

    async def document(
        self,
        person: Person,
        data: bytes,
        file_name: str,
        mime_type: str,
        *,
        media_group_id: str | None = None,
        file_size: int | None = None,
        chat: dict[str, Any] | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        file_id = self.add_file(data, file_size)
        document = {
            "file_id": file_id,
            "file_unique_id": file_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": file_size or len(data),
        }
        extra: dict[str, Any] = {"document": document, **self._captioned(caption)}
        if media_group_id:
            extra["media_group_id"] = media_group_id
        return await self._deliver({"message": self._user_message(person, chat, **extra)})

    @staticmethod
    def _captioned(caption: str | None) -> dict[str, Any]:
        if not caption:
            return {}
        fields: dict[str, Any] = {"caption": caption}
        if caption.startswith("/"):
            length = len(caption.split()[0])
            fields["caption_entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return fields

    async def sticker(self, person: Person) -> dict[str, Any]:
        file_id = self.add_file(b"RIFF....WEBPVP8 ")
        sticker = {
            "file_id": file_id, "file_unique_id": file_id, "type": "regular",
            "width": 512, "height": 512, "is_animated": False, "is_video": False,
        }  # fmt: skip
        return await self._deliver({"message": self._user_message(person, None, sticker=sticker)})

    async def voice(self, person: Person) -> dict[str, Any]:
        file_id = self.add_file(b"OggS voice")
        voice = {"file_id": file_id, "file_unique_id": file_id, "duration": 3}
        return await self._deliver({"message": self._user_message(person, None, voice=voice)})

    async def press(self, person: Person, message: dict[str, Any], data: str) -> str:
        """Press the button with callback `data` under `message` (as the server stores it)."""
        stored = self.messages[(message["chat"]["id"], message["message_id"])]
        query_id = str(next(self._query_ids))
        self._queries[query_id] = False
        query = {
            "id": query_id,
            "from": person.as_user(),
            "message": stored,
            "chat_instance": "fake-chat-instance",
            "data": data,
        }
        await self._deliver({"callback_query": query})
        return query_id

    def age(self, message: dict[str, Any], seconds: int) -> None:
        """Make a stored message look `seconds` older (its `date`)."""
        self.messages[(message["chat"]["id"], message["message_id"])]["date"] -= seconds

    def add_file(self, data: bytes, announced_size: int | None = None) -> str:
        file_id = f"file-{next(self._file_ids)}"
        self.files[file_id] = data
        if announced_size is not None:
            self.announced_sizes[file_id] = announced_size
        return file_id

    def stored(self, call: Call) -> dict[str, Any]:
        """The message as the server keeps it now (after edits) for a call that sent it."""
        result = call.result
        return self.messages[(result["chat"]["id"], result["message_id"])]

    # failures --------------------------------------------------------------------------

    def fail(self, method: str, times: int = 1, *, retry_after: int = 1) -> None:
        """Answer the next `times` calls of `method` with HTTP 429 and this retry_after."""
        self._failures[method] += [_Failure("429", retry_after)] * times

    def disconnect(self, method: str, times: int = 1) -> None:
        """Drop the connection on the next `times` calls of `method`, without an answer."""
        self._failures[method] += [_Failure("disconnect")] * times

    # waiting ---------------------------------------------------------------------------

    def mark(self) -> int:
        return len(self.calls)

    async def expect(
        self,
        method: str,
        *,
        chat_id: int | None = None,
        where: Callable[[Call], bool] = lambda c: True,
        since: int = 0,
        within: float = 60.0,
        ok: bool = True,
    ) -> Call:
        """The first call of `method` at or after index `since` that matches; waits for it."""

        def find() -> Call | None:
            for call in self.calls[since:]:
                if (
                    call.method == method
                    and (chat_id is None or call.chat_id == chat_id)
                    and (not ok or call.ok)
                    and where(call)
                ):
                    return call
            return None

        async def wait() -> Call:
            async with self._changed:
                while (found := find()) is None:
                    await self._changed.wait()
                return found

        try:
            return await asyncio.wait_for(wait(), within)
        except TimeoutError:
            seen = [(c.method, c.status, c.text[:60]) for c in self.calls[since:]]
            raise AssertionError(f"no {method} call came within {within} s; saw {seen}") from None

    async def wait_served(self, update_id: int, within: float = 30.0) -> None:
        async def wait() -> None:
            async with self._changed:
                while update_id not in self.served:
                    await self._changed.wait()

        await asyncio.wait_for(wait(), within)

    def of(self, method: str, chat_id: int | None = None, since: int = 0) -> list[Call]:
        return [
            c
            for c in self.calls[since:]
            if c.method == method and (chat_id is None or c.chat_id == chat_id)
        ]

    # internals -------------------------------------------------------------------------

    def _user_message(
        self, person: Person, chat: dict[str, Any] | None, **fields: Any
    ) -> dict[str, Any]:
        chat = chat or self.private(person)
        message = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": person.as_user(),
            **fields,
        }
        self.messages[(chat["id"], message["message_id"])] = message
        return message

    async def _deliver(self, body: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), **body}
        self._updates.append(update)
        await self._notify()
        result: dict[str, Any] = body.get("message") or body["callback_query"]
        return result

    @property
    def last_update_id(self) -> int:
        return self._updates[-1]["update_id"] if self._updates else 0

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params: dict[str, str] = {}
        files: dict[str, tuple[str, bytes]] = {}
        form = await request.post()
        for name, value in form.items():
            if isinstance(value, web.FileField):
                files[name] = (value.filename, value.file.read())
            else:
                params[name] = str(value)
        call = Call(method, params, files, asyncio.get_running_loop().time())
        self.calls.append(call)
        try:
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            failures = self._failures.get(method)
            if failures:
                failure = failures.pop(0)
                if failure.kind == "disconnect":
                    call.status = 0
                    assert request.transport is not None
                    request.transport.close()
                    return web.Response()
                raise _ApiError(
                    429,
                    f"Too Many Requests: retry after {failure.retry_after}",
                    retry_after=failure.retry_after,
                )
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise _ApiError(404, "Not Found")
            if method == "getUpdates":
                call.result = await handler(params)
            else:
                call.result = handler(params, files)
            body: dict[str, Any] = {"ok": True, "result": call.result}
        except _ApiError as exc:
            call.status = exc.status
            body = {"ok": False, "error_code": exc.status, "description": exc.description}
            if exc.parameters:
                body["parameters"] = exc.parameters
        finally:
            await self._notify()
        return web.json_response(body, status=call.status)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        call = Call("download", {"file_path": path}, {}, asyncio.get_running_loop().time())
        self.calls.append(call)
        await self._notify()
        file_id = path.removeprefix("files/")
        if request.match_info["token"] != self.token or file_id not in self.files:
            call.status = 404
            return web.Response(status=404)
        return web.Response(body=self.files[file_id])

    async def _m_getUpdates(self, params: dict[str, str]) -> list[dict[str, Any]]:
        offset = int(params.get("offset", 0))
        limit = int(params.get("limit", 100))
        # Capped: a long poll of a stopping bot ends soon even if it is not cancelled.
        timeout = min(float(params.get("timeout", 0)), 1.0)
        # Confirmed updates are gone for good, as on Telegram.
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        deadline = asyncio.get_running_loop().time() + timeout
        async with self._changed:
            while not self._updates:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._changed.wait(), remaining)
                except TimeoutError:
                    break
        batch = self._updates[:limit]
        self.served.update(u["update_id"] for u in batch)
        return batch

    def _m_getMe(self, params: dict[str, str], files: Any) -> dict[str, Any]:
        return {
            "id": BOT_ID,
            "is_bot": True,
            "first_name": "Selfiebooth",
            "username": BOT_USERNAME,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    def _m_deleteWebhook(self, params: dict[str, str], files: Any) -> bool:
        return True

    def _m_setWebhook(self, params: dict[str, str], files: Any) -> bool:
        return True

    def _m_setMyCommands(self, params: dict[str, str], files: Any) -> bool:
        commands = json.loads(params["commands"])
        if not commands or any(not 1 <= len(c["command"]) <= 32 for c in commands):
            raise _ApiError(400, "Bad Request: BOT_COMMANDS_INVALID")
        return True

    def _m_sendChatAction(self, params: dict[str, str], files: Any) -> bool:
        return True

    def _m_sendMessage(self, params: dict[str, str], files: Any) -> dict[str, Any]:
        text = params.get("text", "")
        if not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        return self._bot_message(params, text=text)

    def _m_editMessageText(self, params: dict[str, str], files: Any) -> dict[str, Any]:
        message = self._find(params, "message to edit not found")
        markup = self._markup(params)
        if message.get("text") == params["text"] and message.get("reply_markup") == markup:
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and "
                "reply markup are exactly the same as a current content and reply markup "
                "of the message",
            )
        message["text"] = params["text"]
        # Telegram drops the keyboard of an edit that does not repeat it.
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        message["edit_date"] = int(time.time())
        return message

    def _m_editMessageReplyMarkup(self, params: dict[str, str], files: Any) -> dict[str, Any]:
        message = self._find(params, "message to edit not found")
        markup = self._markup(params)
        if message.get("reply_markup") == markup:
            raise _ApiError(400, "Bad Request: message is not modified")
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        return message

    def _m_deleteMessage(self, params: dict[str, str], files: Any) -> bool:
        message = self._find(params, "message to delete not found")
        del self.messages[(message["chat"]["id"], message["message_id"])]
        return True

    def _m_answerCallbackQuery(self, params: dict[str, str], files: Any) -> bool:
        query_id = params["callback_query_id"]
        if self._queries.get(query_id, True):
            raise _ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(params.get("text", "")) > 200:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._queries[query_id] = True
        return True

    def _m_sendPhoto(self, params: dict[str, str], files: dict[str, Any]) -> dict[str, Any]:
        data = self._upload(params, files, "photo")
        self._check_caption(params)
        return self._bot_message(params, photo=self._photo_sizes(data), **self._caption(params))

    def _m_sendDocument(self, params: dict[str, str], files: dict[str, Any]) -> dict[str, Any]:
        data = self._upload(params, files, "document")
        self._check_caption(params)
        name = files["document"][0] if "document" in files else "document"
        return self._bot_message(
            params, document=self._document(data, name), **self._caption(params)
        )

    def _m_sendMediaGroup(
        self, params: dict[str, str], files: dict[str, Any]
    ) -> list[dict[str, Any]]:
        media = json.loads(params["media"])
        if not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the album")
        kinds = {item["type"] for item in media}
        if len(kinds) > 1 and "document" in kinds:
            raise _ApiError(400, "Bad Request: documents can't be mixed with other media")
        group = f"album-{next(self._file_ids)}"
        sent = []
        for item in media:
            ref = item["media"]
            if not ref.startswith("attach://") or ref[9:] not in files:
                raise _ApiError(400, f"Bad Request: file {ref} not found in the request")
            name, data = files[ref[9:]]
            if len(item.get("caption", "")) > 1024:
                raise _ApiError(400, "Bad Request: message caption is too long")
            content = (
                {"photo": self._photo_sizes(data)}
                if item["type"] == "photo"
                else {"document": self._document(data, name)}
            )
            caption = {"caption": item["caption"]} if "caption" in item else {}
            sent.append(self._bot_message(params, media_group_id=group, **content, **caption))
        return sent

    def _m_getFile(self, params: dict[str, str], files: Any) -> dict[str, Any]:
        file_id = params["file_id"]
        if file_id not in self.files:
            raise _ApiError(400, "Bad Request: invalid file_id")
        size = self.announced_sizes.get(file_id, len(self.files[file_id]))
        if size > DOWNLOAD_LIMIT:
            raise _ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": file_id,
            "file_unique_id": file_id,
            "file_size": size,
            "file_path": f"files/{file_id}",
        }

    # helpers of the methods ------------------------------------------------------------

    def _bot_message(self, params: dict[str, str], **content: Any) -> dict[str, Any]:
        chat_id = int(params["chat_id"])
        chat = next(
            (m["chat"] for (c, _), m in self.messages.items() if c == chat_id),
            {"id": chat_id, "type": "private", "first_name": "someone"},
        )
        message: dict[str, Any] = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Selfiebooth"},
            **content,
        }
        markup = self._markup(params)
        if markup:
            message["reply_markup"] = markup
        self.messages[(chat_id, message["message_id"])] = message
        return message

    def _find(self, params: dict[str, str], missing: str) -> dict[str, Any]:
        key = (int(params["chat_id"]), int(params["message_id"]))
        if key not in self.messages:
            raise _ApiError(400, f"Bad Request: {missing}")
        return self.messages[key]

    @staticmethod
    def _markup(params: dict[str, str]) -> dict[str, Any] | None:
        if "reply_markup" not in params:
            return None
        markup: dict[str, Any] = json.loads(params["reply_markup"])
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(data.encode()) <= 64:
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup or None

    def _upload(self, params: dict[str, str], files: dict[str, Any], name: str) -> bytes:
        if name in files:
            return bytes(files[name][1])
        if params.get(name) in self.files:
            return self.files[params[name]]
        raise _ApiError(400, f"Bad Request: there is no {name} in the request")

    @staticmethod
    def _check_caption(params: dict[str, str]) -> None:
        if len(params.get("caption", "")) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")

    @staticmethod
    def _caption(params: dict[str, str]) -> dict[str, str]:
        return {"caption": params["caption"]} if "caption" in params else {}

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        file_id = self.add_file(data)
        return [{"file_id": file_id, "file_unique_id": file_id, "width": 64, "height": 64}]

    def _document(self, data: bytes, name: str) -> dict[str, Any]:
        file_id = self.add_file(data)
        return {
            "file_id": file_id,
            "file_unique_id": file_id,
            "file_name": name,
            "file_size": len(data),
        }
