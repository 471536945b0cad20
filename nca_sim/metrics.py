"""Per-step statistics of a trajectory: L1 norms, changes and IoU."""

from __future__ import annotations

import numpy as np

from nca_sim.numba_config import serial_jit


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


def segmentation_iou(prediction: np.ndarray, target: np.ndarray, num_classes: int) -> tuple[np.ndarray, float]:
    """Compute the per-class intersection over union of a predicted class map.

    Pixels whose target is outside ``[0, num_classes)`` (-1 = unknown) are left out. A class absent from
    both the prediction and the target of the remaining pixels gets NaN.

    Parameters
    ----------
    prediction, target
        Integer class maps of the same shape; ``prediction`` in ``[0, num_classes)``.
    num_classes
        Number of classes.

    Returns
    -------
    iou, mean_iou
        ``(num_classes,)`` float32 IoU per class, and their mean over the classes
        that are not NaN (NaN when every class is).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction shape {prediction.shape} does not match target shape {target.shape}")
    known = (target >= 0) & (target < num_classes)
    predicted = prediction[known].astype(np.int64)
    expected = target[known].astype(np.int64)
    # Predictions outside [0, num_classes) (from non-finite logits) match no target class.
    valid = (predicted >= 0) & (predicted < num_classes)
    confusion = np.bincount(
        expected[valid] * num_classes + predicted[valid], minlength=num_classes * num_classes
    ).reshape(num_classes, num_classes)
    intersection = np.diag(confusion).astype(np.float64)
    target_count = np.bincount(expected, minlength=num_classes).astype(np.float64)
    predicted_count = confusion.sum(axis=0).astype(np.float64)
    union = target_count + predicted_count - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, intersection / union, np.nan)
    present = ~np.isnan(iou)
    mean = float(iou[present].mean()) if present.any() else float("nan")
    return iou.astype(np.float32), mean
