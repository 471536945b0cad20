"""Intersection over union (IoU) per class, for one batch or accumulated over a dataset.

Over a dataset the IoU of class c is the sum of its intersections divided by the sum
of its unions over every labelled pixel of every image (the dataset-level, or
"pooled", IoU), not the mean of per-image IoUs. Pixels labelled -1 are ignored.
A class that appears neither in the target nor in the prediction has no IoU: it is
reported as None and left out of the mean.
"""

from __future__ import annotations

import numpy as np

from nca_sim.rule import DEFAULT_CLASS_NAMES

IGNORE_LABEL = -1


def intersection_and_union(prediction, target, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Count each class's intersection and union pixels, ignoring target pixels labelled -1.

    Parameters
    ----------
    prediction, target
        Integer arrays (NumPy or CPU torch tensors) of the same shape.
    num_classes
        Number of classes; labels are ``0 .. num_classes - 1``.

    Returns
    -------
    intersection, union
        int64 arrays of shape ``(num_classes,)``.
    """
    prediction = np.asarray(prediction)
    target = np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    valid = target != IGNORE_LABEL
    prediction = prediction[valid].astype(np.int64)
    target = target[valid].astype(np.int64)
    for name, values in (("prediction", prediction), ("target", target)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} has labels outside 0..{num_classes - 1} (min {values.min()}, max {values.max()}); "
                "check num_classes and the label encoding"
            )
    pred_count = np.bincount(prediction, minlength=num_classes)
    target_count = np.bincount(target, minlength=num_classes)
    intersection = np.bincount(target[prediction == target], minlength=num_classes)
    union = pred_count + target_count - intersection
    return intersection.astype(np.int64), union.astype(np.int64)


def iou_from_counts(
    intersection: np.ndarray, union: np.ndarray, class_names=DEFAULT_CLASS_NAMES
) -> dict:
    """Return ``{"per_class": {name: IoU or None}, "mean": mean IoU or None}`` from pixel counts.

    A class with a union of 0 is absent from target and prediction: its IoU is None
    and it does not enter the mean. The mean is None when every class is absent.
    """
    per_class = {}
    for name, inter, uni in zip(class_names, intersection, union):
        per_class[name] = float(inter) / float(uni) if uni > 0 else None
    present = [value for value in per_class.values() if value is not None]
    mean = float(np.mean(present)) if present else None
    return {"per_class": per_class, "mean": mean}


def batch_iou(prediction, target, class_names=DEFAULT_CLASS_NAMES) -> dict:
    """Return the per-class and mean IoU of one prediction, pooled over all its pixels."""
    intersection, union = intersection_and_union(prediction, target, len(class_names))
    return iou_from_counts(intersection, union, class_names)


class IoUAccumulator:
    """Sum intersections and unions over batches, then report dataset-level IoU."""

    def __init__(self, class_names=DEFAULT_CLASS_NAMES):
        self.class_names = tuple(class_names)
        self.intersection = np.zeros(len(self.class_names), dtype=np.int64)
        self.union = np.zeros(len(self.class_names), dtype=np.int64)

    def update(self, prediction, target) -> None:
        intersection, union = intersection_and_union(prediction, target, len(self.class_names))
        self.intersection += intersection
        self.union += union

    def result(self) -> dict:
        return iou_from_counts(self.intersection, self.union, self.class_names)
