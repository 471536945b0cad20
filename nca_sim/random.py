"""Explicit random number streams for the simulator kernels.

Every stream is a xoshiro256** generator (Blackman and Vigna, 2018,
https://prng.di.unimi.it/) whose 256-bit state is one row of a ``(streams, 4)``
uint64 array. The array is plain data: the simulator saves it to resume a run
and hands row ``i`` to whichever thread owns grid row ``i``, so no two threads
share a stream. Streams are seeded with splitmix64 from one integer seed.

Normal variates use the Box-Muller transform, exponential ones the inverse CDF.
"""

from __future__ import annotations

import math

import numpy as np

from nca_sim.numba_config import serial_jit

_MASK64 = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_DOUBLE_UNIT = 1.0 / 9007199254740992.0  # 2**-53


def _splitmix64(value: int) -> tuple[int, int]:
    """Advance a splitmix64 state; return (new state, output)."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    z = value
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value, z ^ (z >> 31)


def seed_streams(seed: int, count: int) -> np.ndarray:
    """Return ``count`` independent xoshiro256** states, shape ``(count, 4)`` uint64, from ``seed``."""
    if count < 1:
        raise ValueError(f"count={count} is invalid: expected at least one stream")
    state = int(seed) & _MASK64
    words = np.empty((count, 4), dtype=np.uint64)
    for i in range(count):
        for j in range(4):
            state, words[i, j] = _splitmix64(state)
        if not words[i].any():  # the all-zero state is the one xoshiro cannot leave
            words[i, 0] = 1
    return words


@serial_jit
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@serial_jit
def next_u64(streams, stream):
    """Return the next 64 random bits of ``streams[stream]`` and advance it."""
    s = streams[stream]
    result = _rotl(s[1] * np.uint64(5), 7) * np.uint64(9)
    t = s[1] << np.uint64(17)
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = _rotl(s[3], 45)
    return result


@serial_jit
def uniform(streams, stream):
    """Return a float64 uniform on [0, 1) with 53 random bits."""
    return float(next_u64(streams, stream) >> np.uint64(11)) * _DOUBLE_UNIT


@serial_jit
def below(streams, stream, n):
    """Return an integer uniform on [0, n) (n well below 2**53)."""
    return int(uniform(streams, stream) * n)


@serial_jit
def normal_pair(streams, stream):
    """Return two independent N(0, 1) float64 values (Box-Muller)."""
    u1 = 1.0 - uniform(streams, stream)  # in (0, 1], so the log is finite
    u2 = uniform(streams, stream)
    radius = math.sqrt(-2.0 * math.log(u1))
    return radius * math.cos(_TWO_PI * u2), radius * math.sin(_TWO_PI * u2)


@serial_jit
def fill_normal(streams, stream, out):
    """Fill the 1-D float32 array ``out`` with N(0, 1) values."""
    n = out.shape[0]
    i = 0
    while i + 1 < n:
        a, b = normal_pair(streams, stream)
        out[i] = a
        out[i + 1] = b
        i += 2
    if i < n:
        a, _ = normal_pair(streams, stream)
        out[i] = a


@serial_jit
def exponential(streams, stream, rate):
    """Return an exponential waiting time with the given rate (mean ``1 / rate``)."""
    return -math.log(1.0 - uniform(streams, stream)) / rate


@serial_jit
def fill_rows_normal(streams, grid):
    """Fill the ``(h, w, d)`` float32 ``grid`` with N(0, 1) values; row ``i`` draws from stream ``i``."""
    for i in range(grid.shape[0]):
        fill_normal(streams, i, grid[i].reshape(-1))
