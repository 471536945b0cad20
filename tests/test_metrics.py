"""Per-class IoU on hand-made cases: absent classes, ignored pixels and dataset accumulation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nca_train.metrics import IoUAccumulator, batch_iou, intersection_and_union


def test_perfect_prediction():
    target = np.array([[0, 1, 2], [0, 1, 2]])
    result = batch_iou(target, target)
    assert result["per_class"] == {"background": 1.0, "object": 1.0, "boundary": 1.0}
    assert result["mean"] == 1.0


def test_hand_counted_case():
    target = np.array([[0, 0, 1, 1],
                       [0, 0, 1, 2]])
    prediction = np.array([[0, 1, 1, 1],
                           [0, 0, 2, 2]])
    intersection, union = intersection_and_union(prediction, target, 3)
    # background: target {0,1,4,5}, prediction {0,4,5}: 3 / 4.
    # object: target {2,3,6}, prediction {1,2,3}: 2 / 4.
    # boundary: target {7}, prediction {6,7}: 1 / 2.
    assert intersection.tolist() == [3, 2, 1]
    assert union.tolist() == [4, 4, 2]
    assert intersection.dtype == np.int64
    result = batch_iou(prediction, target)
    assert result["per_class"]["background"] == pytest.approx(0.75)
    assert result["per_class"]["object"] == pytest.approx(0.5)
    assert result["per_class"]["boundary"] == pytest.approx(0.5)
    assert result["mean"] == pytest.approx((0.75 + 0.5 + 0.5) / 3)


def test_absent_class_left_out_of_mean():
    target = np.array([[0, 0, 1, 1]])
    prediction = np.array([[0, 1, 1, 1]])
    result = batch_iou(prediction, target)
    assert result["per_class"]["boundary"] is None
    assert result["mean"] == pytest.approx((0.5 + 2 / 3) / 2)


def test_class_only_in_prediction_scores_zero():
    target = np.array([[0, 0, 0, 0]])
    prediction = np.array([[0, 0, 0, 2]])
    result = batch_iou(prediction, target)
    assert result["per_class"]["boundary"] == 0.0
    assert result["per_class"]["object"] is None
    assert result["mean"] == pytest.approx((0.75 + 0.0) / 2)


def test_ignored_pixels_do_not_count():
    target = np.array([[0, -1, 1, -1]])
    prediction = np.array([[0, 1, 1, 2]])
    result = batch_iou(prediction, target)
    assert result["per_class"] == {"background": 1.0, "object": 1.0, "boundary": None}


def test_all_pixels_ignored_gives_no_mean():
    result = batch_iou(np.zeros((2, 2), dtype=np.int64), np.full((2, 2), -1))
    assert result["per_class"] == {"background": None, "object": None, "boundary": None}
    assert result["mean"] is None


def test_accumulator_pools_pixels_over_images():
    accumulator = IoUAccumulator()
    # Image 1: object 1/1; image 2: object 1/3. Pooled: 2/4, not the per-image mean 2/3.
    accumulator.update(np.array([[1, 0]]), np.array([[1, 0]]))
    accumulator.update(torch.tensor([[1, 1, 1, 0]]), torch.tensor([[1, 0, 0, 0]]))
    result = accumulator.result()
    assert result["per_class"]["object"] == pytest.approx(0.5)
    assert result["per_class"]["background"] == pytest.approx(2 / 4)
    assert result["per_class"]["boundary"] is None


def test_shape_mismatch_and_bad_labels_rejected():
    with pytest.raises(ValueError, match="differs from target shape"):
        intersection_and_union(np.zeros((2, 2)), np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="outside 0..2"):
        intersection_and_union(np.array([0, 3]), np.array([0, 1]), 3)
