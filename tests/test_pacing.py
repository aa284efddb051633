"""The core's pacer (bot.core.pacing) on a clock the test controls: no real waiting.

`JumpClock.sleep` moves the time forward by what was asked, at once, so every recorded
time is when the pacer let the edit go; a fake message records each edit's start and end.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import pytest

from bot.core.pacing import (
    EDIT_FAILURES,
    EditFailed,
    LoopClock,
    Pacer,
    RetryLater,
    Unreachable,
    backoff,
)

INTERVAL = 1.0


class JumpClock:
    """Time that passes only when someone sleeps (or an edit takes time)."""

    def __init__(self) -> None:
        self.time = 100.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.time += max(seconds, 0.0)
        await asyncio.sleep(0)  # a sleep still lets the other tasks run


@dataclass
class Edit:
    value: str
    start: float
    end: float
    error: str | None


@dataclass
class FakeMessage:
    """A message on a platform: each edit takes `duration`; `script` fails the next ones."""

    clock: JumpClock
    duration: float = 0.0
    script: list[Exception] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)

    async def edit(self, value: str) -> None:
        start = self.clock.now()
        self.clock.time += self.duration
        error = self.script.pop(0) if self.script else None
        self.edits.append(
            Edit(value, start, self.clock.now(), type(error).__name__ if error else None)
        )
        if error is not None:
            raise error

    def shown(self) -> list[Edit]:
        return [e for e in self.edits if e.error is None]


def gaps(edits: list[Edit]) -> list[float]:
    """From the end of each edit to the start of the next."""
    return [after.start - before.end for before, after in itertools.pairwise(edits)]


@pytest.fixture
def clock() -> JumpClock:
    return JumpClock()


async def test_superseded_values_are_never_sent(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock)
    live = pacer.live("chat", message.edit, shown="queued")
    assert await live.settle("step 1 of 40")
    for step in range(2, 40):
        live.show(f"step {step} of 40")
    assert await live.settle("step 40 of 40")
    assert [e.value for e in message.edits] == ["step 1 of 40", "step 40 of 40"]
    # Showing what the message already says sends nothing.
    assert await live.settle("step 40 of 40")
    assert len(message.edits) == 2
    await pacer.close()


async def test_the_interval_counts_from_the_end_of_the_previous_edit(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock, duration=0.7)  # a slow request
    live = pacer.live("chat", message.edit)
    for text in ("a", "b", "c"):
        assert await live.settle(text)
    # Counted from the start, 1 s would have left only 0.3 s after each slow edit.
    assert gaps(message.edits) == [pytest.approx(INTERVAL)] * 2
    await pacer.close()


async def test_after_a_429_the_wait_is_retry_after_then_the_interval(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock, duration=0.2, script=[RetryLater(3.0), RetryLater(2.5)])
    live = pacer.live("chat", message.edit)
    assert await live.settle("step 1")
    assert await live.settle("step 2")
    refused, again, retried, after = message.edits
    assert (refused.error, again.error, retried.value, after.value) == (
        "RetryLater",
        "RetryLater",
        "step 1",
        "step 2",
    )
    assert again.start - refused.end == pytest.approx(3.0)
    assert retried.start - again.end == pytest.approx(2.5)
    # The retried edit is not followed at once by the next: the interval still holds.
    assert after.start - retried.end == pytest.approx(INTERVAL)
    await pacer.close()


async def test_the_latest_value_goes_once_a_429_is_over(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock, script=[RetryLater(5.0)])
    moved_on = asyncio.Event()

    async def edit(value: str) -> None:
        if not message.edits:  # while the first edit is refused, the job moves on
            live.show("step 9")
            moved_on.set()
        await message.edit(value)

    live = pacer.live("chat", edit)
    live.show("step 1")
    await moved_on.wait()
    assert await live.settle("step 9")
    assert [(e.value, e.error) for e in message.edits] == [
        ("step 1", "RetryLater"),
        ("step 9", None),  # step 1 is not sent again: it is out of date
    ]
    assert message.edits[1].start - message.edits[0].end == pytest.approx(5.0)
    await pacer.close()


async def test_messages_of_one_key_share_its_clock(clock: JumpClock) -> None:
    """Several live messages in one chat: the chat's edits, together, keep the interval."""
    pacer = Pacer(INTERVAL, clock=clock)
    first, second = FakeMessage(clock), FakeMessage(clock)
    a = pacer.live("chat 1", first.edit)
    b = pacer.live("chat 1", second.edit)
    for round_ in range(3):
        assert all(await asyncio.gather(a.settle(f"a{round_}"), b.settle(f"b{round_}")))
    in_chat_1 = sorted(first.edits + second.edits, key=lambda e: e.start)
    assert [e.value for e in in_chat_1] == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert gaps(in_chat_1) == [pytest.approx(INTERVAL)] * 5
    await pacer.close()


async def test_another_key_has_a_clock_of_its_own(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    here, there = FakeMessage(clock), FakeMessage(clock)
    assert await pacer.live("chat 1", here.edit).settle("a")
    assert await pacer.live("chat 2", there.edit).settle("b")
    assert there.edits[0].start == here.edits[0].end  # no wait for chat 1's interval
    await pacer.close()


async def test_a_hold_keeps_sends_of_that_key_waiting(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    start = clock.now()
    pacer.hold("chat", 4.0)
    pacer.hold("chat", 2.0)  # a shorter hold does not shorten the first
    await pacer.clear("other chat")
    assert clock.now() == start
    await pacer.clear("chat")
    assert clock.now() == pytest.approx(start + 4.0)


async def test_network_faults_are_retried_with_a_backoff_then_given_up(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock, script=[EditFailed("reset"), EditFailed("reset")])
    live = pacer.live("chat", message.edit)
    assert await live.settle("step 1")
    assert [e.error for e in message.edits] == ["EditFailed", "EditFailed", None]
    assert gaps(message.edits) == [pytest.approx(backoff(1)), pytest.approx(backoff(2))]

    message.script = [EditFailed("down")] * EDIT_FAILURES
    assert not await live.settle("step 2")
    assert live.broken and len(message.edits) == 3 + EDIT_FAILURES
    live.show("step 3")  # ignored: the caller posts its last words anew
    assert len(message.edits) == 3 + EDIT_FAILURES
    await pacer.close()


async def test_a_message_that_cannot_be_edited_is_given_up_at_once(clock: JumpClock) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock, script=[Unreachable("message to edit not found")])
    live = pacer.live("chat", message.edit, shown="queued")
    assert not await live.settle("done")
    assert live.broken and [e.error for e in message.edits] == ["Unreachable"]
    assert live.shown == "queued"
    await pacer.close()


async def test_an_unexpected_error_ends_the_edits_without_hanging_settle(
    clock: JumpClock,
) -> None:
    pacer = Pacer(INTERVAL, clock=clock)
    message = FakeMessage(clock, script=[KeyError("a bug")])
    live = pacer.live("chat", message.edit)
    assert not await live.settle("done")
    assert live.broken
    await pacer.close()


async def test_close_cancels_and_awaits_the_edit_loops() -> None:
    """On the real loop clock: a loop waiting out an hour-long 429 ends at once."""
    pacer = Pacer(INTERVAL, clock=LoopClock())
    tried = asyncio.Event()

    async def refused(value: str) -> None:
        tried.set()
        raise RetryLater(3600.0)

    live = pacer.live("chat", refused, name="live-test")
    live.show("step 1")
    assert len(pacer.tasks) == 1
    await tried.wait()
    await asyncio.wait_for(pacer.close(), 5.0)
    assert len(pacer.tasks) == 0
    # Its value was never shown: the caller would post its last words anew.
    assert live.broken and live.shown is None
    assert not await live.settle("step 2")


async def test_keys_nobody_uses_are_forgotten_once_their_clock_has_run_out(
    clock: JumpClock,
) -> None:
    """Discord keys its clocks by message: a closed message's clock must not stay."""
    pacer = Pacer(INTERVAL, clock=clock)
    old, kept = FakeMessage(clock), FakeMessage(clock)
    first = pacer.live("message 1", old.edit)
    still_open = pacer.live("message 2", kept.edit)
    assert await first.settle("done") and await still_open.settle("step 1")
    await first.close()
    assert pacer.kept() == 2  # closed, but its interval is still running
    await clock.sleep(INTERVAL)
    third = pacer.live("message 3", FakeMessage(clock).edit)
    await third.close()
    assert pacer.kept() == 1  # message 2 is still followed
    # Its clock kept: the next edit of message 2 still waits out a 429 held for it.
    pacer.hold("message 2", 5.0)
    before = clock.now()
    assert await still_open.settle("step 2")
    assert kept.edits[-1].start == pytest.approx(before + 5.0)
    await still_open.close()
    await clock.sleep(5.0 + INTERVAL)
    await pacer.live("message 4", FakeMessage(clock).edit).close()
    assert pacer.kept() == 0
