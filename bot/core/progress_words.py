"""How a running job's progress is worded, in one wording for every front end: the step
it is at, the share done, and the time left (the ETA).

A front end puts its own words around it ("Training your model: ..."), and the command
line prints it as it is.
"""

from __future__ import annotations

import math

__all__ = ["checking_text", "eta_text", "step_text"]

# Up to this many seconds left, the ETA counts seconds; beyond, minutes.
SECONDS_SHOWN = 90


def eta_text(seconds: float | None) -> str:
    """The time left: "about 40 s left", "about 3 min left", "under 1 s left"; "" when it
    is not known (None, or not a time: an estimate before the first step may be inf)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 1:
        return "under 1 s left"
    if seconds <= SECONDS_SHOWN:
        return f"about {seconds:.0f} s left"
    return f"about {round(seconds / 60)} min left"


def step_text(step: int, total: int, eta: float | None = None) -> str:
    """Where a job stands: "step 3 of 8 (38%), about 12 s left"."""
    if total <= 0:
        raise ValueError(f"total steps must be 1 or more, got {total}")
    left = eta_text(eta)
    return f"step {step} of {total} ({step / total:.0%})" + (f", {left}" if left else "")


def checking_text(step: int) -> str:
    """What a training does while it measures its likeness (engine.training.likeness)."""
    return f"at step {step}, checking how much the model looks like you"
