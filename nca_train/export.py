"""Export a trained model or checkpoint as a rule file for the simulator."""

from __future__ import annotations

import os
from pathlib import Path

from nca_sim.rule import Architecture, save_rule
from nca_train.checkpoint import load_checkpoint
from nca_train.model import SegmentationNCA


class ExportError(ValueError):
    """An export that cannot be written, such as one that would overwrite a file without ``force``."""


def model_from_checkpoint(payload: dict) -> SegmentationNCA:
    """Rebuild the model stored in a checkpoint payload (see :func:`nca_train.checkpoint.load_checkpoint`)."""
    model = SegmentationNCA(Architecture.from_dict(payload["architecture"]))
    model.load_state_dict(payload["model"])
    return model


def export_rule(
    model: SegmentationNCA,
    path: str | os.PathLike,
    *,
    metadata: dict | None = None,
    force: bool = False,
) -> Path:
    """Write ``model``'s rule file to ``path`` atomically.

    Raises ExportError when ``path`` exists and ``force`` is False, and
    :class:`nca_sim.rule.RuleFileError` when a weight is not finite. Either way no
    file is written, and an existing file is kept.
    """
    path = Path(path)
    if path.exists() and not force:
        raise ExportError(f"{str(path)!r} already exists; pass --force to overwrite it or choose another -o path")
    rule = model.to_rule(metadata)
    return save_rule(rule, path)


def export_checkpoint(
    checkpoint_path: str | os.PathLike, rule_path: str | os.PathLike, *, force: bool = False
) -> Path:
    """Write the rule file of the model in a checkpoint; see :func:`export_rule` for errors."""
    payload = load_checkpoint(checkpoint_path)
    model = model_from_checkpoint(payload)
    metadata = {
        "source": "nca_train checkpoint",
        "iteration": int(payload["iteration"]),
        "boundary_width": int(payload["config"]["data"]["boundary_width"]),
    }
    return export_rule(model, rule_path, metadata=metadata, force=force)
