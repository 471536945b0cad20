"""Evaluation: roll a model out on a dataset split and report per-class IoU at chosen steps."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nca_sim.rule import RuleFileError, load_rule
from nca_train.checkpoint import load_checkpoint
from nca_train.config import TrainConfig
from nca_train.export import model_from_checkpoint
from nca_train.metrics import IoUAccumulator
from nca_train.model import SegmentationNCA

DEFAULT_STEPS = (10, 20, 40, 80, 200, 1000)


@dataclass
class LoadedModel:
    """A model read from a checkpoint or rule file, with the training config when there is one."""

    model: SegmentationNCA
    config: TrainConfig | None
    source: str


def load_model(path: str | os.PathLike) -> LoadedModel:
    """Read a model from a checkpoint (``checkpoint.pt`` or its run directory) or a rule file (``.npz``)."""
    path = Path(path)
    if path.suffix == ".npz":
        try:
            rule = load_rule(path)
        except RuleFileError as error:
            raise ValueError(str(error)) from error
        return LoadedModel(SegmentationNCA.from_rule(rule), None, str(path))
    payload = load_checkpoint(path)
    config = TrainConfig.from_dict(payload["config"], origin=str(path))
    return LoadedModel(model_from_checkpoint(payload), config, str(path))


def evaluate_model(
    model: SegmentationNCA,
    dataset,
    steps=DEFAULT_STEPS,
    *,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> dict[int, dict]:
    """Roll ``model`` out on every item of ``dataset`` and return the IoU after each of ``steps``.

    Each batch is rolled out once, to the largest step, from fresh N(0, 1) states;
    the logits are read at every requested step. IoU is summed over all labelled
    pixels of the dataset (see :mod:`nca_train.metrics`).

    Returns
    -------
    dict
        ``{step: {"per_class": {class name: IoU or None}, "mean": IoU or None}}``.
    """
    steps = sorted({int(s) for s in steps})
    if not steps or steps[0] < 1:
        raise ValueError(f"steps {steps} are invalid: expected positive integers such as 10,20,40")
    if len(dataset) == 0:
        raise ValueError("the evaluation dataset is empty; check the data folder and split")
    generator = torch.Generator().manual_seed(seed)
    accumulators = {step: IoUAccumulator(model.arch.class_names) for step in steps}
    batches = range(0, len(dataset), batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, unit="batch")
    model.eval()
    with torch.no_grad():
        for start in batches:
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            images = torch.from_numpy(np.stack([image.transpose(2, 0, 1) for image, _ in items]).astype(np.float32))
            labels = np.stack([label for _, label in items])
            _, logits = model.rollout(images, steps[-1], generator=generator, logit_steps=set(steps))
            for step in steps:
                accumulators[step].update(logits[step].argmax(dim=1).numpy(), labels)
    return {step: accumulators[step].result() for step in steps}


def format_table(results: dict[int, dict]) -> str:
    """Return the results of :func:`evaluate_model` as a text table, one row per step; absent classes show '-'."""
    class_names = list(next(iter(results.values()))["per_class"])
    header = ["step", *class_names, "mean"]
    rows = []
    for step, result in results.items():
        values = [*result["per_class"].values(), result["mean"]]
        rows.append([str(step), *("-" if v is None else f"{v:.3f}" for v in values)])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    return "\n".join(lines)
