"""Intersection over union (IoU) per class, for one batch or accumulated over a dataset.

The counting and the IoU rule live in :mod:`nca_sim.metrics`, so that training, the
PyTorch evaluation and the simulator's evaluation report the same numbers. Over a
dataset the IoU of class c is the sum of its intersections divided by the sum of
its unions over every labelled pixel of every image (the dataset-level, or
"pooled", IoU), not the mean of per-image IoUs. Pixels labelled -1 are ignored.
A class that appears neither in the target nor in the prediction has no IoU: it is
reported as None and left out of the mean. Functions accept NumPy arrays or CPU
torch tensors.
"""

from __future__ import annotations

import numpy as np

from nca_sim.metrics import IGNORE_LABEL, IoUAccumulator, intersection_and_union, iou_report
from nca_sim.rule import DEFAULT_CLASS_NAMES

__all__ = ["IGNORE_LABEL", "IoUAccumulator", "batch_iou", "intersection_and_union", "iou_from_counts"]


def iou_from_counts(
    intersection: np.ndarray, union: np.ndarray, class_names=DEFAULT_CLASS_NAMES
) -> dict:
    """Return ``{"per_class": {name: IoU or None}, "mean": mean IoU or None}`` from pixel counts.

    A class with a union of 0 is absent from target and prediction: its IoU is None
    and it does not enter the mean. The mean is None when every class is absent.
    """
    return iou_report(intersection, union, class_names)


def batch_iou(prediction, target, class_names=DEFAULT_CLASS_NAMES) -> dict:
    """Return the per-class and mean IoU of one prediction, pooled over all its pixels."""
    intersection, union = intersection_and_union(prediction, target, len(class_names))
    return iou_report(intersection, union, class_names)
