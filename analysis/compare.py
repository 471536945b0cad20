"""Compare one per-step series across runs (sync against async, resettable against not)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from analysis.growth import classify_growth
from analysis.norms import series_for_fit
from analysis.store import axis_label, open_store, run_label
from nca_sim.schema import VARIABLES


def compare_runs(stores, *, variable: str = "state_l1", window_fraction: float = 0.5,
                 saturation_threshold: float = 0.1) -> xr.Dataset:
    """Collect ``variable`` from each run and classify its growth.

    Parameters
    ----------
    stores
        Paths of trajectory stores.
    variable
        A per-step variable of the schema, e.g. ``state_l1`` or ``mean_iou``.

    Returns
    -------
    xarray.Dataset
        ``series`` over (``run``, ``step``), NaN beyond a run's last recorded
        step, and over ``run``: ``schedule``, ``steps_done``, ``complete``,
        ``verdict``, ``rate``, ``relative_growth``, ``final``,
        ``first_nonfinite_step`` (-1 when finite). A run without the variable gets
        verdict ``not recorded`` and a note.
    """
    stores = list(stores)
    if not stores:
        raise ValueError("no stores given; pass at least one RUN.zarr")
    per_step = sorted(name for name, spec in VARIABLES.items() if spec.dims == ("step",))
    if variable not in per_step:
        raise ValueError(f"variable {variable!r} is not a per-step variable of the store; choose one of {', '.join(per_step)}")
    notes, rows, arrays, labels = [], [], [], []
    label = variable
    for store in stores:
        dataset, check = open_store(store)
        run = run_label(dataset, check)
        notes += [f"{run}: {note}" for note in check.notes]
        row = {"schedule": str(dataset.attrs.get("schedule", "")), "steps_done": check.steps_done,
               "complete": check.complete}
        if variable not in dataset.variables:
            notes.append(f"{run}: {variable} was not recorded")
            row.update(verdict="not recorded", rate=np.nan, relative_growth=np.nan, final=np.nan,
                       first_nonfinite_step=-1)
            arrays.append(xr.DataArray(np.array([], dtype=np.float64), dims="step", coords={"step": []}))
        else:
            if dataset[variable].dims != ("step",):
                raise ValueError(
                    f"{variable} has dimensions {dataset[variable].dims}; compare needs a per-step variable "
                    "such as state_l1, logits_l1, mean_iou or reset_gate_mean"
                )
            label = axis_label(dataset, variable)
            series = series_for_fit(dataset, variable)
            fit = classify_growth(series.values, series["step"].values, window_fraction=window_fraction,
                                  saturation_threshold=saturation_threshold)
            row.update(verdict=fit.verdict, rate=fit.rate, relative_growth=fit.relative_growth,
                       final=float(series.values[-1]) if series.size else np.nan,
                       first_nonfinite_step=-1 if fit.first_nonfinite_step is None else fit.first_nonfinite_step)
            values = dataset[variable].load()
            arrays.append(xr.DataArray(values.values.astype(np.float64), dims="step",
                                       coords={"step": values["step"].values}))
        rows.append(row)
        labels.append(run)

    # Distinct runs can share a name (the same file name in two folders): number them to keep labels unique.
    unique = [f"{name} #{i + 1}" if labels.count(name) > 1 else name for i, name in enumerate(labels)]
    series = xr.concat(arrays, dim="run", join="outer", fill_value=np.nan)
    result = xr.Dataset({"series": series.assign_coords(run=unique)})
    result["series"].attrs = {"variable": variable, "label": label}
    for key in rows[0]:
        result[key] = ("run", [row[key] for row in rows])
    result.attrs = {"analysis": "compare", "variable": variable, "notes": notes, "stores": [str(s) for s in stores]}
    return result


def plot_compare(result: xr.Dataset, path, *, log_scale: bool | None = None) -> None:
    """Plot the series of every run on one axis, labelled by run name and schedule, with its verdict."""
    from analysis.plotting import new_figure, save_figure

    figure, axes = new_figure(1, 1)
    axis = axes[0, 0]
    series = result["series"]
    for run in series["run"].values:
        values = series.sel(run=run).values
        verdict = str(result["verdict"].sel(run=run).values)
        axis.plot(series["step"].values, values, linewidth=0.9, label=f"{run}: {verdict}")
    variable = result.attrs["variable"]
    if log_scale is None:
        log_scale = variable.endswith("_l1")
    if log_scale:
        axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel(series.attrs["label"] + (" (log scale)" if log_scale else ""))
    axis.set_title(f"{variable} across runs")
    axis.legend(fontsize="small")
    save_figure(figure, path)
