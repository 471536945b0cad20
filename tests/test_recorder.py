"""The trajectory recorder: store layout, chunked writes, resume state, the writer lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import xarray as xr

from nca_sim.recorder import LOCK_NAME, Recorder, StoreLayout, StoreLockedError
from nca_sim.rule import Architecture
from nca_sim.schema import FILL_VALUES, REQUIRED_ATTRS, SCHEMA_NAME, VARIABLES
from nca_sim.store import StoreError, check_store_attrs, missing_variables, open_run

ARCH = Architecture(state_channels=8, hidden_channels=16, reset_gate=True)
ATTRS = {"schedule": "sync", "seed": 3, "update_probability": 1.0, "threads": 1, "shift_every": 0, "change": "none"}


@pytest.fixture(scope="module")
def rule():
    from nca_train.model import SegmentationNCA

    return SegmentationNCA(ARCH).to_rule()


def make_layout(steps=10, snapshot_every=3, labels=True, reset_gate=True, record_state=True, image_count=2):
    return StoreLayout(
        steps=steps, snapshot_every=snapshot_every, grid_shape=(6, 5), image_shape=(6, 5), state_channels=8,
        class_names=ARCH.class_names, image_count=image_count, labels=labels, reset_gate=reset_gate,
        record_state=record_state,
    )


def make_inputs(layout, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.random((layout.image_count, 6, 5, 3), dtype=np.float32)
    labels = rng.integers(-1, 3, (layout.image_count, 6, 5)) if layout.labels else None
    return images, labels


def step_values(step):
    """Distinct, checkable values for every per-step variable."""
    return {
        "state_l1": step + 0.5,
        "logits_l1": step + 0.25,
        "state_change_l1": step * 0.1,
        "logits_change_l1": step * 0.2,
        "class_change_fraction": 0.5,
        "updates": 30 + step,
        "nonfinite_count": 0,
        "reset_gate_mean": 0.4,
        "iou": [0.1, 0.2, np.nan],
        "mean_iou": 0.15,
        "image_index": step % 2,
        "shift_y": -step,
        "shift_x": step,
    }


def step_state(step):
    return np.full((6, 5, 8), step, np.float32)


def resume_for(step):
    return {"state": step_state(step), "step_count": step, "streams": np.arange(4, dtype=np.uint64) * 2**62}


def record(recorder, last_step, layout):
    """Append steps up to ``last_step`` with a flush whenever needs_flush is true."""
    for step in range(recorder.next_step, last_step + 1):
        values = step_values(step)
        if not layout.labels:
            values.pop("iou"), values.pop("mean_iou")
        if not layout.reset_gate:
            values.pop("reset_gate_mean")
        recorder.append(step, values, classes=np.full((6, 5), step % 3), state=step_state(step))
        assert recorder.buffered_steps <= recorder.buffer_steps
        if recorder.needs_flush:
            recorder.flush(resume_for(step))
    recorder.flush(resume_for(last_step))


def write_store(path, rule, layout=None, last_step=None, buffer_steps=4):
    layout = layout or make_layout()
    images, labels = make_inputs(layout)
    with Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS,
                         buffer_steps=buffer_steps) as recorder:
        record(recorder, layout.steps if last_step is None else last_step, layout)
    return layout


def open_quietly(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return xr.open_zarr(path)


def test_store_variables_match_schema(tmp_path, rule):
    path = tmp_path / "run.zarr"
    layout = write_store(path, rule)
    dataset = open_quietly(path)

    assert missing_variables(dataset) == []
    for name, variable in VARIABLES.items():
        assert name in dataset, name
        array = dataset[name]
        assert array.dims == variable.dims, name
        assert array.dtype == np.dtype(variable.dtype), name
        assert array.shape == layout.shape(name), name
        assert array.attrs["units"] == variable.units, name
        assert array.attrs["long_name"] == variable.long_name, name
    assert dataset.sizes["step"] == 11
    assert dataset.sizes["snapshot"] == 4
    np.testing.assert_array_equal(dataset["step"], np.arange(11))
    np.testing.assert_array_equal(dataset["snapshot_step"], [0, 3, 6, 9])
    assert list(dataset["class"].values) == list(ARCH.class_names)
    assert "resume_state" not in dataset
    assert "info" not in dataset


def test_store_root_attributes(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule)
    attrs = open_quietly(path).attrs

    for name in REQUIRED_ATTRS:
        assert name in attrs, name
    check_store_attrs(attrs, path)
    assert attrs["schema"] == SCHEMA_NAME
    assert attrs["steps_requested"] == 10
    assert attrs["steps_done"] == 10
    assert attrs["complete"] is True
    assert attrs["rule_sha256"] == rule.weights_sha256()
    assert attrs["rule_architecture"] == ARCH.to_dict()
    assert attrs["seed"] == 3
    assert set(attrs["versions"]) == {"nca", "numpy", "numba", "xarray", "zarr"}
    # Every attribute is plain JSON.
    assert json.loads(json.dumps(attrs)) == attrs


def test_store_values_round_trip(tmp_path, rule):
    path = tmp_path / "run.zarr"
    layout = write_store(path, rule)
    dataset = open_quietly(path).load()
    steps = np.arange(11)

    np.testing.assert_allclose(dataset.state_l1, steps + 0.5)
    np.testing.assert_array_equal(dataset.updates, 30 + steps)
    np.testing.assert_array_equal(dataset.shift_y, -steps)
    np.testing.assert_array_equal(dataset.image_index, steps % 2)
    np.testing.assert_allclose(dataset.iou[:, :2], np.tile([0.1, 0.2], (11, 1)))
    assert np.all(np.isnan(dataset.iou[:, 2]))
    np.testing.assert_array_equal(dataset.classes[:, 0, 0], [0, 0, 0, 0])  # steps 0, 3, 6, 9 mod 3
    np.testing.assert_array_equal(dataset.state[:, 0, 0, 0], [0, 3, 6, 9])
    images, labels = make_inputs(layout)
    np.testing.assert_array_equal(dataset.images, images)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.labels.dtype == np.int8


def test_optional_variables_left_out(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, make_layout(labels=False, reset_gate=False, record_state=False))
    dataset = open_quietly(path)

    for name in ("iou", "mean_iou", "labels", "reset_gate_mean", "state"):
        assert name not in dataset, name
    assert missing_variables(dataset) == []


def test_flushes_commit_steps_done(tmp_path, rule):
    path = tmp_path / "run.zarr"
    layout = make_layout(steps=20, snapshot_every=5)
    images, labels = make_inputs(layout)
    recorder = Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS, buffer_steps=4)
    with recorder:
        assert not path.exists()  # the store appears with its first flush
        for step in range(0, 14):
            recorder.append(step, step_values(step), classes=np.zeros((6, 5)), state=step_state(step))
            assert recorder.buffered_steps <= 4
            if recorder.needs_flush:
                recorder.flush(resume_for(step))
                stored = open_quietly(path)
                assert stored.attrs["steps_done"] == step
                written = stored.state_l1.values
                np.testing.assert_allclose(written[: step + 1], np.arange(step + 1) + 0.5)
                assert np.all(np.isnan(written[step + 1 :]))
                assert np.all(stored.updates.values[step + 1 :] == FILL_VALUES["int64"])
        assert recorder.steps_done == 11  # steps 12 and 13 are still buffered
        trimmed = open_run(path)
        assert trimmed.sizes["step"] == 12
        assert list(trimmed.snapshot_step.values) == [0, 5, 10]
        assert trimmed.attrs["complete"] is False


def test_snapshot_bytes_force_flush(tmp_path, rule):
    layout = make_layout(steps=20, snapshot_every=2)
    images, labels = make_inputs(layout)
    snapshot_bytes = 6 * 5 * (1 + 8 * 4)  # class map int8 + state float32
    with Recorder.create(tmp_path / "run.zarr", layout, rule=rule, images=images, labels=labels, attrs=ATTRS,
                         buffer_steps=64, max_buffer_bytes=2 * snapshot_bytes) as recorder:
        flushed_at = []
        for step in range(0, 12):
            recorder.append(step, {}, classes=np.zeros((6, 5)), state=step_state(step))
            if recorder.needs_flush:
                recorder.flush(resume_for(step))
                flushed_at.append(step)
    # Two snapshots (steps 0 and 2, then 4 and 6, ...) fill the budget.
    assert flushed_at == [2, 6, 10]


def test_open_run_untrimmed_keeps_preallocated_shape(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, make_layout(steps=10), last_step=4)
    assert open_run(path, trim=False).sizes["step"] == 11
    trimmed = open_run(path)
    assert trimmed.sizes["step"] == 5
    assert trimmed.sizes["snapshot"] == 2
    assert np.all(np.isfinite(trimmed.state_l1.values))


def test_resume_state_round_trip(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, last_step=6)
    with Recorder.open(path) as recorder:
        assert recorder.steps_done == 6
        assert recorder.next_step == 7
        assert not recorder.complete
        resume = recorder.read_resume_state()
        assert resume["step"] == 6
        np.testing.assert_array_equal(resume["simulator"]["state"], step_state(6))
        streams = resume["simulator"]["streams"]
        assert streams.dtype == np.uint64
        np.testing.assert_array_equal(streams, np.arange(4, dtype=np.uint64) * 2**62)
        assert resume["simulator"]["step_count"] == 6

        record(recorder, 10, make_layout())
        assert recorder.complete
    dataset = open_run(path)
    np.testing.assert_allclose(dataset.state_l1, np.arange(11) + 0.5)


def test_resume_slots_alternate(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, last_step=3, buffer_steps=2)
    slots = []
    with Recorder.open(path, buffer_steps=1) as recorder:
        for step in range(4, 7):
            recorder.append(step, {"updates": step}, classes=np.zeros((6, 5)), state=step_state(step))
            recorder.flush(resume_for(step))
            slots.append(recorder.attrs["resume_slot"])
            assert recorder.read_resume_state()["step"] == step
    assert slots in ([0, 1, 0], [1, 0, 1])


def test_flush_writes_root_once(tmp_path, rule, monkeypatch):
    """steps_done and resume_slot change together: a kill between two writes would split them."""
    from zarr.storage import LocalStore

    path = tmp_path / "run.zarr"
    write_store(path, rule, last_step=3, buffer_steps=2)
    root_writes = []
    original_set = LocalStore.set

    async def counting_set(self, key, value, *args, **kwargs):
        if key == "zarr.json":
            root_writes.append(json.loads(value.to_bytes())["attributes"])
        return await original_set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "set", counting_set)
    with Recorder.open(path, buffer_steps=1) as recorder:
        recorder.append(4, {"updates": 4}, classes=np.zeros((6, 5)), state=step_state(4))
        before = len(root_writes)
        recorder.flush(resume_for(4))
        flush_writes = root_writes[before:]
    assert len(flush_writes) == 1
    assert flush_writes[0]["steps_done"] == 4
    assert flush_writes[0]["resume_slot"] == recorder.attrs["resume_slot"]


def test_existing_store_rejected(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule)
    layout = make_layout()
    images, labels = make_inputs(layout)
    with pytest.raises(StoreError, match="already exists: continue it with --resume"):
        Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS)


def test_overwrite_replaces_only_after_first_flush(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule)
    layout = make_layout(steps=4, snapshot_every=2)
    images, labels = make_inputs(layout, seed=1)

    # A run that never writes its first step leaves the old store as it was.
    recorder = Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS, overwrite=True)
    recorder.close()
    assert open_run(path).attrs["steps_requested"] == 10

    with Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS,
                         overwrite=True) as recorder:
        assert open_run(path).attrs["steps_requested"] == 10
        record(recorder, 4, layout)
    replaced = open_run(path)
    assert replaced.attrs["steps_requested"] == 4
    np.testing.assert_array_equal(replaced.images, images)
    assert sorted(os.listdir(tmp_path)) == ["run.zarr"]  # no temporary or replaced stores left


def test_overwrite_refuses_other_directories(tmp_path, rule):
    path = tmp_path / "notes"
    path.mkdir()
    (path / "keep.txt").write_text("data")
    layout = make_layout()
    images, labels = make_inputs(layout)
    with pytest.raises(StoreError, match="is not an nca trajectory store"):
        Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS, overwrite=True)
    # Without --overwrite the message must not suggest --resume, which cannot use this folder either.
    with pytest.raises(StoreError, match="is not an nca trajectory store, so --overwrite will not delete it"):
        Recorder.create(path, layout, rule=rule, images=images, labels=labels, attrs=ATTRS)
    assert (path / "keep.txt").read_text() == "data"


def test_failed_creation_leaves_nothing(tmp_path, rule):
    layout = make_layout()
    with pytest.raises(ValueError, match="images have shape"):
        Recorder.create(tmp_path / "run.zarr", layout, rule=rule, images=np.zeros((2, 5, 5, 3), np.float32),
                        labels=np.zeros((2, 6, 5), np.int64), attrs=ATTRS)
    assert os.listdir(tmp_path) == []


def test_second_writer_rejected(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, last_step=5)
    with Recorder.open(path):
        with pytest.raises(StoreLockedError, match=f"being written by process {os.getpid()}"):
            Recorder.open(path)
    with Recorder.open(path) as recorder:  # released on close
        assert recorder.steps_done == 5


def test_lock_held_by_subprocess_released_on_kill(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, last_step=5)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\n"
         "from nca_sim.recorder import Recorder\n"
         "recorder = Recorder.open(sys.argv[1])\n"
         "print('locked', flush=True)\n"
         "time.sleep(120)\n",
         str(path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match=f"{path}.*process {holder.pid}"):
            Recorder.open(path)
    finally:
        holder.kill()
        holder.wait()
    with Recorder.open(path) as recorder:
        assert recorder.steps_done == 5
    assert (path / LOCK_NAME).exists()


def test_append_rejects_bad_records(tmp_path, rule):
    path = tmp_path / "run.zarr"
    write_store(path, rule, last_step=2)
    with Recorder.open(path) as recorder:
        with pytest.raises(ValueError, match="expects step 3"):
            recorder.append(5, {})
        with pytest.raises(ValueError, match="snapshot step: pass classes"):
            recorder.append(3, {})
        with pytest.raises(ValueError, match="not per-step variables"):
            recorder.append(3, {"temperature": 1.0}, classes=np.zeros((6, 5)), state=step_state(3))
        with pytest.raises(ValueError, match="records states: pass state of shape"):
            recorder.append(3, {}, classes=np.zeros((6, 5)))


def test_open_missing_or_foreign_store(tmp_path):
    with pytest.raises(StoreError, match="not found"):
        open_run(tmp_path / "absent.zarr")
    with pytest.raises(StoreError, match="nothing to resume"):
        Recorder.open(tmp_path / "absent.zarr")
    with pytest.raises(StoreError, match="is not an nca trajectory store"):
        check_store_attrs({"schema": "other"}, "x.zarr")
    with pytest.raises(StoreError, match="schema version 99"):
        check_store_attrs({"schema": SCHEMA_NAME, "schema_version": 99}, "x.zarr")


@pytest.mark.parametrize("field, value", [("steps", -1), ("snapshot_every", 0)])
def test_layout_rejects_bad_values(field, value):
    options = {"steps": 10, "snapshot_every": 3}
    options[field] = value
    with pytest.raises(ValueError, match=f"{field}={value}"):
        make_layout(**options)
