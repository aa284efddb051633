"""Error control for the watermark's payload: a check on the job id, and a convolutional
code that a soft Viterbi decoder undoes.

The code is the rate-1/2, constraint-length-7 code of Voyager and 802.11 (generators 171
and 133 octal); soft decoding lets the reader weigh each coded bit by how sure it is.
"""

from __future__ import annotations

import functools
import zlib

import numpy as np
import numpy.typing as npt

__all__ = ["CODED_BITS", "PAYLOAD_BITS", "decode", "encode"]

CHECK_BITS = 24  # a wrong job id passes the check once in 16.7 million tries
PAYLOAD_BITS = 32 + CHECK_BITS
_K = 7
_POLYS = (0o171, 0o133)
CODED_BITS = (PAYLOAD_BITS + _K - 1) * len(_POLYS)  # the register is flushed with zeros


def encode(job_id: int, key: int) -> npt.NDArray[np.float64]:
    """The job id and its check (seeded by `key`), convolutionally coded, as +-1."""
    value = job_id << CHECK_BITS | _check(job_id, key)
    bits = [(value >> (PAYLOAD_BITS - 1 - i)) & 1 for i in range(PAYLOAD_BITS)]
    nxt, out = _trellis()
    state = 0
    coded: list[float] = []
    for bit in [*bits, *([0] * (_K - 1))]:
        coded.extend(out[state, bit])
        state = int(nxt[state, bit])
    return np.array(coded)


def decode(soft: npt.NDArray[np.float64], key: int) -> int | None:
    """The job id whose code best explains `soft` (positive: +1), if its check holds."""
    value = 0
    for bit in _viterbi(soft):
        value = value << 1 | int(bit)
    job_id, check = value >> CHECK_BITS, value & ((1 << CHECK_BITS) - 1)
    return job_id if _check(job_id, key) == check else None


def _check(job_id: int, key: int) -> int:
    """24 bits of a CRC-32 seeded with `key`: a mark made with another key never checks."""
    return zlib.crc32(job_id.to_bytes(4, "big"), key) & ((1 << CHECK_BITS) - 1)


@functools.cache
def _trellis() -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """For each state and input bit: the next state, and the coded outputs as +-1."""
    states = 1 << (_K - 1)
    nxt = np.zeros((states, 2), np.intp)
    out = np.zeros((states, 2, len(_POLYS)))
    for state in range(states):
        for bit in (0, 1):
            register = bit << (_K - 1) | state
            nxt[state, bit] = register >> 1
            for p, poly in enumerate(_POLYS):
                out[state, bit, p] = 1.0 if bin(register & poly).count("1") % 2 else -1.0
    return nxt, out


def _viterbi(soft: npt.NDArray[np.float64]) -> list[int]:
    nxt, out = _trellis()
    states, width = nxt.shape[0], len(_POLYS)
    src = np.repeat(np.arange(states), 2)  # every (state, input) transition...
    bit = np.tile(np.array([0, 1]), states)
    # ...and the two that reach each state.
    into = np.argsort(nxt[src, bit], kind="stable").reshape(states, 2)
    metric = np.full(states, -np.inf)
    metric[0] = 0.0  # the encoder starts at zero
    steps = soft.size // width
    came_from = np.zeros((steps, states), np.intp)
    for t in range(steps):
        candidate = metric[src] + out[src, bit] @ soft[t * width : (t + 1) * width]
        pick = np.argmax(candidate[into], axis=1)
        came_from[t] = into[np.arange(states), pick]
        metric = candidate[came_from[t]]
    state = 0  # the flushed register ends at zero
    bits = [0] * steps
    for t in range(steps - 1, -1, -1):
        transition = came_from[t, state]
        bits[t] = int(bit[transition])
        state = int(src[transition])
    return bits[:PAYLOAD_BITS]
