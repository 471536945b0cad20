"""IoU drop and recovery at image changes."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import write_store

from analysis.iou import analyze_iou, find_changes, iou_rows, measure_recovery, plot_iou
from analysis.store import MissingDataError


def test_find_changes_in_index_and_shift():
    index = np.array([0, 0, 0, 1, 1, 1, 1])
    shift_y = np.array([0, 0, 0, 0, 0, 2, 2])
    shift_x = np.zeros(7, dtype=int)
    assert find_changes(index, shift_y, shift_x).tolist() == [3, 5]


def test_measure_recovery_reference():
    iou = np.array([0.8, 0.8, 0.8, 0.2, 0.5, 0.79, 0.8, 0.6, 0.65, 0.7])
    out = measure_recovery(iou, [3, 7], tolerance=0.02, baseline_steps=2)
    assert out["level_before"].tolist() == pytest.approx([0.8, 0.795])
    assert out["minimum_after"].tolist() == pytest.approx([0.2, 0.6])
    assert out["drop"].tolist() == pytest.approx([0.6, 0.195])
    assert out["recovery_steps"][0] == 2  # 0.79 at position 5 is within 0.02 of 0.8
    assert np.isnan(out["recovery_steps"][1])  # 0.7 never reaches 0.775 before the end


def test_measure_recovery_without_drop_is_zero_steps():
    out = measure_recovery(np.full(10, 0.5), [5])
    assert out["drop"][0] == 0.0
    assert out["recovery_steps"][0] == 0


def test_measure_recovery_skips_undefined_iou():
    out = measure_recovery(np.full(10, np.nan), [5])
    assert np.isnan(out["level_before"][0])
    assert np.isnan(out["recovery_steps"][0])


def synthetic_run(tmp_path):
    steps = 300
    t = np.arange(steps + 1)
    index = np.where(t < 100, 0, 1)
    shift_y = np.where(t < 200, 0, 3)
    mean = np.full(steps + 1, 0.8)
    mean[100:200] = 0.8 - 0.5 * np.exp(-(t[100:200] - 100) / 10.0)  # recovers
    mean[200:] = 0.4  # drops and stays down
    per_class = np.stack([mean + 0.1, mean, mean - 0.2], axis=1)
    return write_store(tmp_path / "run.zarr", steps=steps,
                       series={"image_index": index, "shift_y": shift_y, "mean_iou": mean, "iou": per_class})


def test_analyze_iou_changes_and_recovery(tmp_path):
    result = analyze_iou(synthetic_run(tmp_path), tolerance=0.02)
    assert result["change_step"].values.tolist() == [100, 200]
    assert result["kind"].values.tolist() == ["image", "shift"]
    mean = dict(series="mean")
    assert result["drop"].sel(**mean).values.tolist() == pytest.approx([0.5, 0.4], abs=1e-3)
    # 0.8 - 0.5 exp(-k / 10) >= 0.78 first at k = 33.
    assert result["recovery_steps"].sel(**mean).values[0] == 33
    assert np.isnan(result["recovery_steps"].sel(**mean).values[1])
    assert result["iou"].dims == ("step", "series")
    assert result["series"].values.tolist() == ["background", "object", "boundary", "mean"]
    rows = iou_rows(result)
    assert rows[1]["recovery_steps"] == "not recovered"
    assert rows[1]["shift"] == "3,0"


def test_plot_iou_writes_png(tmp_path):
    result = analyze_iou(synthetic_run(tmp_path))
    plot_iou(result, tmp_path / "iou.png")
    assert (tmp_path / "iou.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_iou_without_labels_says_so(tmp_path):
    path = write_store(tmp_path / "run.zarr", record_labels=False)
    with pytest.raises(MissingDataError, match=r"labels were not recorded.*nca simulate --input DATASET"):
        analyze_iou(path)


def test_analyze_iou_without_changes_notes_it(tmp_path):
    result = analyze_iou(write_store(tmp_path / "run.zarr"))
    assert result.sizes["change"] == 0
    assert any("never change" in note for note in result.attrs["notes"])
    assert iou_rows(result) == []
