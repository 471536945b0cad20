"""Checkpoint files: everything a training run needs to continue exactly where it stopped.

A checkpoint is one ``torch.save`` file holding tensors and plain Python values only,
so ``torch.load(..., weights_only=True)`` reads it:

- ``model``, ``optimizer``: state dicts;
- ``iteration``: iterations completed; ``elapsed_seconds``: training wall time so far;
- ``config``: the resolved :class:`~nca_train.config.TrainConfig` as a dict;
- ``architecture``: :meth:`nca_sim.rule.Architecture.to_dict`;
- ``pool``: images, labels, states (tensors) and the :class:`~nca_train.pools.SamplePool`
  ages, or None in full-unroll mode;
- ``rng``: the torch CPU generator state, the NumPy ``Generator``'s bit-generator state
  and Python's ``random`` state.

Files are written to a temporary file beside the target and then moved over it with
``os.replace``, so a crash never leaves a partial checkpoint.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

from nca_sim.files import atomic_output

CHECKPOINT_FORMAT = "nca-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable or of an unsupported format."""


def capture_rng_states(numpy_rng: np.random.Generator) -> dict:
    """Return the states of the torch, NumPy and Python generators that training draws from."""
    python_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": numpy_rng.bit_generator.state,
        # Python's state is (version, tuple of ints, gauss_next); lists keep it to plain types.
        "python": [python_state[0], list(python_state[1]), python_state[2]],
    }


def restore_rng_states(states: dict, numpy_rng: np.random.Generator) -> None:
    """Set the torch, NumPy and Python generators to the states of :func:`capture_rng_states`."""
    torch.set_rng_state(states["torch"])
    numpy_rng.bit_generator.state = states["numpy"]
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))


def save_checkpoint(payload: dict, path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically; an existing file is replaced only by a complete one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        torch.save(payload, handle)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; raise CheckpointError naming what is wrong."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} not found; give a checkpoint.pt or its run directory")
    if path.suffix == ".npz":
        raise CheckpointError(
            f"{str(path)!r} is a rule file, not a checkpoint; give the checkpoint.pt written by `nca train` "
            "(a rule file goes to `nca simulate --rule` or `nca evaluate`)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several unrelated types for corrupt files
        # Keep only torch's first sentence: its weights-only message runs to several
        # lines and suggests weights_only=False, which would run code from the file.
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0].split(". ")[0].rstrip(".")
        raise CheckpointError(
            f"{str(path)!r} is not a readable nca checkpoint ({reason}); "
            "give a checkpoint.pt written by `nca train`, or its run directory"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an nca checkpoint (format field is not {CHECKPOINT_FORMAT!r})")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{str(path)!r} has checkpoint version {payload.get('format_version')!r}; "
            f"this nca reads version {CHECKPOINT_VERSION}"
        )
    return payload
