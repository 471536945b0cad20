"""Update schedules of the Numba simulator: fire statistics, update order, reproducibility and resume.

The asynchronous schedules are checked against a sequential PyTorch reference
that replays the simulator's random streams: one single-cell ``SegmentationNCA.step``
per update, in the same order.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from nca_sim import schedules
from nca_sim.engine import Simulator, StepInfo
from nca_sim.numba_config import FASTMATH_FLAGS
from nca_sim.random import below, exponential
from nca_sim.rule import Architecture, Rule
from nca_train.model import SegmentationNCA

SMALL = dict(state_channels=6, hidden_channels=12, num_layers=3)


def make_rule(seed: int = 0, **changes) -> tuple[SegmentationNCA, Rule]:
    torch.manual_seed(seed)
    model = SegmentationNCA(Architecture(**{**SMALL, **changes})).eval()
    with torch.no_grad():
        model.update.weight.mul_(0.3)
        model.update.bias.mul_(0.3)
    return model, model.to_rule()


def make_image(height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def make_simulator(rule, image, **options) -> Simulator:
    simulator = Simulator(rule, **options)
    simulator.set_image(image)
    return simulator


def to_torch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].contiguous()


def update_one_cell(model, state, cell_input, i, j, noise) -> np.ndarray:
    """Return ``state`` after PyTorch updates only cell (i, j)."""
    mask = torch.zeros(1, 1, *state.shape[:2], dtype=torch.bool)
    mask[0, 0, i, j] = True
    with torch.no_grad():
        new_state, _ = model.step(to_torch(state), cell_input, fire_mask=mask, noise=to_torch(noise))
    return new_state[0].permute(1, 2, 0).contiguous().numpy()


# -- bernoulli ---------------------------------------------------------------------------


def test_bernoulli_fires_fraction_p():
    _, rule = make_rule(update_probability=0.3)
    simulator = make_simulator(rule, make_image(40, 50), schedule="bernoulli", seed=4)
    counts = [simulator.step().updates for _ in range(5)]
    fraction = np.sum(counts) / (5 * 40 * 50)
    # 10,000 draws: the standard error of the fraction is about 0.0046.
    assert abs(fraction - 0.3) < 0.02


def test_bernoulli_probability_overrides_architecture():
    _, rule = make_rule(update_probability=0.3)
    simulator = make_simulator(rule, make_image(40, 50), schedule="bernoulli", update_probability=0.8)
    assert abs(simulator.step().updates / 2000 - 0.8) < 0.05


def test_bernoulli_fired_cells_equal_sync_candidate():
    _, rule = make_rule(update_probability=0.5, reset_gate=True, normalization="instance")
    image = make_image(13, 21)
    bernoulli = make_simulator(rule, image, schedule="bernoulli", seed=2)
    sync = make_simulator(rule, image, schedule="sync")
    before = bernoulli.state.copy()
    sync.state = before
    noise = np.random.default_rng(3).standard_normal(before.shape, dtype=np.float32)

    info = bernoulli.step(noise=noise)
    sync.step(noise=noise)

    changed = np.any(bernoulli.state != before, axis=-1)
    assert changed.sum() == info.updates
    assert 0 < info.updates < 13 * 21
    np.testing.assert_array_equal(bernoulli.state[~changed], before[~changed])
    # Pairs of cells share one pass over the weights, and the pairing differs
    # between the two runs, so fired cells agree up to float rounding.
    np.testing.assert_allclose(bernoulli.state[changed], sync.state[changed], rtol=0, atol=1e-6)


def test_sync_ignores_update_probability():
    _, rule = make_rule(update_probability=0.2)
    simulator = make_simulator(rule, make_image(6, 7), schedule="sync")
    assert simulator.step().updates == 42


# -- async -------------------------------------------------------------------------------


def shuffled(values: np.ndarray, streams: np.ndarray, stream: int) -> np.ndarray:
    """Replay the simulator's Fisher-Yates shuffle on a copy of ``values``."""
    values = values.copy()
    for k in range(len(values) - 1, 0, -1):
        other = below(streams, stream, k + 1)
        values[k], values[other] = values[other], values[k]
    return values


@pytest.mark.parametrize(
    "changes, tile",
    [
        (dict(), 32),
        (dict(perception="depthwise", normalization="pixel", padding="circular", reset_gate=True), 32),
        (dict(padding="replicate"), 4),
    ],
    ids=["full", "depthwise-pixel-gate", "tiles-4x4"],
)
def test_async_matches_sequential_torch(changes, tile, monkeypatch):
    monkeypatch.setattr(schedules, "TILE", tile)
    model, rule = make_rule(**changes)
    image = make_image(5, 6)
    simulator = make_simulator(rule, image, schedule="async", seed=9)
    state = simulator.state.copy()
    streams = simulator._streams.copy()
    noise = np.random.default_rng(4).standard_normal(state.shape, dtype=np.float32)

    info = simulator.step(noise=noise)

    # Replay the single band (stream 0): shuffle the tiles, then the cells of each tile.
    tiles_y, tiles_x = -(-5 // tile), -(-6 // tile)
    order = []
    for t in shuffled(np.arange(tiles_y * tiles_x), streams, 0):
        y0, x0 = (t // tiles_x) * tile, (t % tiles_x) * tile
        cells = [i * 6 + j for i in range(y0, min(y0 + tile, 5)) for j in range(x0, min(x0 + tile, 6))]
        order.extend(shuffled(np.array(cells), streams, 0))
    assert sorted(order) == list(range(30))
    cell_input = model.encode_image(to_torch(image))
    for cell in order:
        state = update_one_cell(model, state, cell_input, cell // 6, cell % 6, noise)
    assert info.updates == 30
    assert np.abs(simulator.state - state).max() <= 1e-5


def test_async_single_thread_is_reproducible():
    _, rule = make_rule(reset_gate=True, normalization="batch")
    image = make_image(11, 9)
    first = make_simulator(rule, image, schedule="async", seed=5, threads=1)
    second = make_simulator(rule, image, schedule="async", seed=5, threads=1)
    other_seed = make_simulator(rule, image, schedule="async", seed=6, threads=1)
    for _ in range(4):
        assert first.step() == second.step()
        other_seed.step()
    np.testing.assert_array_equal(first.state, second.state)
    assert not np.array_equal(first.state, other_seed.state)


def test_async_two_threads_updates_every_cell():
    _, rule = make_rule(normalization="batch")
    # Two bands of 35 rows, each cut into 2 x 2 tiles of at most 32 x 32 cells.
    simulator = make_simulator(rule, make_image(70, 40), schedule="async", threads=2, stats_interval=3)
    before = simulator.state.copy()
    infos = [simulator.step() for _ in range(3)]
    assert [info.updates for info in infos] == [2800, 2800, 2800]
    assert all(info.nonfinite == 0 for info in infos)
    assert np.all(np.any(simulator.state != before, axis=-1))


def test_stats_interval_keeps_statistics_between_refreshes():
    _, rule = make_rule(normalization="batch")
    image = make_image(8, 8)
    every_step = make_simulator(rule, image, schedule="sync")
    every_second = make_simulator(rule, image, schedule="sync", stats_interval=2)
    every_step.step()
    every_second.step()
    np.testing.assert_array_equal(every_step.state, every_second.state)
    every_step.step()
    every_second.step()
    assert not np.array_equal(every_step.state, every_second.state)


# -- clock -------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", [32, 2])
def test_clock_matches_sequential_torch(tile, monkeypatch):
    monkeypatch.setattr(schedules, "TILE", tile)
    model, rule = make_rule(padding="replicate")
    image = make_image(4, 5)
    rates = np.linspace(0.5, 2.0, 20).reshape(4, 5)
    simulator = make_simulator(rule, image, schedule="clock", seed=3, clock_rates=rates)
    state = simulator.state.copy()
    streams = simulator._streams.copy()

    first = simulator.step()
    second = simulator.step()

    # Replay the clocks: first fire times from each row's stream, then, per step,
    # the tile order and every later fire time from the band's stream (stream 0).
    flat_rates = rates.reshape(-1)
    next_time = np.array([exponential(streams, cell // 5, flat_rates[cell]) for cell in range(20)])
    tiles_y, tiles_x = -(-4 // tile), -(-5 // tile)
    cell_input = model.encode_image(to_torch(image))
    noise = np.zeros(state.shape, np.float32)
    updates = []
    for end_time in (1.0, 2.0):
        count = 0
        for t in shuffled(np.arange(tiles_y * tiles_x), streams, 0):
            y0, x0 = (t // tiles_x) * tile, (t % tiles_x) * tile
            cells = np.array([i * 5 + j for i in range(y0, min(y0 + tile, 4)) for j in range(x0, min(x0 + tile, 5))])
            while next_time[cells].min() < end_time:
                cell = cells[np.argmin(next_time[cells])]
                state = update_one_cell(model, state, cell_input, cell // 5, cell % 5, noise)
                next_time[cell] += exponential(streams, 0, flat_rates[cell])
                count += 1
        updates.append(count)
    assert [first.updates, second.updates] == updates
    assert np.abs(simulator.state - state).max() <= 1e-5


def test_clock_mean_updates_equal_rate_sum():
    _, rule = make_rule()
    simulator = make_simulator(rule, make_image(10, 10), schedule="clock", seed=1, threads=2)
    counts = [simulator.step().updates for _ in range(20)]
    # 2,000 expected events: the standard error of the mean per step is about 2.2.
    assert abs(np.mean(counts) - 100) < 8
    assert simulator.step_count == 20


def test_clock_faster_cells_update_more_often():
    _, rule = make_rule()
    rates = np.ones((12, 12))
    rates[:, :6] = 0.05
    rates[:, 6:] = 5.0
    simulator = make_simulator(rule, make_image(12, 12), schedule="clock", seed=2, clock_rates=rates)
    before = simulator.state.copy()
    info = simulator.step()
    changed = np.any(simulator.state != before, axis=-1)
    # P(no event in one unit of time) = exp(-rate): 95% of the slow cells, 0.7% of the fast ones.
    assert changed[:, :6].mean() < 0.2
    assert changed[:, 6:].mean() > 0.9
    assert abs(info.updates - 72 * 5.05) < 4 * math.sqrt(72 * 5.05)


# -- reproducibility and resume ------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["sync", "bernoulli", "async", "clock"])
def test_resume_continues_identically(schedule):
    _, rule = make_rule(reset_gate=True, normalization="batch")
    image = make_image(9, 7)
    original = make_simulator(rule, image, schedule=schedule, seed=12, stats_interval=2)
    for _ in range(3):
        original.step()
    saved = original.get_resume_state()
    json.dumps({key: value for key, value in saved.items() if key != "state"})
    expected = [original.step() for _ in range(3)]

    resumed = make_simulator(rule, image, schedule=schedule, seed=99, stats_interval=2)
    resumed.set_resume_state(saved)
    assert resumed.step_count == 3
    continued = [resumed.step() for _ in range(3)]

    assert continued == expected
    np.testing.assert_array_equal(resumed.state, original.state)


def test_reset_state_is_standard_normal():
    _, rule = make_rule()
    simulator = make_simulator(rule, make_image(30, 40), seed=8)
    first = simulator.state.copy()
    simulator.reset_state()
    assert simulator.state.shape == (30, 40, 6)
    assert simulator.state.dtype == np.float32
    assert abs(simulator.state.mean()) < 0.05
    assert abs(simulator.state.std() - 1.0) < 0.05
    assert not np.array_equal(first, simulator.state)


# -- divergence and readout --------------------------------------------------------------


@pytest.mark.parametrize("schedule", ["sync", "async"])
def test_huge_weights_report_nonfinite(schedule):
    model, _ = make_rule()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1e18)
    simulator = make_simulator(model.to_rule(), make_image(5, 5), schedule=schedule)
    info = StepInfo(0, math.nan, 0)
    for _ in range(3):
        info = simulator.step()
    assert info.nonfinite > 0
    assert info.nonfinite == np.count_nonzero(~np.isfinite(simulator.state))


def test_fastmath_keeps_nan_and_infinity():
    assert not {"nnan", "ninf", "fast"} & FASTMATH_FLAGS


def test_reset_gate_mean_is_nan_without_gate():
    _, rule = make_rule()
    simulator = make_simulator(rule, make_image(3, 3), schedule="bernoulli")
    assert math.isnan(simulator.step().reset_gate_mean)


def test_predict_is_argmax_of_logits():
    _, rule = make_rule(highres_encoder_channels=3)
    simulator = make_simulator(rule, make_image(6, 10), schedule="sync")
    assert (simulator.height, simulator.width) == (3, 5)
    logits = simulator.logits()
    predicted = simulator.predict()
    assert logits.shape == (6, 10, 3)
    assert predicted.dtype == np.int8
    np.testing.assert_array_equal(predicted, logits.argmax(axis=-1))


# -- invalid input -----------------------------------------------------------------------


def test_invalid_options_raise():
    _, rule = make_rule()
    with pytest.raises(ValueError, match="schedule='random'"):
        Simulator(rule, schedule="random")
    with pytest.raises(ValueError, match="threads=0"):
        Simulator(rule, threads=0)
    with pytest.raises(ValueError, match="update_probability=1.5"):
        Simulator(rule, update_probability=1.5)
    with pytest.raises(ValueError, match="stats_interval=0"):
        Simulator(rule, stats_interval=0)
    with pytest.raises(ValueError, match="clock_rates"):
        Simulator(rule, schedule="clock", clock_rates=-np.ones((2, 2)))
    with pytest.raises(ValueError, match="clock_rates has shape"):
        make_simulator(rule, make_image(3, 3), schedule="clock", clock_rates=np.ones((2, 2)))


def test_invalid_images_raise():
    _, rule = make_rule()
    simulator = make_simulator(rule, make_image(4, 5), schedule="sync")
    with pytest.raises(ValueError, match="image size 5x5 differs from the simulator's 4x5"):
        simulator.set_image(make_image(5, 5))
    with pytest.raises(ValueError, match=r"expected \(height, width, 3\)"):
        simulator.set_image(np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="divide 8-bit images by 255"):
        simulator.set_image(make_image(4, 5) * 255)
    with pytest.raises(ValueError, match="noise has shape"):
        simulator.step(noise=np.zeros((4, 5, 2), np.float32))
    _, highres = make_rule(highres_encoder_channels=2)
    with pytest.raises(ValueError, match="must be even"):
        make_simulator(highres, make_image(5, 6))
    with pytest.raises(RuntimeError, match="set_image"):
        Simulator(rule).step()


def test_resume_state_for_other_grid_raises():
    _, rule = make_rule()
    saved = make_simulator(rule, make_image(4, 5), schedule="async").get_resume_state()
    other = make_simulator(rule, make_image(5, 4), schedule="async")
    with pytest.raises(ValueError, match="4x5 grid"):
        other.set_resume_state(saved)
