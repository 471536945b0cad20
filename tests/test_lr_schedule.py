"""Learning-rate schedules and the allocator setting that the trainer applies."""

from __future__ import annotations

import math
import platform

import pytest

from nca_train.allocator import keep_freed_memory
from nca_train.lr_schedule import learning_rate_at


def rates(schedule: str, count: int, **options) -> list[float]:
    return [learning_rate_at(i, schedule=schedule, iterations=count, **options) for i in range(1, count + 1)]


def test_constant_schedule():
    assert rates("constant", 5, learning_rate=3e-4) == [3e-4] * 5


def test_cosine_runs_from_peak_to_minimum():
    values = rates("cosine", 11, learning_rate=1e-2, min_learning_rate=1e-4)
    assert values[0] == pytest.approx(1e-2)
    assert values[-1] == pytest.approx(1e-4)
    # Halfway through, the cosine is at the midpoint of the two rates.
    assert values[5] == pytest.approx((1e-2 + 1e-4) / 2)
    assert all(a > b for a, b in zip(values, values[1:]))


def test_cosine_stays_at_minimum_past_the_last_iteration():
    for iteration in (10, 11, 50):
        rate = learning_rate_at(iteration, schedule="cosine", learning_rate=1.0, iterations=10, min_learning_rate=0.1)
        assert rate == pytest.approx(0.1)


def test_cosine_of_one_iteration_uses_the_peak():
    assert rates("cosine", 1, learning_rate=0.5, min_learning_rate=0.0) == [0.5]


def test_warmup_is_linear_then_the_schedule_starts():
    values = rates("cosine", 9, learning_rate=1.0, min_learning_rate=0.0, warmup_iterations=4)
    assert values[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    # The cosine part spans iterations 5 to 9: 1, cos^2 steps, down to 0.
    expected = [0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert values[4:] == pytest.approx(expected)


def test_step_schedule_decays_every_interval():
    values = rates("step", 7, learning_rate=1.0, step_every=3, step_factor=0.5)
    assert values == pytest.approx([1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25])


def test_warmup_with_step_schedule():
    values = rates("step", 6, learning_rate=1.0, step_every=2, step_factor=0.1, warmup_iterations=2)
    assert values == pytest.approx([0.5, 1.0, 1.0, 1.0, 0.1, 0.1])


def test_unknown_schedule_names_the_choices():
    with pytest.raises(ValueError, match="'linear' is unknown: use one of constant, cosine, step"):
        learning_rate_at(1, schedule="linear", learning_rate=1.0, iterations=5)


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="the setting applies to glibc only"
)
def test_keep_freed_memory_applies_on_glibc():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
