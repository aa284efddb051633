"""Previews leave the engine off the denoising thread (engine.worker.LatestOnly): the
newest one is always sent, one superseded while waiting is dropped, and nothing is sent
after `close` returns (so no preview follows a job's result)."""

from __future__ import annotations

import threading

from PIL import Image

from engine.worker import LatestOnly


def test_the_newest_preview_is_sent_and_superseded_ones_are_dropped() -> None:
    handled: list[int] = []
    in_hand = threading.Event()
    release = threading.Event()

    def handle(step: int, image: Image.Image) -> None:
        if step == 1:
            in_hand.set()
            assert release.wait(10)
        if step == 4:
            raise OSError("the disk is full")  # logged; the next preview still goes
        handled.append(step)

    previews = LatestOnly(handle, name="test-previews")
    picture = Image.new("RGB", (8, 8))
    previews.put(1, picture)
    assert in_hand.wait(10)
    previews.put(2, picture)  # waits while 1 is in hand ...
    previews.put(3, picture)  # ... and is dropped for 3
    release.set()
    previews.close()
    assert handled == [1, 3]

    # A failing preview (taken, or dropped for the next) never stops the next one.
    again = LatestOnly(handle, name="test-previews-2")
    again.put(4, picture)
    again.put(5, picture)
    again.close()
    assert handled == [1, 3, 5]
