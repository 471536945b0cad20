"""The run loop and `nca simulate`: recorded statistics, changing inputs, resume, kills, the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from PIL import Image

from nca_sim.engine import Simulator
from nca_sim.inputs import InputSequence
from nca_sim.metrics import segmentation_iou
from nca_sim.rule import Architecture, Rule, save_rule
from nca_sim.schema import RECORDER_ATTRS, REQUIRED_ATTRS
from nca_sim.simulate import SimulationSettings, clock_rate_grid, parse_clock_rates, run_simulation
from nca_sim.store import StoreError, open_run

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = Architecture(state_channels=8, hidden_channels=16)


def make_rule(arch=SMALL, seed=0):
    import torch

    from nca_train.model import SegmentationNCA

    torch.manual_seed(seed)
    return SegmentationNCA(arch).to_rule()


@pytest.fixture(scope="module")
def rule():
    return make_rule()


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory, rule):
    return save_rule(rule, tmp_path_factory.mktemp("rules") / "small.npz")


def make_inputs(count=3, height=10, width=9, seed=0, **options):
    rng = np.random.default_rng(seed)
    images = rng.random((count, height, width, 3), dtype=np.float32)
    labels = rng.integers(0, 3, (count, height, width))
    labels[:, 0, 0] = -1  # one unknown pixel per image
    return InputSequence(images, labels, **options)


def open_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path).load()


# -- statistics against an independent replay ----------------------------------------------


def test_recorded_statistics_match_replay(tmp_path, rule):
    inputs = make_inputs(shift_every=4, change="swap")
    settings = SimulationSettings(steps=12, schedule="bernoulli", seed=5, snapshot_every=1, record_state=True)
    summary = run_simulation(tmp_path / "run.zarr", rule, inputs, settings, buffer_steps=5)
    stored = open_quietly(tmp_path / "run.zarr")

    simulator = Simulator(rule, schedule="bernoulli", seed=5)
    states, logits, updates = [], [], [0]
    for step in range(13):
        position = inputs.position(step)
        if step == 0 or position != inputs.position(step - 1):
            simulator.set_image(inputs.images[position.image_index])
        if step > 0:
            updates.append(simulator.step().updates)
        states.append(simulator.state.copy())
        logits.append(simulator.logits())
    states, logits = np.stack(states), np.stack(logits)
    classes = logits.argmax(-1)

    np.testing.assert_array_equal(stored.state.values, states)
    np.testing.assert_array_equal(stored.classes.values, classes)
    np.testing.assert_array_equal(stored.updates.values, updates)
    np.testing.assert_allclose(stored.state_l1.values, np.abs(states).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stored.logits_l1.values, np.abs(logits).mean(axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(
        stored.state_change_l1.values[1:], np.abs(np.diff(states, axis=0)).mean(axis=(1, 2, 3)), rtol=1e-6
    )
    np.testing.assert_allclose(
        stored.logits_change_l1.values[1:], np.abs(np.diff(logits, axis=0)).mean(axis=(1, 2, 3)), rtol=1e-6
    )
    np.testing.assert_allclose(
        stored.class_change_fraction.values[1:], (classes[1:] != classes[:-1]).mean(axis=(1, 2)), rtol=1e-6
    )
    for name in ("state_change_l1", "logits_change_l1", "class_change_fraction"):
        assert np.isnan(stored[name].values[0]), name
    np.testing.assert_array_equal(stored.nonfinite_count.values, np.zeros(13))
    np.testing.assert_array_equal(stored.image_index.values, [inputs.position(t).image_index for t in range(13)])
    assert summary.cell_updates == sum(updates)
    assert summary.steps_done == 12
    assert summary.complete


def test_iou_follows_shifted_labels(tmp_path, rule):
    inputs = make_inputs(count=1, height=12, width=12, shift_every=3, change="shift", max_shift=4, seed=2)
    settings = SimulationSettings(steps=15, schedule="sync", snapshot_every=1)
    run_simulation(tmp_path / "run.zarr", rule, inputs, settings)
    stored = open_quietly(tmp_path / "run.zarr")

    shifts = [(inputs.position(t).shift_y, inputs.position(t).shift_x) for t in range(16)]
    np.testing.assert_array_equal(stored.shift_y.values, [s[0] for s in shifts])
    np.testing.assert_array_equal(stored.shift_x.values, [s[1] for s in shifts])
    assert len(set(shifts)) > 2
    for step in range(16):
        _, label = inputs.render(inputs.position(step))
        iou, mean = segmentation_iou(stored.classes.values[step], label, 3)
        np.testing.assert_array_equal(stored.iou.values[step], iou)
        np.testing.assert_allclose(stored.mean_iou.values[step], mean, rtol=1e-6)
    assert stored.labels.shape == (1, 12, 12)


def test_reset_gate_and_highres_rule(tmp_path):
    arch = Architecture(state_channels=8, hidden_channels=16, reset_gate=True, highres_encoder_channels=4)
    rule = make_rule(arch)
    inputs = make_inputs(count=1, height=12, width=10)
    settings = SimulationSettings(steps=6, schedule="async", snapshot_every=3, record_state=True)
    run_simulation(tmp_path / "run.zarr", rule, inputs, settings)
    stored = open_quietly(tmp_path / "run.zarr")

    assert stored.sizes["y"] == 6
    assert stored.sizes["x"] == 5
    assert stored.classes.shape == (3, 12, 10)
    assert stored.state.shape == (3, 6, 5, 8)
    gate = stored.reset_gate_mean.values
    assert np.isnan(gate[0])
    assert np.all((gate[1:] > 0) & (gate[1:] < 1))
    np.testing.assert_array_equal(stored.updates.values[1:], np.full(6, 30))  # async: every cell once per step


def test_rule_without_gate_has_no_gate_variable(tmp_path, rule):
    run_simulation(tmp_path / "run.zarr", rule, make_inputs(count=1), SimulationSettings(steps=2))
    assert "reset_gate_mean" not in open_quietly(tmp_path / "run.zarr")


# -- resume -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, clock_rates",
    [("bernoulli", None), ("async", None), ("clock", "uniform:0.5,1.5")],
)
def test_resume_equals_uninterrupted_run(tmp_path, rule, schedule, clock_rates):
    def settings():
        return SimulationSettings(steps=24, schedule=schedule, seed=11, snapshot_every=4, record_state=True,
                                  clock_rates=clock_rates)

    def inputs():
        return make_inputs(shift_every=5, change="swap")

    full = run_simulation(tmp_path / "full.zarr", rule, inputs(), settings(), buffer_steps=7)
    half = run_simulation(tmp_path / "split.zarr", rule, inputs(), settings(), stop_at=12, buffer_steps=7)
    assert half.steps_done == 12
    assert not half.complete
    assert open_run(tmp_path / "split.zarr").sizes["step"] == 13
    resumed = run_simulation(tmp_path / "split.zarr", rule, resume=True, buffer_steps=5)
    assert resumed.first_step == 12
    assert resumed.steps_done == 24
    assert resumed.complete
    assert full.cell_updates == half.cell_updates + resumed.cell_updates

    expected, actual = open_quietly(tmp_path / "full.zarr"), open_quietly(tmp_path / "split.zarr")
    for name in expected.data_vars:
        np.testing.assert_array_equal(actual[name].values, expected[name].values, err_msg=name)
    assert actual.attrs["steps_done"] == 24
    assert actual.attrs["complete"] is True


def test_resume_rejects_other_rule_and_complete_store(tmp_path, rule):
    path = tmp_path / "run.zarr"
    run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=6), stop_at=3)
    with pytest.raises(StoreError, match="weight hash"):
        run_simulation(path, make_rule(seed=1), resume=True)
    run_simulation(path, rule, resume=True)
    with pytest.raises(StoreError, match="is complete \\(6 steps\\)"):
        run_simulation(path, rule, resume=True)
    with pytest.raises(ValueError, match="pass neither"):
        run_simulation(path, rule, make_inputs(count=1), resume=True)


def test_new_run_rejects_existing_store(tmp_path, rule):
    path = tmp_path / "run.zarr"
    run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=2))
    with pytest.raises(StoreError, match="already exists"):
        run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=2))
    replaced = run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=3), overwrite=True)
    assert replaced.steps_done == 3


def test_new_run_fills_empty_folder(tmp_path, rule):
    path = tmp_path / "made-beforehand.zarr"
    path.mkdir()
    summary = run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=2))
    assert summary.steps_done == 2
    assert (path / "zarr.json").is_file()


KILL_SCRIPT = """
import sys
import numpy as np
from nca_sim.inputs import InputSequence
from nca_sim.rule import load_rule
from nca_sim.simulate import SimulationSettings, run_simulation
rng = np.random.default_rng(0)
inputs = InputSequence(rng.random((2, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, (2, 8, 8)),
                       shift_every=7, change="swap")
settings = SimulationSettings(steps=200000, schedule="async", seed=4, snapshot_every=50)
run_simulation(sys.argv[2], load_rule(sys.argv[1]), inputs, settings, buffer_steps=8)
"""


def committed_steps(path):
    try:
        return json.loads((path / "zarr.json").read_text())["attributes"]["steps_done"]
    except (OSError, ValueError, KeyError):
        return -1


def test_killed_run_reopens_and_resumes(tmp_path, rule, rule_file):
    path = tmp_path / "run.zarr"
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(rule_file), str(path)])
    try:
        deadline = time.monotonic() + 120  # the child may compile the kernels on a cold cache
        while committed_steps(path) < 60 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()

    stored = open_quietly(path)
    steps_done = stored.attrs["steps_done"]
    assert steps_done >= 60
    assert stored.attrs["complete"] is False
    written = open_run(path).load()
    for name in ("state_l1", "logits_l1", "updates", "image_index"):
        assert np.all(np.isfinite(written[name].values)), name
    assert np.all(written.updates.values[1:] == 64)

    # The killed run continues exactly as an uninterrupted one.
    stop = steps_done + 20
    run_simulation(path, rule, resume=True, stop_at=stop)
    rng = np.random.default_rng(0)
    inputs = InputSequence(rng.random((2, 8, 8, 3), dtype=np.float32), rng.integers(0, 3, (2, 8, 8)),
                           shift_every=7, change="swap")
    settings = SimulationSettings(steps=200000, schedule="async", seed=4, snapshot_every=50)
    run_simulation(tmp_path / "reference.zarr", rule, inputs, settings, stop_at=stop)
    resumed, reference = open_run(path).load(), open_run(tmp_path / "reference.zarr").load()
    assert resumed.sizes["step"] == stop + 1
    for name in ("state_l1", "logits_change_l1", "updates", "mean_iou", "classes"):
        np.testing.assert_array_equal(resumed[name].values, reference[name].values, err_msg=name)


# -- settings and helpers ---------------------------------------------------------------------


def test_clock_rates_parse_and_draw():
    assert parse_clock_rates("constant:2") == ("constant", (2.0,))
    assert parse_clock_rates("uniform:0.5,1.5") == ("uniform", (0.5, 1.5))
    rates = clock_rate_grid("uniform:0.5,1.5", (4, 6), seed=3)
    assert rates.shape == (4, 6)
    assert rates.dtype == np.float64
    assert np.all((rates >= 0.5) & (rates <= 1.5))
    np.testing.assert_array_equal(rates, clock_rate_grid("uniform:0.5,1.5", (4, 6), seed=3))
    np.testing.assert_array_equal(clock_rate_grid("constant:2", (2, 2), seed=0), np.full((2, 2), 2.0))
    for spec in ("uniform:1.5,0.5", "uniform:0,1", "constant:x", "normal:1,2", "constant:1,2", "uniform:nan,1"):
        with pytest.raises(ValueError, match="invalid: expected 'constant:R'"):
            parse_clock_rates(spec)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": -1}, "steps=-1"),
        ({"snapshot_every": 0}, "snapshot_every=0"),
        ({"threads": 0}, "threads=0"),
        ({"clock_rates": "uniform:1,2"}, "only used by schedule 'clock'"),
    ],
)
def test_settings_reject_bad_values(options, message):
    options = {"steps": 5, **options}
    with pytest.raises(ValueError, match=message):
        SimulationSettings(**options)


def test_labels_beyond_rule_classes_rejected(tmp_path, rule):
    inputs = InputSequence(np.zeros((1, 4, 4, 3), np.float32), np.full((1, 4, 4), 3))
    with pytest.raises(ValueError, match="labels contain class 3"):
        run_simulation(tmp_path / "run.zarr", rule, inputs, SimulationSettings(steps=2))
    assert not (tmp_path / "run.zarr").exists()


@pytest.mark.parametrize(
    "prediction, target, expected_iou, expected_mean",
    [
        # class 0: 1 of 3 pixels shared; class 1: 1 of 2; class 2 absent from both.
        ([[0, 0], [1, 1]], [[0, 1], [1, 0]], [1 / 3, 1 / 3, np.nan], 1 / 3),
        ([[0, 1], [2, 2]], [[0, 1], [2, 2]], [1.0, 1.0, 1.0], 1.0),
        # The unknown pixel (-1) is left out, so class 2 is absent and class 0 is exact.
        ([[0, 2], [1, 1]], [[0, -1], [1, 0]], [0.5, 0.5, np.nan], 0.5),
        ([[1, 1], [1, 1]], [[-1, -1], [-1, -1]], [np.nan, np.nan, np.nan], np.nan),
    ],
)
def test_segmentation_iou_hand_made(prediction, target, expected_iou, expected_mean):
    iou, mean = segmentation_iou(np.array(prediction, np.int8), np.array(target), 3)
    assert iou.dtype == np.float32
    assert iou.shape == (3,)
    np.testing.assert_allclose(iou, expected_iou, rtol=1e-6)
    np.testing.assert_allclose(mean, expected_mean, rtol=1e-6)


def test_segmentation_iou_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        segmentation_iou(np.zeros((2, 2)), np.zeros((2, 3)), 3)


# -- the command ----------------------------------------------------------------------------


def invoke(*args):
    from cli.main import main

    return CliRunner().invoke(main, ["simulate", *map(str, args)])


def test_command_runs_and_prints_json(tmp_path, rule_file):
    path = tmp_path / "run.zarr"
    result = invoke("--rule", rule_file, "--steps", 20, "--size", "12x10", "--shift-every", 5, "--change", "swap",
                    "--record-state", "--snapshot-every", 5, "-o", path, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["steps_done"] == 20
    assert summary["complete"] is True
    assert summary["store"] == str(path)
    assert set(summary["final_iou"]) == {"background", "object", "boundary"}
    assert summary["cell_updates_per_second"] > 0

    stored = open_quietly(path)
    assert stored.images.shape == (4, 12, 10, 3)
    assert stored.state.shape == (5, 12, 10, 8)
    for name in REQUIRED_ATTRS + RECORDER_ATTRS:
        assert name in stored.attrs, name
    assert stored.attrs["change"] == "swap"
    assert stored.attrs["shift_every"] == 5
    assert stored.attrs["input"].startswith("synthetic (split test")


def test_command_resume_continues(tmp_path, rule_file, rule):
    path = tmp_path / "run.zarr"
    run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=10), stop_at=4)
    result = invoke("--rule", rule_file, "--resume", "-o", path)
    assert result.exit_code == 0, result.output
    assert "4 -> 10 of 10 (complete)" in result.output
    assert "final IoU" in result.output


def test_command_reads_image_file(tmp_path, rule_file):
    picture = tmp_path / "picture.png"
    Image.fromarray((np.random.default_rng(0).random((14, 16, 3)) * 255).astype(np.uint8)).save(picture)
    result = invoke("--rule", rule_file, "--steps", 3, "--input", picture, "-o", tmp_path / "run.zarr")
    assert result.exit_code == 0, result.output
    stored = open_quietly(tmp_path / "run.zarr")
    assert stored.images.shape == (1, 14, 16, 3)
    assert "iou" not in stored
    assert "labels" not in stored
    assert "final IoU" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "0x3"], "is not a size"),
        (["--size", "ax3"], "is not a size"),
        (["--change", "swap"], "needs --shift-every"),
        (["--clock-rates", "uniform:1,2"], "only used with --schedule clock"),
        (["--schedule", "clock", "--clock-rates", "uniform:2,1"], "LOW <= HIGH"),
        (["--steps", "0"], "0 is not in the range"),
        (["--update-probability", "0"], "--update-probability"),
        (["--first-image", "100000"], "out of range"),
        (["--input", "missing-folder"], "not found"),
    ],
)
def test_command_rejects_bad_options(tmp_path, rule_file, args, message):
    result = invoke("--rule", rule_file, "--steps", 2, "-o", tmp_path / "run.zarr", *args)
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "run.zarr").exists()


def stored_labels(path):
    return xr.open_zarr(path)["labels"].values


def test_command_boundary_width(tmp_path, rule):
    common = ["--steps", 2, "--size", "32x32"]
    plain_rule = save_rule(rule, tmp_path / "plain.npz")
    assert invoke("--rule", plain_rule, *common, "-o", tmp_path / "default.zarr").exit_code == 0
    assert (stored_labels(tmp_path / "default.zarr") == 2).any()

    assert invoke("--rule", plain_rule, *common, "--boundary-width", 0, "-o", tmp_path / "none.zarr").exit_code == 0
    assert set(np.unique(stored_labels(tmp_path / "none.zarr"))) == {0, 1}

    # A rule trained without a boundary band records that in its metadata, which sets the default.
    binary_rule = save_rule(Rule(rule.architecture, rule.weights, {"boundary_width": 0}), tmp_path / "binary.npz")
    assert invoke("--rule", binary_rule, *common, "-o", tmp_path / "from-rule.zarr").exit_code == 0
    assert set(np.unique(stored_labels(tmp_path / "from-rule.zarr"))) == {0, 1}


def test_command_resume_needs_store(rule_file):
    result = invoke("--rule", rule_file, "--resume")
    assert result.exit_code != 0
    assert "--resume needs the store to continue: pass it with -o" in result.output


def test_command_resume_rejects_settings(tmp_path, rule_file, rule):
    path = tmp_path / "run.zarr"
    run_simulation(path, rule, make_inputs(count=1), SimulationSettings(steps=10), stop_at=4)
    result = invoke("--rule", rule_file, "--resume", "-o", path, "--seed", 3, "--input", "x")
    assert result.exit_code != 0
    assert "--seed, --input: a resumed run uses the settings stored" in result.output


def test_command_rejects_existing_store(tmp_path, rule_file):
    path = tmp_path / "run.zarr"
    assert invoke("--rule", rule_file, "--steps", 2, "--size", "8x8", "-o", path).exit_code == 0
    result = invoke("--rule", rule_file, "--steps", 2, "--size", "8x8", "-o", path)
    assert result.exit_code != 0
    assert "already exists: continue it with --resume, replace it with --overwrite" in result.output


def test_command_imports_no_torch(tmp_path, rule_file):
    script = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from cli.simulate import simulate\n"
        f"result = CliRunner().invoke(simulate, ['--rule', {str(rule_file)!r}, '--steps', '3', '--size', '8x8',"
        f" '-o', {str(tmp_path / 'run.zarr')!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO_ROOT)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"


def test_summary_formats_missing_iou():
    from cli.simulate import _format_iou

    assert _format_iou(float("nan")) == "-"
    assert _format_iou(0.12345) == "0.123"
