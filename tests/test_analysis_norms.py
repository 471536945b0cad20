"""Norm analysis of stores: verdict per series, divergence, plots."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import write_store

from analysis.norms import analyze_norms, plot_norms


def test_norms_verdicts_per_series(tmp_path):
    steps = 400
    t = np.arange(steps + 1)
    path = write_store(tmp_path / "run.zarr", steps=steps,
                       series={"state_l1": 0.5 * np.exp(0.01 * t), "logits_l1": 1.0 + 0.2 * t})
    result = analyze_norms(path)
    verdicts = dict(zip(result["series"].values, result["verdict"].values))
    assert verdicts == {"state_l1": "exponential", "logits_l1": "linear",
                        "state_change_l1": "saturating", "logits_change_l1": "saturating"}
    assert float(result["rate"].sel(series="state_l1")) == pytest.approx(0.01, rel=0.05)
    assert result["state_l1"].attrs["long_name"] == "L1 norm of the state"
    assert result.attrs["first_nonfinite_state_step"] == -1


def test_change_norm_step_zero_ignored(tmp_path):
    result = analyze_norms(write_store(tmp_path / "run.zarr"))
    assert int(result["first_nonfinite_step"].sel(series="state_change_l1")) == -1


def test_diverged_run_reports_first_step(tmp_path):
    steps = 100
    state = np.exp(0.05 * np.arange(steps + 1))
    state[71:] = np.inf
    counts = np.where(np.arange(steps + 1) >= 71, 12, 0)
    path = write_store(tmp_path / "run.zarr", steps=steps, series={"state_l1": state, "nonfinite_count": counts})
    result = analyze_norms(path)
    assert str(result["verdict"].sel(series="state_l1").values) == "diverged"
    assert int(result["first_nonfinite_step"].sel(series="state_l1")) == 71
    assert result.attrs["first_nonfinite_state_step"] == 71
    assert any("NaN or infinity from step 71" in note for note in result.attrs["notes"])
    plot_norms(result, tmp_path / "norms.png")
    assert (tmp_path / "norms.png").stat().st_size > 1000
