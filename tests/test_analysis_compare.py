"""Comparing one series across runs."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import write_store

from analysis.compare import compare_runs, plot_compare


def test_compare_resettable_and_growing_runs(tmp_path):
    t = np.arange(201)
    bounded = write_store(tmp_path / "reset.zarr", steps=200, attrs={"schedule": "async"})
    growing = write_store(tmp_path / "plain.zarr", steps=200, attrs={"schedule": "sync"},
                          series={"state_l1": np.exp(0.02 * t)})
    short = write_store(tmp_path / "short.zarr", steps=200, steps_done=120)
    result = compare_runs([bounded, growing, short])
    assert result["run"].values.tolist() == ["reset (async)", "plain (sync)", "short (async)"]
    assert result["verdict"].values.tolist() == ["saturating", "exponential", "saturating"]
    assert float(result["rate"].sel(run="plain (sync)")) == pytest.approx(0.02, rel=0.05)
    assert result["series"].dims == ("run", "step")
    assert np.isnan(result["series"].sel(run="short (async)").values[121:]).all()
    assert result["complete"].values.tolist() == [True, True, False]
    assert any("short (async): the run is incomplete" in note for note in result.attrs["notes"])
    plot_compare(result, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").exists()


def test_compare_run_without_variable(tmp_path):
    with_gate = write_store(tmp_path / "a.zarr")
    without = write_store(tmp_path / "b.zarr", reset_gate=False)
    result = compare_runs([with_gate, without], variable="reset_gate_mean")
    assert result["verdict"].values.tolist() == ["saturating", "not recorded"]
    assert any("reset_gate_mean was not recorded" in note for note in result.attrs["notes"])


def test_compare_same_names_stay_distinct(tmp_path):
    first = write_store(tmp_path / "x" / "run.zarr")
    second = write_store(tmp_path / "y" / "run.zarr")
    result = compare_runs([first, second])
    assert result["run"].values.tolist() == ["run (async) #1", "run (async) #2"]


def test_compare_rejects_non_step_variable(tmp_path):
    with pytest.raises(ValueError, match="per-step variable"):
        compare_runs([write_store(tmp_path / "a.zarr")], variable="iou")


def test_compare_needs_a_store():
    with pytest.raises(ValueError, match="no stores"):
        compare_runs([])


def test_compare_rejects_unknown_variable(tmp_path):
    with pytest.raises(ValueError, match="'nope' is not a per-step variable.*state_l1"):
        compare_runs([write_store(tmp_path / "a.zarr")], variable="nope")
