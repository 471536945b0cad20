"""Growth classifier of analysis.growth on synthetic series of known growth."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.growth import classify_growth

STEPS = np.arange(1001)


def noisy(values, relative_noise, seed=0):
    rng = np.random.default_rng(seed)
    return values * (1.0 + relative_noise * rng.standard_normal(values.shape))


def test_linear_growth_is_linear():
    fit = classify_growth(noisy(2.0 + 0.5 * STEPS, 0.01), STEPS)
    assert fit.verdict == "linear"
    assert fit.rate == pytest.approx(0.5, rel=0.05)
    assert fit.first_nonfinite_step is None


@pytest.mark.parametrize("rate", [0.002, 0.013, 0.05])
def test_exponential_growth_rate(rate):
    fit = classify_growth(noisy(0.1 * np.exp(rate * STEPS), 0.02), STEPS)
    assert fit.verdict == "exponential"
    assert fit.rate == pytest.approx(rate, rel=0.05)
    assert fit.doubling_steps == pytest.approx(np.log(2) / rate, rel=0.05)


def test_approach_to_constant_is_saturating():
    fit = classify_growth(1.0 - np.exp(-STEPS / 50.0), STEPS)
    assert fit.verdict == "saturating"
    assert abs(fit.relative_growth) < 0.01
    assert np.isnan(fit.doubling_steps)


def test_noisy_constant_is_saturating():
    fit = classify_growth(noisy(np.full(STEPS.size, 3.0), 0.1, seed=3), STEPS)
    assert fit.verdict == "saturating"
    assert fit.level == pytest.approx(3.0, rel=0.02)


def test_all_zero_series_is_saturating():
    fit = classify_growth(np.zeros(100))
    assert fit.verdict == "saturating"
    assert fit.relative_growth == 0.0


def test_decay_is_decaying():
    fit = classify_growth(np.exp(-STEPS / 200.0), STEPS)
    assert fit.verdict == "decaying"
    assert fit.relative_growth < -0.1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_value_is_diverged(bad):
    values = np.exp(0.01 * STEPS)
    values[437] = bad
    fit = classify_growth(values, STEPS)
    assert fit.verdict == "diverged"
    assert fit.first_nonfinite_step == 437
    # The fit on the finite steps before the divergence still measures the growth.
    assert fit.rate == pytest.approx(0.01, rel=0.05)


def test_diverged_step_uses_step_coordinate():
    steps = np.arange(5, 305)
    values = np.ones(steps.size)
    values[100:] = np.nan
    fit = classify_growth(values, steps)
    assert fit.verdict == "diverged"
    assert fit.first_nonfinite_step == 105


def test_float32_overflow_is_diverged():
    with np.errstate(over="ignore"):
        values = np.exp(np.float32(0.5) * np.arange(300, dtype=np.float32))
    fit = classify_growth(values)
    assert fit.verdict == "diverged"
    assert fit.first_nonfinite_step == int(np.argmax(~np.isfinite(values)))


def test_divergence_at_first_step_has_no_rate():
    fit = classify_growth([np.nan, 1.0, 2.0])
    assert fit.verdict == "diverged"
    assert fit.first_nonfinite_step == 0
    assert np.isnan(fit.rate)


def test_short_series_is_too_short():
    fit = classify_growth([1.0, 2.0, 3.0])
    assert fit.verdict == "too short"


def test_window_is_latter_part():
    fit = classify_growth(np.ones(101))
    assert (fit.window_start, fit.window_end) == (50, 100)


def test_mismatched_steps_raise():
    with pytest.raises(ValueError, match="one step per value"):
        classify_growth(np.ones(10), np.arange(9))


def test_invalid_window_fraction_raises():
    with pytest.raises(ValueError, match="window_fraction"):
        classify_growth(np.ones(10), window_fraction=0.0)
