"""Rule files: round trip, validation and the error messages."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nca_sim.rule import (
    Architecture,
    Rule,
    RuleFileError,
    load_rule,
    multiply_adds_per_cell,
    save_rule,
    weight_shapes,
)

VARIANTS = [
    Architecture(),
    Architecture(state_channels=8, hidden_channels=16, num_layers=2, perception="depthwise"),
    Architecture(state_channels=8, hidden_channels=16, reset_gate=True, normalization="batch", residual=False),
    Architecture(state_channels=8, hidden_channels=16, highres_encoder_channels=4, padding="circular"),
]


def random_rule(arch: Architecture, seed: int = 0) -> Rule:
    rng = np.random.default_rng(seed)
    weights = {name: rng.standard_normal(shape).astype(np.float32) for name, shape in weight_shapes(arch).items()}
    return Rule(arch, weights, {"trained_iterations": 3})


@pytest.mark.parametrize("arch", VARIANTS, ids=lambda a: f"{a.perception}-hr{a.highres_encoder_channels}-{a.normalization}")
def test_rule_round_trip(tmp_path, arch):
    rule = random_rule(arch)
    path = save_rule(rule, tmp_path / "rule.npz")

    loaded = load_rule(path)

    assert loaded.architecture == arch
    assert loaded.metadata == {"trained_iterations": 3}
    assert sorted(loaded.weights) == sorted(rule.weights)
    for name, value in rule.weights.items():
        assert loaded.weights[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.weights[name], value)
    assert loaded.weights_sha256() == rule.weights_sha256()


def test_rule_file_readable_without_pickle(tmp_path):
    path = save_rule(random_rule(VARIANTS[1]), tmp_path / "rule.npz")
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(archive["architecture"].tobytes())
    assert header["format"] == "nca-rule"
    assert header["format_version"] == 1
    assert header["perception"] == "depthwise"


def test_default_architecture_multiply_adds():
    assert multiply_adds_per_cell(Architecture()) == 40_640


def test_smallest_configuration_under_10k_parameters():
    arch = Architecture(state_channels=32, hidden_channels=48, num_layers=3, perception="depthwise", reset_gate=True)
    assert random_rule(arch).parameter_count < 10_000


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"state_channels": 0}, "state_channels=0"),
        ({"num_layers": 1}, "num_layers=1"),
        ({"perception": "dilated"}, "perception='dilated'"),
        ({"normalization": "layer"}, "normalization='layer'"),
        ({"padding": "reflect"}, "padding='reflect'"),
        ({"update_probability": 0.0}, "update_probability=0.0"),
        ({"class_names": ("object",)}, "class_names"),
        ({"highres_encoder_channels": -1}, "highres_encoder_channels=-1"),
    ],
)
def test_architecture_rejects_invalid_field(changes, message):
    with pytest.raises(RuleFileError, match=message.replace("(", r"\(")):
        Architecture(**changes)


def test_rule_rejects_wrong_weight_shape():
    arch = VARIANTS[1]
    weights = random_rule(arch).weights
    weights["update.weight"] = np.zeros((3, 3), np.float32)
    with pytest.raises(RuleFileError, match="'update.weight' has shape"):
        Rule(arch, weights)


def test_rule_rejects_missing_and_extra_weights():
    arch = VARIANTS[1]
    weights = random_rule(arch).weights
    del weights["update.bias"]
    with pytest.raises(RuleFileError, match="missing weights"):
        Rule(arch, weights)
    weights = random_rule(arch).weights
    weights["reset.weight"] = np.zeros((8, 16), np.float32)
    with pytest.raises(RuleFileError, match="unexpected weights"):
        Rule(arch, weights)


def test_rule_rejects_nonfinite_weight():
    arch = VARIANTS[1]
    weights = random_rule(arch).weights
    weights["update.bias"][0] = np.nan
    with pytest.raises(RuleFileError, match="NaN or infinity"):
        Rule(arch, weights)


def test_load_rule_missing_file(tmp_path):
    with pytest.raises(RuleFileError, match="not found"):
        load_rule(tmp_path / "absent.npz")


def test_load_rule_not_an_archive(tmp_path):
    path = tmp_path / "rule.npz"
    path.write_text("hello")
    with pytest.raises(RuleFileError, match="not a rule file") as caught:
        load_rule(path)
    assert "pickle" not in str(caught.value)
    assert str(caught.value).endswith("write one with `nca export CHECKPOINT -o RULE`")


def test_load_rule_archive_without_architecture(tmp_path):
    # A zip archive of another kind, such as a PyTorch checkpoint or any .npz.
    path = tmp_path / "other.npz"
    np.savez(path, weights=np.zeros(3, np.float32))
    with pytest.raises(RuleFileError, match="no 'architecture' entry.*write one with `nca export CHECKPOINT -o RULE`"):
        load_rule(path)


def test_load_rule_newer_format_version(tmp_path):
    path = save_rule(random_rule(VARIANTS[1]), tmp_path / "rule.npz")
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["architecture"].tobytes())
    header["format_version"] = 99
    arrays["architecture"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(RuleFileError, match="version 99"):
        load_rule(path)


def test_load_rule_unknown_field(tmp_path):
    path = save_rule(random_rule(VARIANTS[1]), tmp_path / "rule.npz")
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays["architecture"].tobytes())
    header["attention_heads"] = 4
    arrays["architecture"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(RuleFileError, match="attention_heads"):
        load_rule(path)


def test_save_rule_keeps_old_file_on_failure(tmp_path):
    path = save_rule(random_rule(VARIANTS[1]), tmp_path / "rule.npz")
    before = path.read_bytes()
    rule = random_rule(VARIANTS[1])
    rule.metadata = {"not_json": object()}
    with pytest.raises(TypeError):
        save_rule(rule, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["rule.npz"]


def test_saved_rule_has_umask_mode(tmp_path):
    import os
    import stat

    umask = os.umask(0)
    os.umask(umask)
    path = save_rule(random_rule(VARIANTS[1]), tmp_path / "rule.npz")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
