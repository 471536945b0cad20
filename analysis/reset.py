"""Reset-gate activity: over the steps of a run, or over the iterations of training.

The mean reset-gate activation measures how much of each update is fresh noise. A
training run whose gate settles at a new level partway through has changed regime
(for example from repairing noise to ignoring it); :func:`detect_change_point`
finds that iteration.

Change-point detection: the series is smoothed with a centred moving mean of
``smoothing`` values; the best split into two constant segments (each at least
``min_segment`` values) is the one with the least squared error. The split is
reported as a ``step change`` when all of

- the difference of the two segment means is at least ``threshold`` times the
  noise, estimated from the raw series as ``1.4826 * MAD(diff(y)) / sqrt(2)``
  (the standard deviation of white noise, robust to the step itself),
- that difference is at least ``min_difference`` (the reset analyses use 0.05
  gate activation, because a smooth series has so little noise that a tiny
  shift would pass the first test), and
- the two constant segments fit the smoothed series better than one straight
  line does; otherwise the change is a ``gradual drift``.

Anything else is ``no change``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from analysis.store import MissingDataError, axis_label, open_store, require, rule_has_reset_gate, run_label

# Smallest change of the mean gate activation that counts as a regime change.
MIN_GATE_DIFFERENCE = 0.05


@dataclass
class ChangePoint:
    """The best two-segment split of a series and whether it is a regime change.

    ``index`` is the position of the first value of the second segment, and
    ``at`` its step or iteration.
    """

    verdict: str  # "step change", "gradual drift", "no change" or "too short"
    index: int | None
    at: float | None
    level_before: float
    level_after: float
    noise: float

    @property
    def level_difference(self) -> float:
        return self.level_after - self.level_before

    def to_dict(self) -> dict:
        data = asdict(self)
        data["level_difference"] = self.level_difference
        return data


def moving_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Return the centred moving mean, over the available values near the ends.

    An even ``window`` is rounded up to the next odd width, so that the mean is centred.
    """
    values = np.asarray(values, dtype=np.float64)
    window = max(1, min(int(window) | 1, values.size))
    kernel = np.ones(window)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values), kernel, mode="same")
    return sums / counts


def detect_change_point(values, positions=None, *, smoothing: int | None = None, min_segment: int | None = None,
                        threshold: float = 3.0, min_difference: float = 0.0) -> ChangePoint:
    """Find the best two-segment piecewise-constant fit and decide whether it is a regime change.

    Parameters
    ----------
    values
        1-D series; NaN values are dropped.
    positions
        Step or iteration of each value; ``0 .. n - 1`` when omitted.
    smoothing
        Width of the moving mean; ``max(1, n // 50)`` when omitted.
    min_segment
        Fewest values in each segment; ``max(3, n // 20)`` when omitted.
    threshold
        Level difference, in units of the noise, that a step change must reach.
    min_difference
        Level difference, in the series' units, that a step change must reach.
    """
    y = np.asarray(values, dtype=np.float64).ravel()
    x = np.arange(y.size, dtype=np.float64) if positions is None else np.asarray(positions, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"positions has {x.size} entries but values has {y.size}; pass one position per value")
    finite = np.isfinite(y)
    y, x = y[finite], x[finite]
    n = y.size
    smoothing = max(1, n // 50) if smoothing is None else smoothing
    min_segment = max(3, n // 20) if min_segment is None else min_segment
    if n < 2 * min_segment or n < 4:
        level = float(np.mean(y)) if n else float("nan")
        return ChangePoint("too short", None, None, level, level, float("nan"))

    smooth = moving_mean(y, smoothing)
    diffs = np.diff(y)
    noise = 1.4826 * float(np.median(np.abs(diffs - np.median(diffs)))) / math.sqrt(2.0)

    # Squared error of a constant fit to smooth[:k] and smooth[k:] for every k, from cumulative sums.
    cumsum = np.concatenate([[0.0], np.cumsum(smooth)])
    cumsq = np.concatenate([[0.0], np.cumsum(smooth**2)])
    splits = np.arange(min_segment, n - min_segment + 1)
    left_sse = cumsq[splits] - cumsum[splits] ** 2 / splits
    right_count = n - splits
    right_sum = cumsum[n] - cumsum[splits]
    right_sse = (cumsq[n] - cumsq[splits]) - right_sum**2 / right_count
    errors = left_sse + right_sse
    best = int(splits[np.argmin(errors)])
    step_sse = float(np.min(errors))
    before, after = float(np.mean(y[:best])), float(np.mean(y[best:]))

    slope, intercept = np.polyfit(x, smooth, 1)
    line_sse = float(np.sum((smooth - (slope * x + intercept)) ** 2))
    difference = abs(after - before)
    # A noise-free series would make any difference significant; the floor keeps rounding from counting.
    floor = max(min_difference, 1e-9 * max(1.0, float(np.max(np.abs(y)))))
    if difference >= threshold * noise and difference >= floor:
        verdict = "step change" if step_sse < line_sse else "gradual drift"
    else:
        verdict = "no change"
    return ChangePoint(verdict, best, float(x[best]), before, after, noise)


def read_metrics(path) -> tuple[list[dict], list[str]]:
    """Read a ``metrics.jsonl`` training log; return its records and notes on skipped lines.

    A line that is not valid JSON is skipped with a note (the last line of a log
    that is still being written may be cut off).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"metrics log {str(path)!r} not found; the trainer writes metrics.jsonl in its run folder")
    records, notes = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                notes.append(f"line {number} of {path.name} is not valid JSON and was skipped")
                continue
            if isinstance(record, dict):
                records.append(record)
    return records, notes


def _result(series: xr.DataArray, change: ChangePoint, *, source: str, notes, attrs) -> xr.Dataset:
    values = series.values.astype(np.float64)
    summary = {
        "mean": float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"),
        "minimum": float(np.nanmin(values)) if np.isfinite(values).any() else float("nan"),
        "maximum": float(np.nanmax(values)) if np.isfinite(values).any() else float("nan"),
        "final": float(values[-1]) if values.size else float("nan"),
    }
    result = xr.Dataset({"reset_gate_mean": series})
    result.attrs = {"analysis": "reset", "source": source, "notes": list(notes), "change": change.to_dict(),
                    "summary": summary, **attrs}
    return result


def analyze_reset_store(store, **change_options) -> xr.Dataset:
    """Summarize the reset-gate activity over the steps of a run.

    Returns
    -------
    xarray.Dataset
        ``reset_gate_mean`` over ``step``; attributes ``summary`` (mean, minimum,
        maximum, final), ``change`` (see :func:`detect_change_point`), ``notes``.

    Raises
    ------
    MissingDataError
        When the rule has no reset gate, or the store did not record it.
    """
    dataset, check = open_store(store)
    if rule_has_reset_gate(dataset) is False:
        raise MissingDataError(f"the rule of {check.path} has no reset gate, so there is no reset-gate activity")
    require(dataset, check, ["reset_gate_mean"], analysis="the reset analysis",
            hint="the reset gate was not recorded for this run")
    series = dataset["reset_gate_mean"].load()
    if series.sizes["step"] and int(series["step"][0]) == 0:
        series = series.isel(step=slice(1, None))  # step 0 is the initial state: no update, no gate
    change_options.setdefault("min_difference", MIN_GATE_DIFFERENCE)
    change = detect_change_point(series.values, series["step"].values, **change_options)
    return _result(series, change, source=str(check.path), notes=check.notes,
                   attrs={"run": run_label(dataset, check), "axis": "step",
                          "label": axis_label(dataset, "reset_gate_mean")})


def _config_reset_gate(path: Path) -> bool | None:
    """Return ``[model] reset_gate`` of a training run's config.toml, or None when it is absent or unreadable."""
    import tomllib

    try:
        with path.open("rb") as handle:
            config = tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    value = config.get("model", {}).get("reset_gate")
    return value if isinstance(value, bool) else None


def analyze_reset_metrics(path, **change_options) -> xr.Dataset:
    """Summarize the mean reset gate over training from a ``metrics.jsonl`` log.

    Returns the same layout as :func:`analyze_reset_store`, over dimension
    ``iteration``, plus ``loss`` when the log has it.
    """
    records, notes = read_metrics(path)
    if _config_reset_gate(Path(path).parent / "config.toml") is False:
        raise MissingDataError(f"the rule trained in {Path(path).parent} has no reset gate (config.toml: "
                               "reset_gate = false), so there is no reset-gate activity")
    records = [r for r in records if "iteration" in r and r.get("reset_gate_mean") is not None]
    if not records:
        raise MissingDataError(
            f"{path} has no records with both 'iteration' and 'reset_gate_mean': "
            "the trained rule has no reset gate, or the log is empty"
        )
    if all(float(r["reset_gate_mean"]) == 0.0 for r in records):
        # A sigmoid gate is never exactly 0; the trainer logs 0 for a rule without a reset gate.
        raise MissingDataError(f"reset_gate_mean is 0 at every iteration of {path}: the rule has no reset gate")
    records.sort(key=lambda record: record["iteration"])
    iterations = np.array([r["iteration"] for r in records], dtype=np.int64)
    gate = np.array([float(r["reset_gate_mean"]) for r in records], dtype=np.float64)
    series = xr.DataArray(gate, dims="iteration", coords={"iteration": iterations},
                          attrs={"long_name": "mean reset-gate activation", "units": "gate activation (0 to 1)"})
    change_options.setdefault("min_difference", MIN_GATE_DIFFERENCE)
    change = detect_change_point(gate, iterations, **change_options)
    result = _result(series, change, source=str(path), notes=notes,
                     attrs={"run": Path(path).resolve().parent.name or str(path), "axis": "iteration",
                            "label": "mean reset-gate activation [gate activation (0 to 1)]"})
    losses = [r.get("loss") for r in records]
    if any(loss is not None for loss in losses):
        # The trainer logs a null loss for an iteration in which no step entered the loss.
        losses = [np.nan if loss is None else loss for loss in losses]
        result["loss"] = xr.DataArray(np.array(losses, dtype=np.float64), dims="iteration",
                                      attrs={"long_name": "training loss", "units": ""})
    return result


def analyze_reset(source, **change_options) -> xr.Dataset:
    """Dispatch on the input: a ``.jsonl`` file is a training log, anything else a store."""
    if str(source).endswith(".jsonl"):
        return analyze_reset_metrics(source, **change_options)
    return analyze_reset_store(source, **change_options)


def reset_rows(result: xr.Dataset) -> list[dict]:
    """Return the one verdict row of a reset-gate result."""
    change, summary = result.attrs["change"], result.attrs["summary"]
    return [{
        "run": result.attrs["run"],
        "over": result.attrs["axis"],
        "mean": summary["mean"],
        "final": summary["final"],
        "verdict": change["verdict"],
        "change_at": change["at"] if change["verdict"] != "no change" else None,
        "before": change["level_before"],
        "after": change["level_after"],
        "noise": change["noise"],
    }]


def plot_reset(result: xr.Dataset, path) -> None:
    """Plot the gate (and the loss, for a training log) with the change point marked."""
    from analysis.plotting import mark_steps, new_figure, save_figure

    axis_name = result.attrs["axis"]
    rows = 2 if "loss" in result.variables else 1
    figure, axes = new_figure(rows, 1, sharex=True)
    gate = result["reset_gate_mean"]
    axis = axes[0, 0]
    axis.plot(gate[axis_name].values, gate.values, linewidth=0.8, label="reset gate")
    change = result.attrs["change"]
    if change["verdict"] in ("step change", "gradual drift"):
        mark_steps(axis, [change["at"]], color="red", label=f"{change['verdict']} at {axis_name} {change['at']:g}")
        positions = gate[axis_name].values
        axis.hlines([change["level_before"], change["level_after"]], [positions[0], change["at"]],
                    [change["at"], positions[-1]], colors="black", linewidths=1.2, label="segment means")
        axis.legend(fontsize="small")
    axis.set_ylabel(result.attrs["label"].replace(" [", "\n["))
    axis.set_title(f"reset gate of {result.attrs['run']}")
    if rows == 2:
        loss = result["loss"]
        axes[1, 0].plot(loss[axis_name].values, loss.values, linewidth=0.8, color="C1")
        axes[1, 0].set_yscale("log")
        axes[1, 0].set_ylabel("training loss (log scale)")
    axes[-1, 0].set_xlabel(axis_name)
    save_figure(figure, path)
