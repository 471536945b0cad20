"""Opening stores for analysis: incomplete runs, other schema versions, missing variables."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_helpers import schema_dataset, write_dataset, write_store

from analysis.norms import analyze_norms
from analysis.store import StoreError, axis_label, open_store, run_label


def test_complete_store_has_no_notes(tmp_path):
    dataset, check = open_store(write_store(tmp_path / "run.zarr", steps=40))
    assert check.notes == []
    assert check.complete
    assert dataset.sizes["step"] == 41
    assert check.name == "run"


def test_incomplete_store_is_cut_to_steps_done(tmp_path):
    dataset, check = open_store(write_store(tmp_path / "run.zarr", steps=60, steps_done=23, snapshot_every=10))
    assert not check.complete
    assert check.steps_done == 23
    assert dataset.sizes["step"] == 24
    assert dataset["snapshot_step"].values.tolist() == [0, 10, 20]
    assert np.isfinite(dataset["state_l1"].values).all()
    assert any("incomplete: 23 of 60 steps done" in note for note in check.notes)


def test_other_schema_version_is_noted(tmp_path):
    _, check = open_store(write_store(tmp_path / "run.zarr", attrs={"schema_version": 7}))
    assert any("schema version 7" in note for note in check.notes)


def test_missing_required_variable_is_noted(tmp_path):
    path = write_store(tmp_path / "run.zarr", drop=("logits_l1", "logits_change_l1"))
    _, check = open_store(path)
    assert "logits_l1" in check.missing_variables
    assert any("missing variables: logits_l1, logits_change_l1" in note for note in check.notes)
    # The analyses that can still run do run.
    result = analyze_norms(path)
    assert result["series"].values.tolist() == ["state_l1", "state_change_l1"]
    assert any("not recorded, so not analysed: logits_l1" in note for note in result.attrs["notes"])


def test_variable_with_wrong_dims_is_dropped(tmp_path):
    dataset = schema_dataset(steps=20)
    dataset["state_l1"] = dataset["state_l1"].expand_dims(extra=2).transpose("step", "extra")
    opened, check = open_store(write_dataset(dataset, tmp_path / "run.zarr"))
    assert "state_l1" not in opened.variables
    assert any("state_l1 has dimensions" in note for note in check.notes)


def test_missing_path_raises(tmp_path):
    with pytest.raises(StoreError, match=r"not found; write one with `nca simulate --rule RULE.npz -o RUN.zarr`"):
        open_store(tmp_path / "absent.zarr")


def test_non_store_raises(tmp_path):
    path = tmp_path / "notes.zarr"
    path.mkdir()
    with pytest.raises(StoreError, match="not a readable Zarr store.*give a trajectory store written by `nca simulate"):
        open_store(path)


def test_labels_come_from_attributes(tmp_path):
    dataset, check = open_store(write_store(tmp_path / "sync-run.zarr"))
    assert axis_label(dataset, "state_l1") == "L1 norm of the state [mean |s| per cell and channel]"
    assert run_label(dataset, check) == "sync-run (async)"
