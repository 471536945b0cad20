"""Reset-gate analysis: change-point detection, training logs and stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_helpers import write_store

from analysis.reset import analyze_reset, detect_change_point, moving_mean, read_metrics
from analysis.store import MissingDataError


def write_log(path, gate, loss=None, extra_lines=()):
    with open(path, "w") as handle:
        for i, value in enumerate(gate):
            record = {"iteration": i, "loss": float(loss[i]) if loss is not None else 1.0 / (i + 1),
                      "reset_gate_mean": float(value)}
            handle.write(json.dumps(record) + "\n")
        for line in extra_lines:
            handle.write(line + "\n")
    return path


def test_moving_mean_matches_reference():
    values = np.arange(10, dtype=float)
    smooth = moving_mean(values, 3)
    assert smooth[5] == pytest.approx(5.0)
    assert smooth[0] == pytest.approx(0.5)  # only two values at the edge
    assert smooth.shape == values.shape


def test_step_change_found_at_its_iteration():
    rng = np.random.default_rng(0)
    gate = np.where(np.arange(1000) < 300, 0.2, 0.5) + 0.02 * rng.standard_normal(1000)
    change = detect_change_point(gate)
    assert change.verdict == "step change"
    assert abs(change.at - 300) <= 10
    assert change.level_before == pytest.approx(0.2, abs=0.01)
    assert change.level_after == pytest.approx(0.5, abs=0.01)
    assert change.noise == pytest.approx(0.02, rel=0.2)


def test_noise_without_step_is_no_change():
    rng = np.random.default_rng(1)
    change = detect_change_point(0.3 + 0.02 * rng.standard_normal(1000))
    assert change.verdict == "no change"


def test_linear_drift_is_gradual():
    rng = np.random.default_rng(2)
    gate = np.linspace(0.1, 0.6, 1000) + 0.01 * rng.standard_normal(1000)
    assert detect_change_point(gate).verdict == "gradual drift"


def test_constant_series_is_no_change():
    assert detect_change_point(np.full(100, 0.25)).verdict == "no change"


def test_positions_give_change_iteration():
    positions = np.arange(200) * 10
    gate = np.where(np.arange(200) < 120, 0.6, 0.1)
    change = detect_change_point(gate, positions)
    assert change.at == 1200.0
    assert change.index == 120


def test_short_series_is_too_short():
    assert detect_change_point([0.1, 0.2]).verdict == "too short"


def test_metrics_log_with_step_change(tmp_path):
    rng = np.random.default_rng(3)
    gate = np.where(np.arange(600) < 400, 0.05, 0.35) + 0.01 * rng.standard_normal(600)
    path = write_log(tmp_path / "metrics.jsonl", gate, extra_lines=['{"iteration": 600, "loss": 0.'])
    result = analyze_reset(path)
    assert result.attrs["change"]["verdict"] == "step change"
    assert abs(result.attrs["change"]["at"] - 400) <= 10
    assert result["reset_gate_mean"].dims == ("iteration",)
    assert result.sizes["iteration"] == 600
    assert "loss" in result
    assert any("line 601" in note for note in result.attrs["notes"])


def test_metrics_log_without_step_change(tmp_path):
    rng = np.random.default_rng(4)
    path = write_log(tmp_path / "metrics.jsonl", 0.2 + 0.01 * rng.standard_normal(500))
    result = analyze_reset(path)
    assert result.attrs["change"]["verdict"] == "no change"
    assert result.attrs["summary"]["mean"] == pytest.approx(0.2, abs=0.005)


def test_metrics_log_without_gate_raises(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 0, "loss": 1.0}\n{"iteration": 1, "loss": 0.9}\n')
    with pytest.raises(MissingDataError, match="no reset gate"):
        analyze_reset(path)


def test_metrics_log_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        read_metrics(tmp_path / "metrics.jsonl")


def test_store_gate_over_steps(tmp_path):
    steps = 200
    gate = np.where(np.arange(steps + 1) < 120, 0.3, 0.1)
    path = write_store(tmp_path / "run.zarr", steps=steps, series={"reset_gate_mean": gate})
    result = analyze_reset(path)
    assert result["reset_gate_mean"].dims == ("step",)
    assert int(result["step"][0]) == 1  # step 0 has no update
    assert result.attrs["change"]["verdict"] == "step change"
    assert result.attrs["change"]["at"] == 120


def test_store_of_rule_without_gate_says_so(tmp_path):
    path = write_store(tmp_path / "run.zarr", reset_gate=False)
    with pytest.raises(MissingDataError, match="has no reset gate"):
        analyze_reset(path)


def test_store_without_recorded_gate_says_so(tmp_path):
    path = write_store(tmp_path / "run.zarr", drop=("reset_gate_mean",))
    with pytest.raises(MissingDataError, match="reset gate was not recorded"):
        analyze_reset(path)


def test_metrics_log_of_rule_without_gate_says_so(tmp_path):
    path = write_log(tmp_path / "metrics.jsonl", np.zeros(50))
    with pytest.raises(MissingDataError, match="is 0 at every iteration"):
        analyze_reset(path)


def test_metrics_log_with_config_without_gate_says_so(tmp_path):
    (tmp_path / "config.toml").write_text("[model]\nreset_gate = false\n")
    path = write_log(tmp_path / "metrics.jsonl", np.full(50, 0.3))
    with pytest.raises(MissingDataError, match="reset_gate = false"):
        analyze_reset(path)


def test_metrics_log_null_loss_is_nan(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [{"iteration": i, "loss": None if i == 0 else 1.0, "reset_gate_mean": 0.2} for i in range(20)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = analyze_reset(path)
    assert np.isnan(result["loss"].values[0])
    assert result["loss"].values[1] == 1.0
