"""Numba compile options for every simulator kernel, kept in one place.

fastmath takes an explicit flag set instead of ``True``: ``"nnan"`` and ``"ninf"``
would let LLVM assume that no value is NaN or infinite, and fold away the checks
that report a diverging rule (``StepInfo.nonfinite``). The flags below only let
LLVM fuse multiply-adds, reorder sums and use reciprocals, which changes results
in the last bits but keeps NaN and infinity intact.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

# Numba's default OpenMP threading layer shares the OpenMP runtime with
# PyTorch: after one parallel simulator step, PyTorch ran its convolutions with
# Numba's thread count and spinning workers, 20 times slower on 2 cores (torch
# 2.13, numba 0.68). The workqueue layer has its own threads, and the simulator
# needs nothing more (one non-nested prange per step). It must be chosen before
# the first parallel kernel runs; NUMBA_THREADING_LAYER overrides it.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

FASTMATH_FLAGS = frozenset({"contract", "arcp", "reassoc"})

# Kernels are compiled once per signature and cached on disk next to the module
# (``__pycache__``), so later processes load them instead of compiling.
SERIAL_OPTIONS = dict(nogil=True, cache=True, fastmath=set(FASTMATH_FLAGS))
PARALLEL_OPTIONS = dict(SERIAL_OPTIONS, parallel=True)


def serial_jit(function):
    """Compile ``function`` with the simulator's serial options."""
    return numba.njit(**SERIAL_OPTIONS)(function)


def parallel_jit(function):
    """Compile ``function`` with the simulator's options and ``prange`` support."""
    return numba.njit(**PARALLEL_OPTIONS)(function)


def max_threads() -> int:
    """Return the most threads a kernel can use (the ``NUMBA_NUM_THREADS`` setting)."""
    return int(numba.config.NUMBA_NUM_THREADS)


# Numba's on-disk cache checks only the timestamp of the file that defines a
# function, not of the functions it calls and inlines from other modules. After
# an edit of kernels.py, a cached schedule kernel would silently keep the old
# update rule. So the cache is dropped whenever any kernel source changes.
KERNEL_MODULES = ("numba_config", "random", "kernels", "schedules")
_STAMP_NAME = "nca_sim-kernels.sha256"


def drop_stale_cache() -> None:
    """Delete the simulator's cached kernels when any kernel module's source has changed.

    Does nothing when the cache folder cannot be written (a read-only install
    then compiles in memory at each start, as Numba does by itself).
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for name in KERNEL_MODULES:
        digest.update((package / f"{name}.py").read_bytes())
    expected = digest.hexdigest()
    cache = package / "__pycache__"
    stamp = cache / _STAMP_NAME
    try:
        if stamp.is_file() and stamp.read_text().strip() == expected:
            return
        for name in KERNEL_MODULES:
            for path in list(cache.glob(f"{name}.*.nbi")) + list(cache.glob(f"{name}.*.nbc")):
                path.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        stamp.write_text(expected + "\n")
    except OSError:
        pass


drop_stale_cache()
