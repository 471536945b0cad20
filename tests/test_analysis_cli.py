"""``nca analyze``: tables, JSON, plots and messages, on written stores and on a real simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from analysis_helpers import write_store
from click.testing import CliRunner
from PIL import Image

from cli.main import main


def run(*args):
    return CliRunner().invoke(main, ["analyze", *map(str, args)], catch_exceptions=False)


def test_norms_table_and_plot(tmp_path):
    store = write_store(tmp_path / "run.zarr", steps=100)
    result = run("norms", store)
    assert result.exit_code == 0, result.output
    assert "state_l1" in result.output
    assert "saturating" in result.output
    assert (tmp_path / "run.norms.png").is_file()


def test_norms_json_and_output_path(tmp_path):
    store = write_store(tmp_path / "run.zarr", steps=100, steps_done=60)
    result = run("norms", store, "--json", "-o", tmp_path / "plots" / "n.png")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["analysis"] == "norms"
    assert [row["series"] for row in document["rows"]] == ["state_l1", "logits_l1", "state_change_l1",
                                                          "logits_change_l1"]
    assert document["rows"][0]["first_nonfinite_step"] is None
    assert any("incomplete: 60 of 100" in note for note in document["notes"])
    assert (tmp_path / "plots" / "n.png").is_file()


def test_iou_without_labels_fails_with_message(tmp_path):
    result = run("iou", write_store(tmp_path / "run.zarr", record_labels=False))
    assert result.exit_code == 1
    assert "labels were not recorded" in result.output


def test_reset_without_gate_json_error(tmp_path):
    result = run("reset", write_store(tmp_path / "run.zarr", reset_gate=False), "--json")
    assert result.exit_code == 1
    assert "has no reset gate" in json.loads(result.output)["error"]


def test_missing_store_message(tmp_path):
    result = run("norms", tmp_path / "absent.zarr")
    assert result.exit_code == 1
    assert "not found" in result.output


def test_reset_from_metrics_log(tmp_path):
    log = tmp_path / "metrics.jsonl"
    gate = np.where(np.arange(300) < 100, 0.1, 0.4)
    log.write_text("".join(json.dumps({"iteration": i, "loss": 1.0, "reset_gate_mean": float(g)}) + "\n"
                           for i, g in enumerate(gate)))
    result = run("reset", log, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert row["verdict"] == "step change"
    assert row["change_at"] == 100
    assert (tmp_path / "reset.png").is_file()


def test_iou_series_option_rejects_unknown(tmp_path):
    result = run("iou", write_store(tmp_path / "run.zarr"), "--series", "horse")
    assert result.exit_code == 1
    assert "is not one of background, object, boundary, mean" in result.output


def test_compare_two_runs(tmp_path):
    first = write_store(tmp_path / "a.zarr", attrs={"schedule": "sync"})
    second = write_store(tmp_path / "b.zarr")
    result = run("compare", first, second, "--variable", "logits_l1")
    assert result.exit_code == 0, result.output
    assert "a (sync)" in result.output
    assert "b (async)" in result.output
    assert (tmp_path / "compare-logits_l1.png").is_file()


@pytest.fixture(scope="module")
def simulated_run(tmp_path_factory):
    """A real store: a tiny reset-gate rule simulated for 48 steps with image shifts and state snapshots."""
    torch = pytest.importorskip("torch")
    from nca_sim.rule import Architecture, save_rule
    from nca_train.model import SegmentationNCA

    folder = tmp_path_factory.mktemp("simulated")
    torch.manual_seed(0)
    model = SegmentationNCA(Architecture(state_channels=6, hidden_channels=12, num_layers=2, reset_gate=True))
    rule = save_rule(model.to_rule(), folder / "tiny.npz")
    store = folder / "run.zarr"
    result = CliRunner().invoke(main, [
        "simulate", "--rule", str(rule), "--steps", "48", "-o", str(store), "--record-state",
        "--snapshot-every", "6", "--shift-every", "12", "--size", "16x16",
    ], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return store


def test_every_analysis_on_simulated_store(simulated_run, tmp_path):
    outputs = {"norms": "norms.png", "reset": "reset.png", "iou": "iou.png", "movie": "movie.gif"}
    for analysis, name in outputs.items():
        result = run(analysis, simulated_run, "--json", "-o", tmp_path / name)
        assert result.exit_code == 0, f"{analysis}: {result.output}"
        document = json.loads(result.output)
        assert document["notes"] == [], f"{analysis}: {document['notes']}"
        assert (tmp_path / name).stat().st_size > 0
    iou = json.loads(run("iou", simulated_run, "--json").output)
    assert [row["step"] for row in iou["rows"]] == [13, 25, 37]
    with Image.open(tmp_path / "movie.gif") as movie:
        assert movie.n_frames == 9
    compare = run("compare", simulated_run, simulated_run, "--json", "-o", tmp_path / "compare.png")
    assert compare.exit_code == 0, compare.output
    assert len(json.loads(compare.output)["rows"]) == 2


def test_adversarial_command_on_simulated_rule(simulated_run, tmp_path):
    image = np.zeros((12, 12, 3), np.uint8)
    image[2:6, 2:6] = 230
    Image.fromarray(image).save(tmp_path / "square.png")
    rule = simulated_run.parent / "tiny.npz"
    result = run("adversarial", "--rule", rule, tmp_path / "square.png", "--region", "box:7,7,11,11",
                 "--step", 5, "--iterations", 3, "--samples", 1, "--eval-samples", 2, "--json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert set(row) >= {"succeeded", "fraction", "l2", "linf", "outside_changed", "max_distance_px"}
    assert (tmp_path / "square.adversarial.png").is_file()
    assert (tmp_path / "square.adversarial-image.png").is_file()


@pytest.mark.parametrize("size", ["0x12", "12x12x3", "ax3"])
def test_adversarial_rejects_invalid_size(tmp_path, size):
    Image.fromarray(np.zeros((12, 12, 3), np.uint8)).save(tmp_path / "image.png")
    result = run("adversarial", "--rule", tmp_path / "rule.npz", tmp_path / "image.png",
                 "--region", "box:1,1,4,4", "--size", size)
    assert result.exit_code != 0
    assert f"{size!r} is not a size" in result.output
