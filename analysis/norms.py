"""Stability of a run: the L1 norms of state and logits per step, and how they grow.

A rule that stays bounded far beyond its training horizon keeps these norms
saturating. A rule that does not lets them grow linearly or exponentially, or
overflow to NaN and infinity. :mod:`analysis.growth` contains the classifier.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analysis.growth import classify_growth
from analysis.store import axis_label, open_store, run_label

NORM_VARIABLES = ("state_l1", "logits_l1", "state_change_l1", "logits_change_l1")
CHANGE_VARIABLES = ("state_change_l1", "logits_change_l1")
# Series that are undefined at step 0, the initial state: it has no previous step and no update.
UNDEFINED_AT_STEP_ZERO = CHANGE_VARIABLES + ("class_change_fraction", "reset_gate_mean")


def series_for_fit(dataset: xr.Dataset, name: str) -> xr.DataArray:
    """Return the variable's values over the recorded steps, without step 0 where it is undefined."""
    series = dataset[name].load()
    if name in UNDEFINED_AT_STEP_ZERO and series.sizes["step"] > 0 and int(series["step"][0]) == 0:
        series = series.isel(step=slice(1, None))
    return series


def fit_rows(dataset: xr.Dataset, names, **classifier_options) -> xr.Dataset:
    """Classify the growth of each named series; one entry per name along dimension ``series``."""
    fits = [classify_growth(series.values, series["step"].values, **classifier_options)
            for series in (series_for_fit(dataset, name) for name in names)]

    def column(attribute, fill=np.nan):
        return [fill if getattr(fit, attribute) is None else getattr(fit, attribute) for fit in fits]

    return xr.Dataset(
        {
            "verdict": ("series", column("verdict")),
            "rate": ("series", column("rate")),
            "doubling_steps": ("series", [fit.doubling_steps for fit in fits]),
            "relative_growth": ("series", column("relative_growth")),
            "level": ("series", column("level")),
            "first_nonfinite_step": ("series", column("first_nonfinite_step", -1)),
            "window_start": ("series", column("window_start", -1)),
            "window_end": ("series", column("window_end", -1)),
        },
        coords={"series": list(names)},
    )


def analyze_norms(store, *, window_fraction: float = 0.5, saturation_threshold: float = 0.1) -> xr.Dataset:
    """Classify the growth of the state and logits norms of a run.

    Parameters
    ----------
    store
        Path of a trajectory store.
    window_fraction, saturation_threshold
        Passed to :func:`analysis.growth.classify_growth`.

    Returns
    -------
    xarray.Dataset
        The norm series over dimension ``step`` (their schema attributes kept) and,
        over dimension ``series``, ``verdict``, ``rate`` (per step),
        ``doubling_steps``, ``relative_growth``, ``level`` and
        ``first_nonfinite_step`` (-1 when all values are finite). Attributes:
        ``store``, ``run``, ``notes`` (incomplete run, missing variables) and
        ``first_nonfinite_state_step`` (-1 when the state stayed finite).
    """
    dataset, check = open_store(store)
    notes = list(check.notes)
    present = [name for name in NORM_VARIABLES if name in dataset.variables]
    absent = [name for name in NORM_VARIABLES if name not in dataset.variables]
    if absent:
        notes.append(f"norms not recorded, so not analysed: {', '.join(absent)}")
    if not present:
        result = xr.Dataset(coords={"series": np.array([], dtype=str)})
    else:
        result = fit_rows(dataset, present, window_fraction=window_fraction,
                          saturation_threshold=saturation_threshold)
        result = result.merge(dataset[present].load())

    first_nonfinite_state = -1
    if "nonfinite_count" in dataset.variables:
        counts = dataset["nonfinite_count"].load()
        bad = np.flatnonzero(counts.values > 0)
        if bad.size:
            first_nonfinite_state = int(counts["step"].values[bad[0]])
            notes.append(f"the state holds NaN or infinity from step {first_nonfinite_state} on")
    result.attrs = {
        "analysis": "norms",
        "store": str(check.path),
        "run": run_label(dataset, check),
        "steps_done": check.steps_done,
        "notes": notes,
        "first_nonfinite_state_step": first_nonfinite_state,
        "labels": {name: axis_label(dataset, name) for name in present},
    }
    return result


def plot_norms(result: xr.Dataset, path) -> None:
    """Plot the norms (top) and their per-step change (bottom) on a log scale, with each verdict."""
    from analysis.plotting import mark_steps, new_figure, save_figure

    figure, axes = new_figure(2, 1, sharex=True)
    groups = [("state_l1", "logits_l1"), CHANGE_VARIABLES]
    for axis, names in zip(axes[:, 0], groups):
        for name in names:
            if name not in result.variables:
                continue
            series = result[name]
            verdict = str(result["verdict"].sel(series=name).values)
            values = np.where(series.values > 0, series.values, np.nan)  # log scale shows no zeros
            axis.plot(series["step"].values, values, label=f"{result.attrs['labels'][name]}: {verdict}")
            first = int(result["first_nonfinite_step"].sel(series=name).values)
            if first >= 0:
                mark_steps(axis, [first], color="red", label=f"{name} non-finite")
        axis.set_yscale("log")
        axis.set_ylabel("mean |.| (log scale)")
        axis.legend(fontsize="small")
    axes[-1, 0].set_xlabel("step")
    axes[0, 0].set_title(f"norms of {result.attrs['run']}")
    save_figure(figure, path)
