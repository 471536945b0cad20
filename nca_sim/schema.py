"""The trajectory store's schema: every variable, its dimensions, dtype and units.

This table is the contract between the simulator's recorder and the analyses;
docs/store-schema.md explains it for users of ``xarray.open_zarr``.

Dimensions
----------
step          one entry per recorded step; coordinate ``step`` = 0 (the initial
              state) .. steps. Step t is the colony after t steps (for the
              ``clock`` schedule, at time t).
snapshot      every ``snapshot_every`` steps; coordinate ``snapshot_step``.
y, x          the state grid.
pixel_y, pixel_x
              the image and prediction grid (twice the state grid for the
              high-resolution variant, otherwise the same size).
channel       state channels.
class         output classes; coordinate ``class`` contains their names.
image         the input images, in the order the run uses them.
rgb           colour channels of an image.

Stores are preallocated to the requested number of steps, so the shapes never
change while a run writes. The root attribute ``steps_done`` says how many steps
hold data: the entries of steps 0..steps_done are written, and later entries hold
the fill value (NaN for floats, -1 for integers) until they are written.
``complete`` is true once the run has finished.

Besides the variables below, the root group holds the coordinates ``step``,
``snapshot_step`` and ``class``, and the subgroup ``resume`` (hidden from
``xarray.open_zarr`` of the root) contains two slots of resume state: ``state``
``(resume_slot, y, x, channel)`` float32 and ``info`` ``(resume_slot,)`` JSON
strings; the root attribute ``resume_slot`` names the valid slot.
"""

from __future__ import annotations

from dataclasses import dataclass

SCHEMA_NAME = "nca-trajectory"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Variable:
    dims: tuple[str, ...]
    dtype: str
    units: str
    long_name: str
    optional: bool = False  # present only when the run records it (labels, full state, reset gate)


# Per-step series. "mean |.|" is the L1 norm divided by the number of values, so
# that grids and channel counts of different sizes compare.
VARIABLES: dict[str, Variable] = {
    "state_l1": Variable(("step",), "float32", "mean |s| per cell and channel", "L1 norm of the state"),
    "logits_l1": Variable(("step",), "float32", "mean |logit| per pixel and class", "L1 norm of the logits"),
    "state_change_l1": Variable(
        ("step",), "float32", "mean |s_t - s_(t-1)| per cell and channel", "L1 norm of the state change"
    ),
    "logits_change_l1": Variable(
        ("step",), "float32", "mean |l_t - l_(t-1)| per pixel and class", "L1 norm of the logits change"
    ),
    "class_change_fraction": Variable(
        ("step",), "float32", "fraction of pixels", "pixels whose predicted class changed"
    ),
    "updates": Variable(("step",), "int64", "cell updates", "cell updates performed in the step"),
    "nonfinite_count": Variable(("step",), "int64", "state values", "NaN or infinite state values"),
    "reset_gate_mean": Variable(
        ("step",), "float32", "gate activation (0 to 1)", "mean reset-gate activation of the updates", optional=True
    ),
    "iou": Variable(("step", "class"), "float32", "intersection over union (0 to 1)", "per-class IoU", optional=True),
    "mean_iou": Variable(("step",), "float32", "intersection over union (0 to 1)", "mean IoU over present classes", optional=True),
    "image_index": Variable(("step",), "int32", "index into image", "current input image"),
    "shift_y": Variable(("step",), "int32", "pixels", "vertical shift of the current image"),
    "shift_x": Variable(("step",), "int32", "pixels", "horizontal shift of the current image"),
    "classes": Variable(
        ("snapshot", "pixel_y", "pixel_x"), "int8", "class index", "predicted class"
    ),
    "state": Variable(("snapshot", "y", "x", "channel"), "float32", "state value", "cell state", optional=True),
    "images": Variable(("image", "pixel_y", "pixel_x", "rgb"), "float32", "intensity (0 to 1)", "input image"),
    "labels": Variable(("image", "pixel_y", "pixel_x"), "int8", "class index (-1 unknown)", "target class", optional=True),
}

FILL_VALUES = {"float32": float("nan"), "int64": -1, "int32": -1, "int8": -1}

# Root attributes, all plain JSON.
REQUIRED_ATTRS = (
    "schema",  # SCHEMA_NAME
    "schema_version",  # SCHEMA_VERSION
    "steps_requested",  # int
    "steps_done",  # int, updated as chunks are flushed
    "complete",  # bool
    "snapshot_every",  # int
    "schedule",  # "sync" | "bernoulli" | "async" | "clock"
    "seed",  # int
    "update_probability",  # float
    "threads",  # int
    "rule_architecture",  # dict, Architecture.to_dict()
    "rule_sha256",  # str, Rule.weights_sha256()
    "class_names",  # list[str]
    "shift_every",  # int, 0 for a fixed image
    "change",  # "shift" | "swap" | "none"
    "versions",  # {"nca": ..., "numpy": ..., "numba": ..., "xarray": ..., "zarr": ...}
)

# Root attributes that the recorder adds to REQUIRED_ATTRS, all plain JSON.
RECORDER_ATTRS = (
    "resume_slot",  # int, the slot of group "resume" that matches steps_done; -1 before the first flush
    "stats_interval",  # int, steps between refreshes of batch/instance normalization statistics
    "max_shift",  # int, pixels, largest offset of a "shift" change
    "shift_fill_color",  # [r, g, b] in [0, 1], colour of pixels that a shift vacates
    "clock_rates",  # str or None, the per-cell rate distribution of the "clock" schedule
    "input",  # str, where the input images came from
    "created",  # str, ISO 8601 time of creation (UTC)
)
