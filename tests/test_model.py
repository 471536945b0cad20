"""SegmentationNCA: output shapes of every variant and gradients that reach every trainable parameter."""

from __future__ import annotations

import pytest
import torch

from nca_sim.rule import Architecture, weight_shapes
from nca_train.config import ModelConfig
from nca_train.model import SegmentationNCA, count_parameters
from nca_train.train import build_model
from nca_train.config import TrainConfig

SMALL = dict(state_channels=6, hidden_channels=8, num_layers=3)

VARIANTS = {
    "full": {},
    "depthwise": {"perception": "depthwise"},
    "no_residual": {"residual": False},
    "reset_gate": {"reset_gate": True},
    "batch_norm": {"normalization": "batch"},
    "instance_norm": {"normalization": "instance"},
    "pixel_norm": {"normalization": "pixel"},
    "replicate_padding": {"padding": "replicate"},
    "circular_padding": {"padding": "circular"},
    "two_layers": {"num_layers": 2},
    "highres": {"highres_encoder_channels": 5},
    "highres_depthwise": {"highres_encoder_channels": 4, "perception": "depthwise"},
}


def _rollout_loss(model: SegmentationNCA, image: torch.Tensor, steps: int = 3) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    _, logits = model.rollout(image, steps, generator=generator)
    return sum(l.square().mean() for l in logits.values())


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_shapes(name):
    torch.manual_seed(0)
    arch = Architecture(**{**SMALL, **VARIANTS[name]})
    model = SegmentationNCA(arch)
    up = arch.upscale
    image = torch.rand(2, 3, 7 * up, 5 * up)  # odd, non-square grid
    cell_input = model.encode_image(image)
    assert cell_input.shape == (2, arch.input_channels, 7, 5)
    state = model.initial_state(2, 7, 5)
    assert state.shape == (2, 6, 7, 5)
    new_state, reset_mean = model.step(state, cell_input)
    assert new_state.shape == state.shape
    assert new_state.dtype == torch.float32
    assert reset_mean.shape == ()
    logits = model.logits(new_state)
    assert logits.shape == (2, 3, 7 * up, 5 * up)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_gradients_reach_parameters(name):
    torch.manual_seed(1)
    arch = Architecture(**{**SMALL, **VARIANTS[name]})
    model = SegmentationNCA(arch)
    image = torch.rand(2, 3, 6 * arch.upscale, 6 * arch.upscale)
    _rollout_loss(model, image).backward()
    for pname, parameter in model.named_parameters():
        assert parameter.grad is not None, pname
        assert parameter.grad.abs().sum() > 0, pname


def test_parameter_names_match_rule_weights():
    arch = Architecture(**SMALL, reset_gate=True)
    model = SegmentationNCA(arch)
    assert {name for name, _ in model.named_parameters()} == set(weight_shapes(arch))


def test_freeze_spatial_leaves_no_gradient():
    config = TrainConfig()
    config.model = ModelConfig(**SMALL, perception="depthwise", freeze_spatial=True)
    model = build_model(config)
    assert model.spatial_filter is model.depthwise.weight
    assert not model.spatial_filter.requires_grad
    _rollout_loss(model, torch.rand(2, 3, 6, 6)).backward()
    assert model.spatial_filter.grad is None
    trainable = count_parameters(model, trainable_only=True)
    assert trainable == count_parameters(model) - model.spatial_filter.numel()


def test_reset_gate_mean_in_unit_interval():
    torch.manual_seed(2)
    model = SegmentationNCA(Architecture(**SMALL, reset_gate=True))
    state = model.initial_state(2, 5, 5)
    _, reset_mean = model.step(state, torch.rand(2, 3, 5, 5), update_probability=1.0)
    assert 0.0 < float(reset_mean.detach()) < 1.0


def test_smallest_config_under_10k_parameters():
    model = SegmentationNCA(Architecture(state_channels=32, hidden_channels=48, num_layers=3, perception="depthwise"))
    assert count_parameters(model) < 10_000
