"""Classify how a series grows: saturating, decaying, linear, exponential or diverged.

The classifier reads only the latter part of a series (by default its second half
in steps), because the early steps of a cellular automaton are a transient that
every model goes through; what tells a bounded model from an unstable one is how
the norms behave long after that.

Decision, in order:

1. ``diverged`` when the series holds NaN or infinity; the first such step is
   reported and the remaining rules run on the finite part before it.
2. ``too short`` with fewer than ``min_points`` values in the window.
3. Relative growth ``g = slope * (t_last - t_first) / level``, with ``slope`` from
   a least-squares line through the window and ``level`` the mean of ``|y|``
   there. ``|g| < saturation_threshold`` (default 0.1: less than 10 % change over
   the window) is ``saturating``; ``g <= -saturation_threshold`` is ``decaying``.
4. A growing series is ``exponential`` or ``linear``, whichever fits better in
   log space: the RMS of ``log y - log fit`` of a line through ``log y``
   (``y ~ exp(rate * t)``) against that of a line through ``y``. A fit that is not
   positive over the window cannot be compared in log space and loses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

VERDICTS = ("saturating", "decaying", "linear", "exponential", "diverged", "too short")


@dataclass
class GrowthFit:
    """The verdict on one series and the numbers behind it.

    ``rate`` is the slope per step of a ``linear`` verdict (in the series' units),
    the exponent per step of an ``exponential`` one (``y ~ exp(rate * t)``), and the
    linear slope otherwise. Steps are the store's step numbers.
    """

    verdict: str
    rate: float
    relative_growth: float
    level: float
    first_nonfinite_step: int | None
    window_start: int | None
    window_end: int | None
    rms_log_linear: float
    rms_log_exponential: float

    @property
    def doubling_steps(self) -> float:
        """Steps for the series to double under an exponential verdict, else NaN."""
        if self.verdict == "exponential" and self.rate > 0:
            return float(np.log(2.0) / self.rate)
        return float("nan")

    def to_dict(self) -> dict:
        return asdict(self)


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


def _rms_log_error(y: np.ndarray, fit: np.ndarray) -> float:
    if np.any(fit <= 0) or np.any(y <= 0):
        return float("inf")
    return _rms(np.log(y) - np.log(fit))


def classify_growth(
    values,
    steps=None,
    *,
    window_fraction: float = 0.5,
    saturation_threshold: float = 0.1,
    min_points: int = 8,
) -> GrowthFit:
    """Classify the growth of a series over the latter part of its steps.

    Parameters
    ----------
    values
        1-D series, e.g. the L1 norm of the state per step.
    steps
        Step of each value; ``0 .. len(values) - 1`` when omitted.
    window_fraction
        Fraction of the finite step range, counted from its end, that the fits use.
    saturation_threshold
        Relative growth over the window below which the series counts as saturating.
    min_points
        Fewest values in the window for a verdict other than ``too short``.

    Returns
    -------
    GrowthFit
    """
    y = np.asarray(values, dtype=np.float64).ravel()
    t = np.arange(y.size, dtype=np.float64) if steps is None else np.asarray(steps, dtype=np.float64).ravel()
    if t.shape != y.shape:
        raise ValueError(f"steps has {t.size} entries but values has {y.size}; pass one step per value")
    if not 0.0 < window_fraction <= 1.0:
        raise ValueError(f"window_fraction={window_fraction!r} is invalid: expected 0 < fraction <= 1")

    nonfinite = np.flatnonzero(~np.isfinite(y))
    first_nonfinite = int(t[nonfinite[0]]) if nonfinite.size else None
    if nonfinite.size:
        y, t = y[: nonfinite[0]], t[: nonfinite[0]]

    def result(verdict, rate=float("nan"), growth=float("nan"), level=float("nan"), window=(None, None),
               rms_linear=float("nan"), rms_exponential=float("nan")):
        if first_nonfinite is not None:
            verdict = "diverged"
        return GrowthFit(verdict, rate, growth, level, first_nonfinite, window[0], window[1], rms_linear,
                         rms_exponential)

    if y.size == 0:
        return result("too short")
    start = t[-1] - window_fraction * (t[-1] - t[0])
    inside = t >= start
    y_window, t_window = y[inside], t[inside]
    window = (int(t_window[0]), int(t_window[-1]))
    if y_window.size < max(min_points, 2):
        return result("too short", level=float(np.mean(np.abs(y_window))), window=window)

    slope, intercept = np.polyfit(t_window, y_window, 1)
    span = t_window[-1] - t_window[0]
    level = float(np.mean(np.abs(y_window)))
    scale = max(level, float(np.max(np.abs(y_window))) * 1e-12, np.finfo(np.float64).tiny)
    growth = float(slope * span / scale)
    rms_linear = _rms_log_error(y_window, slope * t_window + intercept)
    rms_exponential = float("inf")
    log_rate = float("nan")
    if np.all(y_window > 0):
        log_rate, log_intercept = np.polyfit(t_window, np.log(y_window), 1)
        rms_exponential = _rms(np.log(y_window) - (log_rate * t_window + log_intercept))

    if abs(growth) < saturation_threshold:
        verdict, rate = "saturating", float(slope)
    elif growth < 0:
        verdict, rate = "decaying", float(slope)
    elif rms_exponential < rms_linear:
        verdict, rate = "exponential", float(log_rate)
    else:
        verdict, rate = "linear", float(slope)
    return result(verdict, rate, growth, level, window, rms_linear, rms_exponential)
