"""The rule shipped in the package: its size, and that it segments the built-in dataset."""

from __future__ import annotations

import pytest
import torch

from nca_sim import default_rule_path, load_rule
from nca_train.data import open_dataset
from nca_train.evaluate import evaluate_model
from nca_train.model import SegmentationNCA


@pytest.fixture(scope="module")
def shipped():
    return load_rule(default_rule_path())


def test_shipped_rule_size(shipped):
    parameters = sum(weight.size for weight in shipped.weights.values())
    assert parameters < 10_000
    assert shipped.architecture.class_names == ("background", "object", "boundary")


def test_shipped_rule_segments_synthetic(shipped):
    torch.set_num_threads(1)
    model = SegmentationNCA.from_rule(shipped)
    dataset = open_dataset(None, "test", num_synthetic=32)
    result = evaluate_model(model, dataset, steps=(40,), seed=0)[40]["per_class"]
    # The shipped rule measured 0.63 object and 0.88 background IoU on 64 test images.
    assert result["object"] > 0.5
    assert result["background"] > 0.8
