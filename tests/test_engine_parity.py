"""The Numba simulator's synchronous step against the PyTorch reference, for every model variant.

One step with fixed reset noise must match ``SegmentationNCA.step`` within 1e-5
(float32 max abs). After 40 steps the predicted classes must agree on at least
99.9% of pixels. Models are small and randomly initialized, with the update
layer scaled down so that 40-step rollouts stay bounded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nca_sim.engine import Simulator
from nca_sim.rule import Architecture
from nca_train.model import SegmentationNCA

SMALL = dict(state_channels=8, hidden_channels=16, num_layers=3)

VARIANTS = {
    "full-zero": dict(),
    "full-replicate": dict(padding="replicate"),
    "full-circular": dict(padding="circular"),
    "depthwise-zero": dict(perception="depthwise"),
    "depthwise-replicate": dict(perception="depthwise", padding="replicate"),
    "depthwise-circular": dict(perception="depthwise", padding="circular"),
    "no-residual": dict(residual=False),
    "two-layers": dict(num_layers=2),
    "four-layers": dict(num_layers=4),
    "reset-gate": dict(reset_gate=True),
    "norm-batch": dict(normalization="batch"),
    "norm-instance": dict(normalization="instance", padding="circular"),
    "norm-pixel": dict(normalization="pixel", perception="depthwise"),
    "highres-zero": dict(highres_encoder_channels=4),
    "highres-circular-gate": dict(highres_encoder_channels=4, padding="circular", reset_gate=True),
    "highres-depthwise-replicate": dict(highres_encoder_channels=4, perception="depthwise", padding="replicate"),
}

# (height, width) of the state grid: square, non-square, a single row, odd.
GRIDS = [(16, 16), (17, 31), (1, 64), (31, 17)]

TOLERANCE = 1e-5


def make_model(name: str, seed: int = 0) -> SegmentationNCA:
    arch = Architecture(**{**SMALL, **VARIANTS[name]})
    torch.manual_seed(seed)
    model = SegmentationNCA(arch)
    if arch.residual:
        with torch.no_grad():
            # PyTorch's default init with a smaller update keeps 40-step residual states bounded.
            model.update.weight.mul_(0.3)
            model.update.bias.mul_(0.3)
    return model.eval()


def make_image(name: str, grid: tuple[int, int], seed: int = 1) -> np.ndarray:
    upscale = 2 if VARIANTS[name].get("highres_encoder_channels") else 1
    rng = np.random.default_rng(seed)
    return rng.random((grid[0] * upscale, grid[1] * upscale, 3), dtype=np.float32)


def to_torch(array: np.ndarray) -> torch.Tensor:
    """(h, w, c) NumPy -> (1, c, h, w) torch."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None].contiguous()


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """(1, c, h, w) torch -> (h, w, c) NumPy."""
    return tensor[0].permute(1, 2, 0).contiguous().numpy()


def torch_step(model, state, cell_input, noise):
    with torch.no_grad():
        new_state, reset_mean = model.step(to_torch(state), cell_input, update_probability=1.0, noise=to_torch(noise))
    return to_numpy(new_state), float(reset_mean)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("name", list(VARIANTS))
def test_sync_step_matches_torch(name, grid):
    model = make_model(name)
    image = make_image(name, grid)
    simulator = Simulator(model.to_rule(), schedule="sync", seed=3)
    simulator.set_image(image)
    assert (simulator.height, simulator.width) == grid
    assert (simulator.image_height, simulator.image_width) == image.shape[:2]

    rng = np.random.default_rng(2)
    state = rng.standard_normal(simulator.state.shape, dtype=np.float32)
    noise = rng.standard_normal(simulator.state.shape, dtype=np.float32)
    simulator.state = state
    with torch.no_grad():
        cell_input = model.encode_image(to_torch(image))
    expected, expected_gate = torch_step(model, state, cell_input, noise)

    info = simulator.step(noise=noise)

    assert simulator.state.dtype == np.float32
    assert simulator.state.flags.c_contiguous
    assert np.abs(simulator.state - expected).max() <= TOLERANCE
    assert info.updates == grid[0] * grid[1]
    assert info.nonfinite == 0
    if model.arch.reset_gate:
        assert info.reset_gate_mean == pytest.approx(expected_gate, abs=1e-6)
    else:
        assert np.isnan(info.reset_gate_mean)

    with torch.no_grad():
        expected_logits = to_numpy(model.logits(to_torch(expected)))
    logits = simulator.logits()
    assert logits.shape == (*image.shape[:2], 3)
    assert logits.dtype == np.float32
    assert np.abs(logits - expected_logits).max() <= TOLERANCE


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: f"{g[0]}x{g[1]}")
@pytest.mark.parametrize("name", list(VARIANTS))
def test_sync_rollout_predictions_match_torch(name, grid):
    steps = 40
    model = make_model(name, seed=5)
    image = make_image(name, grid, seed=6)
    simulator = Simulator(model.to_rule(), schedule="sync", seed=7)
    simulator.set_image(image)
    state = simulator.state.copy()
    with torch.no_grad():
        cell_input = model.encode_image(to_torch(image))
    rng = np.random.default_rng(8)

    for _ in range(steps):
        noise = rng.standard_normal(state.shape, dtype=np.float32)
        state, _ = torch_step(model, state, cell_input, noise)
        info = simulator.step(noise=noise)
        assert info.nonfinite == 0

    with torch.no_grad():
        expected = model.logits(to_torch(state))[0].argmax(dim=0).numpy()
    predicted = simulator.predict()
    assert predicted.dtype == np.int8
    assert predicted.shape == expected.shape
    agreement = np.mean(predicted == expected)
    assert agreement >= 0.999, f"classes agree on {agreement:.4%} of pixels after {steps} steps"
    assert simulator.step_count == steps


def test_sync_threads_give_same_state():
    model = make_model("reset-gate")
    image = make_image("reset-gate", (17, 31))
    results = []
    for threads in (1, 2):
        simulator = Simulator(model.to_rule(), schedule="bernoulli", seed=11, threads=threads)
        simulator.set_image(image)
        for _ in range(3):
            simulator.step()
        results.append(simulator.state.copy())
    np.testing.assert_array_equal(results[0], results[1])
