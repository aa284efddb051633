"""Logging set-up: plain lines for people, or one JSON object per line for log shippers,
with every configured secret cut out of every record before it is written.

Both the bot and the engine process log through it. Job events carry their fields
(`job_id`, `kind`, `user`, ...) as record attributes: the text format has them in the
message, the JSON format as keys of their own.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TextIO
from urllib.parse import quote

__all__ = [
    "EVENT_FIELDS",
    "LOG_FORMATS",
    "JsonFormatter",
    "RedactSecrets",
    "configure_logging",
]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The record attributes job events set (bot.core.telemetry), written as JSON keys.
EVENT_FIELDS = (
    "event", "job_id", "kind", "user", "step", "total", "seconds", "attempt", "reason", "error",
)  # fmt: skip


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message and the event fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in EVENT_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class RedactSecrets(logging.Filter):
    """Replace each secret in a record's message (and its traceback) with <redacted>.

    On the handler, so it holds for every logger: libraries log URLs, and a Bot API URL
    holds the token."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        forms = set()
        for secret in filter(None, secrets):
            # As written, and as URLs carry it: a Telegram token's colon becomes %3A.
            forms |= {secret, quote(secret, safe=""), quote(secret)}
            _, colon, private = secret.rpartition(":")
            if colon and len(private) >= 8:
                forms.add(private)  # the part that is the secret ("id:secret")
        self.secrets = sorted(forms, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        redacted = self._redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info:
            # The formatted traceback is cached on the record, redacted.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self._redact(text)
        for name in EVENT_FIELDS:
            value = record.__dict__.get(name)
            if isinstance(value, str):
                setattr(record, name, self._redact(value))
        return True

    def _redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "<redacted>")
        return text


def configure_logging(
    level: int | str,
    log_format: str = "text",
    fmt: str = TEXT_FORMAT,
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Route the root logger to `stream` (stderr) in `log_format`; the handler made."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(fmt))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # library warnings in the same format, not loose lines
    return handler
