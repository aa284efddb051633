"""The log format: one JSON object per line with a job event's fields, and secrets cut
out of every record, however a library spells them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.core.telemetry import job_event
from engine.logs import configure_logging
from storage.records import JobRecord

TOKEN = "123456:SECRET-part-of-the-token"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger writing JSON into a buffer, the token redacted; restored after."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging(logging.DEBUG, "json", secrets=[TOKEN], stream=stream)
    yield stream
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_job_event_is_one_json_object_with_its_fields(captured: io.StringIO) -> None:
    job = JobRecord(7, 3, "train", "{}", "running", 0.5, 1, None, None, "t", "t", None, "t")
    job_event("progress", job, "step 5 of 10", step=5, total=10)
    job_event("failed", job, "out of mémoire", level=logging.WARNING, error="out of mémoire")
    progress, failed = lines(captured)
    assert progress["message"] == "job 7 (train, user 3): progress: step 5 of 10"
    assert {k: progress[k] for k in ("event", "job_id", "kind", "user", "step", "total")} == {
        "event": "progress", "job_id": 7, "kind": "train", "user": 3, "step": 5, "total": 10,
    }  # fmt: skip
    assert progress["level"] == "INFO" and progress["logger"] == "selfiebooth.jobs"
    assert (failed["level"], failed["error"]) == ("WARNING", "out of mémoire")


def test_secrets_are_redacted_in_every_spelling_and_place(captured: io.StringIO) -> None:
    log = logging.getLogger("httpx")
    log.info("HTTP Request: POST http://api/bot%s/getUpdates", TOKEN)
    log.debug("GET http://files/file/bot123456%3ASECRET-part-of-the-token/photo.jpg")
    log.info("the part after the colon alone: SECRET-part-of-the-token")
    try:
        raise RuntimeError(f"cannot reach http://api/bot{TOKEN}/getMe")
    except RuntimeError:
        logging.getLogger("telegram.ext").exception("network error")
    logging.getLogger("selfiebooth.jobs").info("event", extra={"error": f"token {TOKEN}"})
    text = captured.getvalue()
    assert "SECRET" not in text
    records = lines(captured)
    assert records[0]["message"] == "HTTP Request: POST http://api/bot<redacted>/getUpdates"
    assert "<redacted>" in str(records[1]["message"]) and "<redacted>" in str(records[2]["message"])
    assert "RuntimeError: cannot reach http://api/bot<redacted>/getMe" in str(
        records[3]["exception"]
    )
    assert records[4]["error"] == "token <redacted>"


def test_warnings_go_through_the_log(captured: io.StringIO) -> None:
    import warnings

    warnings.warn("an old API", DeprecationWarning, stacklevel=1)
    [record] = lines(captured)
    assert record["logger"] == "py.warnings" and "an old API" in str(record["message"])
