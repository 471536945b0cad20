"""Per-step statistics of a trajectory (L1 norms, changes) and intersection over union (IoU).

IoU is defined once here and used by the recorder, by :mod:`nca_sim.evaluate` and by
:mod:`nca_train.metrics`. Over several images the IoU of class c is the sum of its
intersections divided by the sum of its unions over every labelled pixel of every
image (the dataset-level, or pooled, IoU), not the mean of per-image IoUs. Target
pixels labelled -1 (unknown) are ignored. A class absent from both the target and
the prediction has no IoU and is left out of the mean.
"""

from __future__ import annotations

import numpy as np

from nca_sim.numba_config import serial_jit
from nca_sim.rule import DEFAULT_CLASS_NAMES

IGNORE_LABEL = -1


@serial_jit
def _sum_abs(values):
    total = 0.0
    for i in range(values.size):
        total += abs(np.float64(values[i]))
    return total


@serial_jit
def _sum_abs_difference(current, previous):
    total = 0.0
    for i in range(current.size):
        total += abs(np.float64(current[i]) - np.float64(previous[i]))
    return total


def mean_abs(values: np.ndarray) -> float:
    """Return mean |values|, the L1 norm divided by the number of values (NaN and inf propagate).

    A Numba loop, so that a large state needs no temporary array.
    """
    flat = np.ascontiguousarray(values).reshape(-1)
    return _sum_abs(flat) / flat.size


def mean_abs_change(current: np.ndarray, previous: np.ndarray) -> float:
    """Return mean |current - previous| over all values of two arrays of one shape."""
    if current.shape != previous.shape:
        raise ValueError(f"arrays of shapes {current.shape} and {previous.shape} cannot be compared")
    flat_current = np.ascontiguousarray(current).reshape(-1)
    flat_previous = np.ascontiguousarray(previous).reshape(-1)
    return _sum_abs_difference(flat_current, flat_previous) / flat_current.size


def intersection_and_union(prediction, target, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Count each class's intersection and union pixels, ignoring target pixels labelled -1.

    Parameters
    ----------
    prediction, target
        Integer arrays of the same shape (NumPy arrays, or anything ``np.asarray``
        converts, such as CPU torch tensors).
    num_classes
        Number of classes; labels are ``0 .. num_classes - 1``.

    Returns
    -------
    intersection, union
        int64 arrays of shape ``(num_classes,)``.

    Raises
    ------
    ValueError
        When the shapes differ, or a counted pixel's prediction or target is outside
        ``0 .. num_classes - 1``.
    """
    prediction = np.asarray(prediction)
    target = np.asarray(target)
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} differs from target shape {target.shape}")
    known = target != IGNORE_LABEL
    prediction = prediction[known].astype(np.int64)
    target = target[known].astype(np.int64)
    for name, values in (("prediction", prediction), ("target", target)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"{name} has labels outside 0..{num_classes - 1} (min {values.min()}, max {values.max()}); "
                "check num_classes and the label encoding"
            )
    predicted_count = np.bincount(prediction, minlength=num_classes)
    target_count = np.bincount(target, minlength=num_classes)
    intersection = np.bincount(target[prediction == target], minlength=num_classes)
    union = predicted_count + target_count - intersection
    return intersection.astype(np.int64), union.astype(np.int64)


def iou_from_counts(intersection: np.ndarray, union: np.ndarray) -> tuple[np.ndarray, float]:
    """Compute per-class IoU and its mean from pixel counts.

    Parameters
    ----------
    intersection, union
        Pixel counts of shape ``(..., num_classes)``, from :func:`intersection_and_union`
        or sums of its results.

    Returns
    -------
    iou, mean_iou
        ``iou`` is float64 of the counts' shape, NaN for a class whose union is 0
        (absent from target and prediction). ``mean_iou`` averages the classes that
        are not NaN along the last axis. It is a float for 1-D counts and an array
        otherwise, and NaN where every class is absent.
    """
    intersection = np.asarray(intersection, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    present = union > 0
    iou = np.divide(intersection, union, out=np.full(union.shape, np.nan), where=present)
    counted = present.sum(axis=-1)
    total = np.where(present, iou, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counted > 0, total / counted, np.nan)
    return iou, (float(mean) if mean.ndim == 0 else mean)


def iou_report(intersection: np.ndarray, union: np.ndarray, class_names=DEFAULT_CLASS_NAMES) -> dict:
    """Return ``{"per_class": {name: IoU or None}, "mean": mean IoU or None}`` from 1-D pixel counts.

    An absent class (union 0) gets None and does not enter the mean, and the mean
    is None when every class is absent. The values are plain floats, ready for JSON.
    """
    iou, mean = iou_from_counts(intersection, union)
    if iou.shape != (len(class_names),):
        raise ValueError(f"counts of shape {iou.shape} do not match the {len(class_names)} class names {class_names}")
    per_class = {name: (None if np.isnan(value) else float(value)) for name, value in zip(class_names, iou)}
    return {"per_class": per_class, "mean": None if np.isnan(mean) else mean}


class IoUAccumulator:
    """Sum intersections and unions over images or batches, then report dataset-level IoU.

    Attributes
    ----------
    class_names
        Class names in label order.
    intersection, union
        int64 pixel counts so far, shape ``(num_classes,)``.
    """

    def __init__(self, class_names=DEFAULT_CLASS_NAMES):
        self.class_names = tuple(class_names)
        self.intersection = np.zeros(len(self.class_names), dtype=np.int64)
        self.union = np.zeros(len(self.class_names), dtype=np.int64)

    def update(self, prediction, target) -> None:
        """Add the counts of one prediction against its target (see :func:`intersection_and_union`)."""
        intersection, union = intersection_and_union(prediction, target, len(self.class_names))
        self.intersection += intersection
        self.union += union

    def result(self) -> dict:
        """Return the IoU of the counts so far as :func:`iou_report` does."""
        return iou_report(self.intersection, self.union, self.class_names)


def segmentation_iou(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Compute the per-class intersection over union of one predicted class map.

    Pixels whose target is -1 (unknown) are left out. A class absent from both the
    prediction and the target of the remaining pixels gets NaN.

    Parameters
    ----------
    prediction, target
        Integer class maps of the same shape, with values in ``[0, num_classes)``
        (``target`` also -1).
    num_classes
        Number of classes.

    Returns
    -------
    iou, mean_iou
        ``(num_classes,)`` float32 IoU per class, and their mean over the classes
        that are not NaN (NaN when every class is).

    Raises
    ------
    ValueError
        When the shapes differ or a value is outside the ranges above.
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} does not match target shape {target.shape}")
    iou, mean = iou_from_counts(*intersection_and_union(prediction, target, num_classes))
    return iou.astype(np.float32), mean
