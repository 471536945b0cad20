"""The simulator's evaluation (nca_sim.evaluate) and the shared IoU counting (nca_sim.metrics).

The synchronous schedule is checked against the PyTorch evaluation on the same
images, start states and steps. The other schedules are checked for value ranges,
keys and update counts, and the pooled IoU on hand-made arrays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nca_sim.evaluate import DEFAULT_STEPS, EvaluationResult, check_steps, evaluate_rule, format_table
from nca_sim.metrics import IoUAccumulator, intersection_and_union, iou_from_counts, iou_report
from nca_sim.rule import Architecture
from nca_train.data import open_dataset
from nca_train.model import SegmentationNCA

SMALL = dict(state_channels=8, hidden_channels=16, num_layers=3)
CLASSES = ("background", "object", "boundary")
SCHEDULES = ("sync", "bernoulli", "async", "clock")


def make_model(seed: int = 0, **options) -> SegmentationNCA:
    torch.manual_seed(seed)
    model = SegmentationNCA(Architecture(**{**SMALL, **options}))
    with torch.no_grad():
        # A smaller update keeps random residual rules bounded over the steps tested.
        model.update.weight.mul_(0.3)
        model.update.bias.mul_(0.3)
    return model.eval()


@pytest.fixture(scope="module")
def dataset():
    return open_dataset(None, split="test", image_size=(16, 16), num_synthetic=8, seed=0)


@pytest.fixture(scope="module")
def gated_rule():
    return make_model(reset_gate=True, update_probability=0.5).to_rule()


def random_pairs(count=3, height=16, width=16, seed=0):
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        image = rng.random((height, width, 3), dtype=np.float32)
        label = rng.integers(0, 3, (height, width))
        label[0, :3] = -1
        pairs.append((image, label))
    return pairs


# -- the shared IoU counting -----------------------------------------------------------


def test_counts_hand_made_with_ignored_pixels():
    target = np.array([[0, 0, 1, 1],
                       [0, -1, 1, 2]])
    prediction = np.array([[0, 1, 1, 1],
                           [0, 2, 2, 2]], dtype=np.int8)
    intersection, union = intersection_and_union(prediction, target, 3)
    # The -1 pixel is left out, so its prediction (2) counts nowhere.
    # background: target {0,1,4}, prediction {0,4}: 2 / 3.
    # object: target {2,3,6}, prediction {1,2,3}: 2 / 4.
    # boundary: target {7}, prediction {6,7}: 1 / 2.
    assert intersection.tolist() == [2, 2, 1]
    assert union.tolist() == [3, 4, 2]
    assert intersection.dtype == np.int64
    assert union.dtype == np.int64


def test_absent_class_left_out_of_mean():
    accumulator = IoUAccumulator(CLASSES)
    accumulator.update(np.array([[0, 1]]), np.array([[0, 0]]))
    accumulator.update(np.array([[1, 1, 0]]), np.array([[1, -1, 0]]))
    # Pooled: background 2 target + 1 wrong prediction -> 2/3; object 1/2; boundary absent.
    result = accumulator.result()
    assert result["per_class"]["background"] == pytest.approx(2 / 3)
    assert result["per_class"]["object"] == pytest.approx(1 / 2)
    assert result["per_class"]["boundary"] is None
    assert result["mean"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_iou_from_counts_per_step_rows():
    intersection = np.array([[2, 0, 0], [0, 0, 0]])
    union = np.array([[4, 2, 0], [0, 0, 0]])
    iou, mean = iou_from_counts(intersection, union)
    assert iou.dtype == np.float64
    np.testing.assert_array_equal(iou[0], [0.5, 0.0, np.nan])
    assert np.isnan(iou[1]).all()
    assert mean[0] == pytest.approx(0.25)
    assert np.isnan(mean[1])


def test_iou_report_all_absent_gives_none():
    report = iou_report(np.zeros(3, np.int64), np.zeros(3, np.int64), CLASSES)
    assert report == {"per_class": {name: None for name in CLASSES}, "mean": None}


def test_counts_reject_bad_labels():
    with pytest.raises(ValueError, match="outside 0..2"):
        intersection_and_union(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(ValueError, match="outside 0..2"):
        intersection_and_union(np.array([0, -2]), np.array([0, 1]), 3)
    with pytest.raises(ValueError, match="differs from target shape"):
        intersection_and_union(np.zeros((2, 2)), np.zeros((2, 1)), 3)


# -- parity with the PyTorch evaluation -----------------------------------------------


def test_sync_matches_pytorch_evaluation(dataset):
    from nca_train.evaluate import evaluate_model
    from nca_train.evaluate import format_table as torch_format_table
    from nca_train.metrics import IoUAccumulator as TorchAccumulator

    model = make_model(update_probability=1.0)
    steps = (1, 3, 10, 25)
    reference = evaluate_model(model, dataset, steps, batch_size=len(dataset), seed=3)
    # With p = 1 and no reset gate, the start state is PyTorch's only random draw.
    states = torch.randn(len(dataset), 8, 16, 16, generator=torch.Generator().manual_seed(3))
    result = evaluate_rule(
        model.to_rule(), dataset, steps=steps, schedule="sync", initial_states=states.permute(0, 2, 3, 1).numpy()
    )

    assert result.steps == steps
    for step in steps:
        expected = reference[step]
        actual = result.results()[step]
        for name in CLASSES:
            assert actual["per_class"][name] == pytest.approx(expected["per_class"][name], abs=1e-3), (step, name)
        assert actual["mean"] == pytest.approx(expected["mean"], abs=1e-3), step
    assert format_table(result) == torch_format_table(reference)

    # Pixel counts against a direct PyTorch rollout: at most a couple of argmax flips.
    images = torch.from_numpy(np.stack([dataset[i][0].transpose(2, 0, 1) for i in range(len(dataset))]))
    labels = np.stack([dataset[i][1] for i in range(len(dataset))])
    with torch.no_grad():
        _, logits = model.rollout(images, steps[-1], state=states, logit_steps=set(steps))
    for row, step in enumerate(steps):
        accumulator = TorchAccumulator(CLASSES)
        accumulator.update(logits[step].argmax(dim=1).numpy(), labels)
        assert np.abs(result.intersection[row] - accumulator.intersection).max() <= 2, step
        assert np.abs(result.union[row] - accumulator.union).max() <= 2, step
    assert result.cell_updates == len(dataset) * 16 * 16 * steps[-1]
    assert result.nonfinite_images == 0


# -- every schedule ---------------------------------------------------------------------


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedule_runs_and_reports(schedule, gated_rule, dataset):
    steps = (8, 2, 5)
    result = evaluate_rule(gated_rule, dataset, steps=steps, schedule=schedule, seed=1, limit=3)

    assert isinstance(result, EvaluationResult)
    assert result.steps == (2, 5, 8)
    assert result.images == 3
    assert result.schedule == schedule
    assert result.intersection.shape == (3, 3)
    assert result.intersection.dtype == np.int64
    assert result.union.dtype == np.int64
    assert np.all(result.intersection <= result.union)
    assert np.all(result.union <= 3 * 16 * 16)
    iou = result.iou[~np.isnan(result.iou)]
    assert iou.size > 0
    assert np.all((iou >= 0.0) & (iou <= 1.0))
    assert np.all((result.mean_iou >= 0.0) & (result.mean_iou <= 1.0))
    assert list(result.results()) == [2, 5, 8]
    assert all(set(value["per_class"]) == set(CLASSES) for value in result.results().values())
    assert result.wall_seconds > 0.0

    full = 3 * 16 * 16 * 8
    if schedule in ("sync", "async"):
        assert result.cell_updates == full
    elif schedule == "bernoulli":
        assert 0.4 * full < result.cell_updates < 0.6 * full
        assert result.update_probability == 0.5
    else:
        # A rate-1 Poisson clock per cell: about one update per cell per unit time.
        assert 0.9 * full < result.cell_updates < 1.1 * full
    expected_probability = {"sync": 1.0, "bernoulli": 0.5}.get(schedule)
    assert result.update_probability == expected_probability


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_same_seed_same_result(schedule, gated_rule):
    pairs = random_pairs(count=2, height=12, width=10)
    first = evaluate_rule(gated_rule, pairs, steps=(3, 6), schedule=schedule, seed=5)
    second = evaluate_rule(gated_rule, pairs, steps=(3, 6), schedule=schedule, seed=5)
    np.testing.assert_array_equal(first.intersection, second.intersection)
    np.testing.assert_array_equal(first.union, second.union)
    assert first.cell_updates == second.cell_updates


def test_image_result_independent_of_others(gated_rule):
    # Image i uses seed + i, so evaluating image 1 alone with seed + 1 gives its share of the total.
    pairs = random_pairs(count=2)
    both = evaluate_rule(gated_rule, pairs, steps=(4,), schedule="bernoulli", seed=7)
    first = evaluate_rule(gated_rule, pairs[:1], steps=(4,), schedule="bernoulli", seed=7)
    second = evaluate_rule(gated_rule, pairs[1:], steps=(4,), schedule="bernoulli", seed=8)
    np.testing.assert_array_equal(both.intersection, first.intersection + second.intersection)
    np.testing.assert_array_equal(both.union, first.union + second.union)


def test_images_and_labels_or_pairs_agree(gated_rule):
    pairs = random_pairs(count=3, height=9, width=13)
    images = [image for image, _ in pairs]
    labels = [label for _, label in pairs]
    from_pairs = evaluate_rule(gated_rule, iter(pairs), steps=(2, 4), schedule="async", limit=2)
    from_lists = evaluate_rule(gated_rule, images[:2], labels[:2], steps=(2, 4), schedule="async")
    assert from_pairs.images == 2
    np.testing.assert_array_equal(from_pairs.intersection, from_lists.intersection)
    np.testing.assert_array_equal(from_pairs.union, from_lists.union)


def test_highres_rule_scores_at_image_resolution():
    rule = make_model(highres_encoder_channels=4).to_rule()
    pairs = random_pairs(count=2, height=12, width=10)
    result = evaluate_rule(rule, pairs, steps=(2,), schedule="sync")
    known = sum(int((label != -1).sum()) for _, label in pairs)
    # Every known pixel lands in exactly one target class, so the class unions cover them.
    assert result.union[0].sum() >= known
    assert result.cell_updates == 2 * 6 * 5 * 2


def test_progress_called_per_image(gated_rule, dataset):
    calls = []
    evaluate_rule(gated_rule, dataset, steps=(1,), schedule="sync", limit=2, progress=lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)]
    images = [image for image, _ in random_pairs(count=2)]
    labels = [label for _, label in random_pairs(count=2)]
    calls.clear()
    evaluate_rule(gated_rule, images, labels, steps=(1,), progress=lambda *a: calls.append(a))
    assert calls == [(1, 2), (2, 2)]
    calls.clear()
    evaluate_rule(gated_rule, iter(random_pairs(count=1)), steps=(1,), progress=lambda *a: calls.append(a))
    assert calls == [(1, None)]


def test_to_dict_is_json(gated_rule):
    pairs = random_pairs(count=1)
    pairs[0][1][:] = 0  # only background in the target
    result = evaluate_rule(gated_rule, pairs, steps=(1, 2), schedule="clock")
    document = json.loads(json.dumps(result.to_dict()))
    assert list(document["results"]) == ["1", "2"]
    assert document["schedule"] == "clock"
    assert document["update_probability"] is None
    assert document["images"] == 1
    assert document["class_names"] == list(CLASSES)
    for step, row in (("1", 0), ("2", 1)):
        assert document["pixel_counts"][step]["union"] == result.union[row].tolist()
        per_class = document["results"][step]["per_class"]
        for name, value in per_class.items():
            assert value is None or 0.0 <= value <= 1.0
            # A class absent from target and prediction has a union of 0 and no IoU.
            assert (value is None) == (document["pixel_counts"][step]["union"][CLASSES.index(name)] == 0)


def test_format_table_layout():
    results = {
        10: {"per_class": {"background": 0.5, "object": None, "boundary": 0.25}, "mean": 0.375},
        200: {"per_class": {"background": 1.0, "object": 0.0, "boundary": 0.125}, "mean": 0.375},
    }
    assert format_table(results).splitlines() == [
        "step  background  object  boundary   mean",
        "  10       0.500       -     0.250  0.375",
        " 200       1.000   0.000     0.125  0.375",
    ]


# -- invalid input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "steps, message",
    [
        ((0, 10), "step 0 is invalid"),
        ((10, -5), "step -5 is invalid"),
        ((20, 10, 20), "step 20 is listed twice"),
        ((10, 10), "step 10 is listed twice"),
        ((2.5,), "step 2.5 is invalid"),
        ((True,), "step True is invalid"),
        ((), "steps is empty"),
    ],
)
def test_bad_steps_rejected(steps, message, gated_rule):
    with pytest.raises(ValueError, match=message):
        check_steps(steps)
    with pytest.raises(ValueError, match=message):
        evaluate_rule(gated_rule, random_pairs(count=1), steps=steps)


def test_check_steps_sorts():
    assert check_steps([40, np.int64(10), 20]) == (10, 20, 40)
    assert check_steps(DEFAULT_STEPS) == (10, 20, 40, 80, 200, 1000)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(schedule="lockstep"), "schedule='lockstep' is not supported"),
        (dict(schedule="sync", update_probability=0.5), "only used by schedule='bernoulli'"),
        (dict(update_probability=1.5), "update_probability=1.5 is invalid"),
        (dict(threads=0), "threads=0 is invalid"),
        (dict(stats_interval=0), "stats_interval=0 is invalid"),
        (dict(limit=0), "limit=0 is invalid"),
    ],
)
def test_bad_settings_rejected(options, message, gated_rule):
    with pytest.raises(ValueError, match=message):
        evaluate_rule(gated_rule, random_pairs(count=1), steps=(1,), **options)


def test_bad_images_and_labels_rejected(gated_rule):
    image, label = random_pairs(count=1)[0]
    with pytest.raises(ValueError, match=r"label 0 has shape \(16, 15\)"):
        evaluate_rule(gated_rule, [(image, label[:, :15])], steps=(1,))
    with pytest.raises(ValueError, match="label 0 contains class 3"):
        evaluate_rule(gated_rule, [(image, np.full((16, 16), 3))], steps=(1,))
    with pytest.raises(ValueError, match="label 0 contains class -2"):
        evaluate_rule(gated_rule, [(image, np.full((16, 16), -2))], steps=(1,))
    with pytest.raises(ValueError, match="dtype float"):
        evaluate_rule(gated_rule, [(image, label.astype(np.float32))], steps=(1,))
    with pytest.raises(ValueError, match="got 2 images but 1 labels"):
        evaluate_rule(gated_rule, [image, image], [label], steps=(1,))
    with pytest.raises(ValueError, match="no images to evaluate"):
        evaluate_rule(gated_rule, [], steps=(1,))
    with pytest.raises(ValueError, match="initial_states has 0 states"):
        evaluate_rule(gated_rule, [(image, label)], steps=(1,), initial_states=[])
    with pytest.raises(ValueError, match="expected floats in"):
        evaluate_rule(gated_rule, [(image * 2.0, label)], steps=(1,))
