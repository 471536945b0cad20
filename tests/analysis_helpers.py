"""Build small trajectory stores that follow nca_sim.schema, for the analysis tests."""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from nca_sim.rule import DEFAULT_CLASS_NAMES, Architecture
from nca_sim.schema import FILL_VALUES, SCHEMA_NAME, SCHEMA_VERSION, VARIABLES


def schema_dataset(
    steps: int = 60,
    *,
    series: dict | None = None,
    height: int = 8,
    width: int = 10,
    channels: int = 4,
    snapshot_every: int = 10,
    num_images: int = 2,
    steps_done: int | None = None,
    record_state: bool = True,
    record_labels: bool = True,
    reset_gate: bool = True,
    drop: tuple[str, ...] = (),
    attrs: dict | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Return a Dataset with every schema variable; ``series`` overrides values by name.

    Entries after ``steps_done`` hold the schema's fill values, as in a store whose
    run stopped early.
    """
    rng = np.random.default_rng(seed)
    steps_done = steps if steps_done is None else steps_done
    n_snap = steps // snapshot_every + 1
    classes = list(DEFAULT_CLASS_NAMES)
    t = np.arange(steps + 1)
    values = {
        "state_l1": 1.0 + 0.01 * rng.standard_normal(steps + 1),
        "logits_l1": 2.0 + 0.01 * rng.standard_normal(steps + 1),
        "state_change_l1": 0.1 + 0.001 * rng.standard_normal(steps + 1),
        "logits_change_l1": 0.2 + 0.001 * rng.standard_normal(steps + 1),
        "class_change_fraction": np.full(steps + 1, 0.01),
        "updates": np.full(steps + 1, height * width // 2),
        "nonfinite_count": np.zeros(steps + 1),
        "reset_gate_mean": 0.3 + 0.01 * rng.standard_normal(steps + 1),
        "iou": np.tile([0.9, 0.8, 0.4], (steps + 1, 1)),
        "mean_iou": np.full(steps + 1, 0.7),
        "image_index": np.zeros(steps + 1),
        "shift_y": np.zeros(steps + 1),
        "shift_x": np.zeros(steps + 1),
        "classes": rng.integers(0, 3, (n_snap, height, width)),
        "state": rng.standard_normal((n_snap, height, width, channels)),
        "images": rng.random((num_images, height, width, 3)),
        "labels": rng.integers(0, 3, (num_images, height, width)),
    }
    for name in ("state_change_l1", "logits_change_l1", "class_change_fraction", "reset_gate_mean"):
        values[name][0] = np.nan  # no previous step at step 0
    values["updates"][0] = 0
    values.update(series or {})
    if not record_state:
        drop = drop + ("state",)
    if not record_labels:
        drop = drop + ("labels", "iou", "mean_iou")
    if not reset_gate:
        drop = drop + ("reset_gate_mean",)

    snapshot_steps = np.arange(n_snap) * snapshot_every
    data = {}
    for name, spec in VARIABLES.items():
        if name in drop:
            continue
        array = np.array(values[name], dtype=spec.dtype)
        fill = FILL_VALUES[spec.dtype]
        if spec.dims[0] == "step":
            array[t > steps_done] = fill
        elif spec.dims[0] == "snapshot":
            array[snapshot_steps > steps_done] = fill
        data[name] = xr.Variable(spec.dims, array, attrs={"units": spec.units, "long_name": spec.long_name})

    arch = Architecture(state_channels=channels, hidden_channels=8, num_layers=2, reset_gate=reset_gate)
    root = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "steps_requested": steps,
        "steps_done": steps_done,
        "complete": steps_done >= steps,
        "snapshot_every": snapshot_every,
        "schedule": "async",
        "seed": seed,
        "update_probability": 0.5,
        "threads": 1,
        "rule_architecture": arch.to_dict(),
        "rule_sha256": "0" * 64,
        "class_names": classes,
        "shift_every": 0,
        "change": "none",
        "versions": {"nca": "test"},
    }
    root.update(attrs or {})
    coords = {"step": t, "snapshot_step": ("snapshot", snapshot_steps), "class": classes}
    return xr.Dataset(data, coords=coords, attrs=root)


def write_dataset(dataset: xr.Dataset, path):
    """Write ``dataset`` to a Zarr store at ``path`` and return the path."""
    with warnings.catch_warnings():
        # Zarr 3 warns that fixed-length strings (the class names) have no Zarr v3 specification yet.
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
        dataset.to_zarr(path, mode="w", consolidated=False)
    return path


def write_store(path, **options):
    """Write :func:`schema_dataset` to a Zarr store at ``path`` and return the path."""
    return write_dataset(schema_dataset(**options), path)
