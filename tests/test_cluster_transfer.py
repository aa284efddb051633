"""A job's files as bytes between the bot and a lane (engine.cluster.transfer), without Ray:
what travels, where it lands, and names that try to leave the job directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cluster.transfer import (
    checkpoints_since,
    pack_command,
    pack_event,
    unpack_command,
    unpack_event,
)
from engine.protocol import Event, TrainCommand


def test_a_training_travels_there_and_back(tmp_path: Path) -> None:
    bot, lane, blobs = tmp_path / "bot" / "job-7", tmp_path / "lane" / "job-7", tmp_path / "blobs"
    (bot / "checkpoints" / "step-000003").mkdir(parents=True)
    (bot / "checkpoints" / "step-000003" / "state.json").write_text("{}")
    (bot / "crop-0.png").write_bytes(b"crop")
    blobs.mkdir()
    (blobs / "outside.png").write_bytes(b"elsewhere")
    command: TrainCommand = {
        "op": "train",
        "job_id": 7,
        "request": "{}",
        "files": {
            "images": [str(bot / "crop-0.png"), str(blobs / "outside.png")],
            "output": str(bot / "lora.safetensors"),
            "checkpoint_dir": str(bot / "checkpoints"),
        },
    }
    packed, inputs = pack_command(command, bot)
    assert packed["files"]["images"] == ["@job/crop-0.png", "@job/inputs/1-outside.png"]  # type: ignore[typeddict-item]
    assert inputs == {
        "crop-0.png": b"crop",
        "inputs/1-outside.png": b"elsewhere",
        "checkpoints/step-000003/state.json": b"{}",
    }
    local = unpack_command(packed, inputs, lane)
    assert local["files"]["output"] == str(lane / "lora.safetensors")  # type: ignore[typeddict-item]
    assert (lane / "inputs" / "1-outside.png").read_bytes() == b"elsewhere"

    # The lane writes a checkpoint and its model; they come back to the bot's directory.
    sent = {"step-000003"}  # what the bot had already
    for step in ("step-000006", "step-000009"):
        (lane / "checkpoints" / step).mkdir()
        (lane / "checkpoints" / step / "lora.safetensors").write_bytes(step.encode())
        (lane / "checkpoints" / step / "state.json").write_text(step)
    (lane / "checkpoints" / "step-000012").mkdir()  # not complete: no state.json yet
    (lane / "lora.safetensors").write_bytes(b"model")
    event: Event = {"event": "done", "job_id": 7, "path": str(lane / "lora.safetensors")}
    back, files = pack_event(event, lane)
    files |= checkpoints_since(lane, sent)
    assert sorted(files) == [
        "checkpoints/step-000006/lora.safetensors", "checkpoints/step-000006/state.json",
        "checkpoints/step-000009/lora.safetensors", "checkpoints/step-000009/state.json",
        "lora.safetensors",
    ]  # fmt: skip
    assert checkpoints_since(lane, sent) == {}  # each is sent once
    arrived = unpack_event(back, files, bot)
    assert Path(arrived["path"]).read_bytes() == b"model"
    # The bot keeps the newest two checkpoints, as the trainer does.
    kept = sorted(p.name for p in (bot / "checkpoints").iterdir())
    assert kept == ["step-000006", "step-000009"]


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "a/../../b", ""])
def test_names_that_leave_the_job_directory_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="leaves the job directory"):
        unpack_event({"event": "sample", "job_id": 1}, {name: b"x"}, tmp_path / "job-1")
    assert not (tmp_path / "escape.png").exists()
