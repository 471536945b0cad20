"""Segmentation quality over a run, and how it recovers when the image changes.

An image change is a step whose ``image_index``, ``shift_y`` or ``shift_x``
differs from the previous step's. For each change and each IoU series (every
class and the mean IoU):

- ``level_before``: mean IoU over the ``baseline_steps`` steps before the change
  (fewer when the previous change is closer);
- ``minimum_after``: the lowest IoU from the change until the next change (or the
  end of the recorded steps);
- ``drop``: ``level_before - minimum_after``;
- ``recovery_steps``: steps from the change to the first step, at or after the
  minimum, with IoU within ``tolerance`` of ``level_before``; NaN when that does
  not happen before the next change ("not recovered").

A class absent from both images has an undefined IoU (NaN), and so NaN numbers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analysis.store import open_store, require, run_label

CHANGE_VARIABLES = ("image_index", "shift_y", "shift_x")


def find_changes(image_index, shift_y, shift_x) -> np.ndarray:
    """Return the positions where the image or its shift differs from the previous position."""
    keys = np.stack([np.asarray(image_index), np.asarray(shift_y), np.asarray(shift_x)])
    return np.flatnonzero(np.any(keys[:, 1:] != keys[:, :-1], axis=0)) + 1


def measure_recovery(iou, changes, *, tolerance: float = 0.02, baseline_steps: int = 5) -> dict[str, np.ndarray]:
    """Measure drop and recovery of one IoU series at each change position.

    Parameters
    ----------
    iou
        1-D IoU per position (step).
    changes
        Positions of the changes, increasing.
    tolerance
        Recovery means IoU >= ``level_before - tolerance``.
    baseline_steps
        Positions before a change that ``level_before`` averages.

    Returns
    -------
    dict of arrays, one entry per change
        ``level_before``, ``minimum_after``, ``drop``, ``recovery_steps`` (NaN
        when not recovered or undefined).
    """
    iou = np.asarray(iou, dtype=np.float64)
    changes = np.asarray(changes, dtype=np.int64)
    ends = np.append(changes[1:], iou.size)
    starts_before = np.concatenate([[0], changes[:-1]])
    out = {key: np.full(changes.size, np.nan) for key in ("level_before", "minimum_after", "drop", "recovery_steps")}
    for i, (change, end, previous) in enumerate(zip(changes, ends, starts_before)):
        before = iou[max(previous, change - baseline_steps):change]
        after = iou[change:end]
        if not np.isfinite(before).any() or not np.isfinite(after).any():
            continue
        level = float(np.nanmean(before))
        lowest = int(np.nanargmin(after))
        out["level_before"][i] = level
        out["minimum_after"][i] = after[lowest]
        out["drop"][i] = level - after[lowest]
        recovered = np.flatnonzero(after[lowest:] >= level - tolerance)
        if recovered.size:
            out["recovery_steps"][i] = lowest + recovered[0]
    return out


def analyze_iou(store, *, tolerance: float = 0.02, baseline_steps: int = 5) -> xr.Dataset:
    """Measure the per-class IoU's drop and recovery at every image change of a run.

    Returns
    -------
    xarray.Dataset
        ``iou`` over (``step``, ``series``), where ``series`` is each class name and
        ``mean``; over (``change``, ``series``): ``level_before``,
        ``minimum_after``, ``drop``, ``recovery_steps`` (NaN: not recovered before
        the next change); over ``change``: ``change_step``, ``image_index``,
        ``shift_y``, ``shift_x``, ``kind`` ("image" or "shift").

    Raises
    ------
    MissingDataError
        When the store has no IoU, because the run had no labels.
    """
    dataset, check = open_store(store)
    require(dataset, check, ["iou"], analysis="the IoU analysis",
            hint="labels were not recorded, so there is no IoU; simulate images of a dataset folder "
                 "(`nca simulate --input DATASET`), whose labels are recorded")
    notes = list(check.notes)
    iou = dataset["iou"].load()
    classes = [str(name) for name in iou["class"].values] if "class" in iou.coords else \
        [str(i) for i in range(iou.sizes["class"])]
    columns = [iou.values[:, i] for i in range(len(classes))]
    if "mean_iou" in dataset.variables:
        columns.append(dataset["mean_iou"].values)
    else:
        notes.append("mean_iou was not recorded; using the mean over classes with a defined IoU")
        columns.append(np.nanmean(np.where(np.isfinite(iou.values), iou.values, np.nan), axis=1))
    series_names = classes + ["mean"]
    steps = iou["step"].values
    table = xr.DataArray(np.stack(columns, axis=1).astype(np.float64), dims=("step", "series"),
                         coords={"step": steps, "series": series_names},
                         attrs=dict(iou.attrs))

    absent = [name for name in CHANGE_VARIABLES if name not in dataset.variables]
    if absent:
        notes.append(f"{', '.join(absent)} not recorded, so image changes cannot be found")
        changes = np.array([], dtype=np.int64)
    else:
        keys = [dataset[name].values for name in CHANGE_VARIABLES]
        changes = find_changes(*keys)
    if changes.size == 0 and not absent:
        notes.append("the image and its shift never change in this run")

    measures = [measure_recovery(table.values[:, j], changes, tolerance=tolerance, baseline_steps=baseline_steps)
                for j in range(len(series_names))]
    result = xr.Dataset({"iou": table}, coords={"change": np.arange(changes.size)})
    for key in ("level_before", "minimum_after", "drop", "recovery_steps"):
        result[key] = (("change", "series"), np.stack([m[key] for m in measures], axis=1).reshape(changes.size, len(series_names)))
    result["change_step"] = ("change", steps[changes].astype(np.int64))
    for name in CHANGE_VARIABLES:
        values = dataset[name].values[changes] if name not in absent else np.full(changes.size, -1)
        result[name] = ("change", values.astype(np.int64))
    if not absent:
        image_changed = keys[0][changes] != keys[0][changes - 1]
        result["kind"] = ("change", np.where(image_changed, "image", "shift").astype(str))
    else:
        result["kind"] = ("change", np.array([], dtype=str))
    result.attrs = {"analysis": "iou", "store": str(check.path), "run": run_label(dataset, check),
                    "notes": notes, "tolerance": tolerance, "baseline_steps": baseline_steps,
                    "final_mean_iou": float(table.values[-1, -1]) if steps.size else float("nan")}
    return result


def iou_rows(result: xr.Dataset, series: str = "mean") -> list[dict]:
    """Return one verdict row per image change for one IoU series (default the mean IoU)."""
    rows = []
    for i in range(result.sizes["change"]):
        recovery = float(result["recovery_steps"].sel(series=series).values[i])
        rows.append({
            "step": int(result["change_step"].values[i]),
            "kind": str(result["kind"].values[i]),
            "image": int(result["image_index"].values[i]),
            "shift": f"{int(result['shift_y'].values[i])},{int(result['shift_x'].values[i])}",
            "series": series,
            "before": float(result["level_before"].sel(series=series).values[i]),
            "min_after": float(result["minimum_after"].sel(series=series).values[i]),
            "drop": float(result["drop"].sel(series=series).values[i]),
            "recovery_steps": int(recovery) if np.isfinite(recovery) else "not recovered",
        })
    return rows


def plot_iou(result: xr.Dataset, path) -> None:
    """Plot each IoU series over steps with the image changes marked."""
    from analysis.plotting import mark_steps, new_figure, save_figure

    figure, axes = new_figure(1, 1, row_height=4.5)
    axis = axes[0, 0]
    table = result["iou"]
    for name in table["series"].values:
        style = {"color": "black", "linewidth": 1.5} if name == "mean" else {"linewidth": 0.9}
        axis.plot(table["step"].values, table.sel(series=name).values, label=str(name), **style)
    mark_steps(axis, result["change_step"].values, label="image change")
    recovery = result["recovery_steps"].sel(series="mean").values
    recovered = np.isfinite(recovery)
    if recovered.any():
        steps = result["change_step"].values[recovered] + recovery[recovered]
        levels = table.sel(series="mean").sel(step=steps).values
        axis.plot(steps, levels, "o", color="black", markersize=4, label="mean IoU recovered")
    axis.set_xlabel("step")
    axis.set_ylabel(f"{table.attrs.get('long_name', 'IoU')}\n[{table.attrs.get('units', '')}]")
    axis.set_ylim(-0.02, 1.02)
    axis.set_title(f"IoU of {result.attrs['run']}")
    axis.legend(fontsize="small")
    save_figure(figure, path)
