"""Training: config loading, the loop, resume, divergence, time limit, and the train/evaluate/export commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import main
from nca_sim.rule import load_rule
from nca_train.checkpoint import CheckpointError, load_checkpoint
from nca_train.config import ConfigError, load_config, to_toml
from nca_train.train import RunDirectoryError, TrainingDivergedError, train

# A model and data small enough for a training iteration to take milliseconds.
TINY = {
    "model": {"state_channels": 6, "hidden_channels": 8, "num_layers": 3},
    "data": {"size": 12, "num_synthetic": 8},
    "training": {"iterations": 4, "batch_size": 3, "target_steps": 6, "unroll_steps": 3, "threads": 1,
                 "checkpoint_every": 2},
}

TINY_OPTIONS = [
    "--state-channels", "6", "--hidden-channels", "8", "--num-layers", "3", "--size", "12",
    "--num-synthetic", "8", "--batch-size", "3", "--target-steps", "6", "--unroll-steps", "3",
    "--threads", "1", "--iterations", "3",
]


def tiny_config(**sections):
    overrides = {name: dict(values) for name, values in TINY.items()}
    for name, values in sections.items():
        overrides[name].update(values)
    return load_config(None, overrides)


def quiet(message):
    pass


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


# -- config --------------------------------------------------------------------------------


def test_config_file_and_command_line_override(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[model]\nstate_channels = 20\nnormalization = "pixel"\n[training]\nbatch_size = 5\nlearning_rate = 1e-3\n')
    config = load_config(path, {"training": {"batch_size": 7}})
    assert config.model.state_channels == 20
    assert config.model.normalization == "pixel"
    assert config.training.batch_size == 7
    assert config.training.learning_rate == 1e-3
    assert config.model.hidden_channels == 64


def test_config_round_trips_through_toml(tmp_path):
    config = tiny_config(model={"reset_gate": True, "padding": "circular"}, data={"source": str(tmp_path)})
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    assert load_config(path) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[model]\nstate_channel = 3\n", "unknown key 'state_channel' in \\[model\\]"),
        ("[optimizer]\nlr = 1\n", "unknown table \\[optimizer\\]"),
        ("[training]\nbatch_size = 'many'\n", "training.batch_size='many' is invalid"),
        ("[model\n", "not valid TOML"),
    ],
)
def test_config_file_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_config_file_that_is_binary(tmp_path):
    path = tmp_path / "photo.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(ConfigError, match="'.*photo.png' is not UTF-8 text; give a TOML file"):
        load_config(path)


def test_config_file_not_found(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training": {"target_steps": -5}}, "training.target_steps=-5 is invalid"),
        ({"training": {"unroll_steps": 50}}, "unroll_steps=50 is larger than training.target_steps=40"),
        ({"training": {"state_survival": 1.5}}, "training.state_survival=1.5 is out of range"),
        ({"training": {"image_survival": -0.1}}, "training.image_survival=-0.1 is out of range"),
        ({"model": {"normalization": "layer"}}, "model.normalization='layer' is not supported"),
        ({"model": {"update_probability": 0.0}}, "model.update_probability=0.0 is invalid"),
        ({"data": {"source": "/nonexistent/photos"}}, "data.source='/nonexistent/photos' is not a readable folder"),
        ({"training": {"learning_rate": 0.0}}, "learning_rate=0 is invalid"),
    ],
)
def test_config_bad_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_full_unroll_allows_unroll_longer_than_target():
    config = load_config(None, {"training": {"unroll_steps": 50, "full_unroll": True}})
    assert config.training.full_unroll


# -- training loop ---------------------------------------------------------------------------


def test_train_writes_run_directory(tmp_path):
    run_dir = tmp_path / "run"
    result = train(tiny_config(model={"reset_gate": True}), run_dir, log=quiet)
    assert result.iterations == 4
    assert not result.stopped_by_time_limit
    for name in ("checkpoint.pt", "metrics.jsonl", "config.toml", "rule.npz"):
        assert (run_dir / name).is_file(), name
    records = read_metrics(run_dir)
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    # T = 6, K = 3: steps 2 and 3 of the first unroll reach age T / 3 = 2, so every iteration has a loss.
    assert all(np.isfinite(r["loss"]) for r in records)
    assert records[0]["cases"] == {"new_image_new_state": 3, "kept_image_kept_state": 0,
                                   "new_image_kept_state": 0, "kept_image_new_state": 0}
    assert all(sum(r["cases"].values()) == 3 for r in records)
    assert all(0.0 < r["reset_gate_mean"] < 1.0 for r in records)
    assert set(records[-1]["iou"]) == {"background", "object", "boundary"}
    assert records[-1]["wall_time"] >= records[0]["wall_time"]
    rule = load_rule(run_dir / "rule.npz")
    assert rule.architecture.state_channels == 6
    assert rule.architecture.reset_gate
    payload = load_checkpoint(run_dir)
    model_weights = payload["model"]["update.weight"].numpy().reshape(6, 8)
    np.testing.assert_array_equal(rule.weights["update.weight"], model_weights)
    assert payload["iteration"] == 4
    assert load_config(run_dir / "config.toml") == tiny_config(model={"reset_gate": True})


def test_loss_skipped_until_age_reaches_third_of_target(tmp_path):
    # T = 30, K = 5: ages 1..5 of the first unroll are below T / 3 = 10, so it has no loss.
    config = tiny_config(training={"target_steps": 30, "unroll_steps": 5, "iterations": 2,
                                   "image_survival": 1.0, "state_survival": 1.0})
    train(config, tmp_path / "run", log=quiet)
    records = read_metrics(tmp_path / "run")
    assert records[0]["loss"] is None
    assert records[1]["loss"] is not None
    assert records[1]["cases"]["kept_image_kept_state"] == 3


def test_full_unroll_mode(tmp_path):
    config = tiny_config(training={"full_unroll": True, "iterations": 2})
    result = train(config, tmp_path / "run", log=quiet)
    records = read_metrics(tmp_path / "run")
    assert result.iterations == 2
    assert all(r["cases"]["new_image_new_state"] == 3 for r in records)
    assert all(r["loss"] is not None for r in records)
    assert load_checkpoint(tmp_path / "run")["pool"] is None


def test_highres_training(tmp_path):
    config = tiny_config(model={"highres_encoder_channels": 4, "perception": "depthwise"},
                         data={"size": 8}, training={"iterations": 2})
    train(config, tmp_path / "run", log=quiet)
    rule = load_rule(tmp_path / "run" / "rule.npz")
    assert rule.architecture.upscale == 2
    assert load_checkpoint(tmp_path / "run")["pool"]["images"].shape == (3, 3, 16, 16)


def test_freeze_spatial_stays_bit_identical(tmp_path):
    config = tiny_config(model={"freeze_spatial": True})
    torch.manual_seed(config.training.seed)
    from nca_train.train import build_model

    initial = build_model(config).spatial_filter.detach().clone()
    train(config, tmp_path / "run", log=quiet)
    weights = load_checkpoint(tmp_path / "run")["model"]
    assert torch.equal(weights["perceive.weight"], initial)
    # The other weights did train.
    assert not torch.equal(weights["update.weight"], build_model(config).update.weight.detach())


def test_resume_matches_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    split = tmp_path / "split"
    config = tiny_config(model={"reset_gate": True}, training={"iterations": 6, "checkpoint_every": 1})
    train(config, straight, log=quiet)
    half = tiny_config(model={"reset_gate": True}, training={"iterations": 3, "checkpoint_every": 1})
    train(half, split, log=quiet)
    train(config, split, resume=True, log=quiet)

    straight_records, split_records = read_metrics(straight), read_metrics(split)
    assert [r["iteration"] for r in split_records] == list(range(1, 7))
    assert [r["loss"] for r in split_records] == [r["loss"] for r in straight_records]
    assert [r["cases"] for r in split_records] == [r["cases"] for r in straight_records]
    a, b = load_checkpoint(straight), load_checkpoint(split)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    assert torch.equal(a["pool"]["states"], b["pool"]["states"])
    assert a["iteration"] == b["iteration"] == 6


def test_resume_drops_metrics_after_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(training={"iterations": 3, "checkpoint_every": 2}), run_dir, log=quiet)
    # The checkpoint is at iteration 3 (the end); append a line as if a crash followed it.
    with open(run_dir / "metrics.jsonl", "a") as handle:
        handle.write(json.dumps({"iteration": 4, "loss": 0.0}) + "\n")
    train(tiny_config(training={"iterations": 5}), run_dir, resume=True, log=quiet)
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5]


def test_existing_run_directory_needs_resume(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(training={"iterations": 1}), run_dir, log=quiet)
    with pytest.raises(RunDirectoryError, match="pass --resume to continue it or choose another --out"):
        train(tiny_config(), run_dir, log=quiet)
    with pytest.raises(RunDirectoryError, match="cannot resume"):
        train(tiny_config(), tmp_path / "empty", resume=True, log=quiet)


def test_resume_rejects_changed_model(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(training={"iterations": 1}), run_dir, log=quiet)
    messages = []
    with pytest.raises(ConfigError, match="cannot change on resume"):
        train(tiny_config(model={"state_channels": 7}), run_dir, resume=True, log=messages.append)
    # The check comes before anything is built, so nothing misleading is printed first.
    assert messages == []


def test_divergence_stops_and_keeps_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(training={"iterations": 2}), run_dir, log=quiet)
    checkpoint_bytes = (run_dir / "checkpoint.pt").read_bytes()
    rule_bytes = (run_dir / "rule.npz").read_bytes()
    exploding = tiny_config(training={"iterations": 40, "learning_rate": 1e6, "checkpoint_every": 100})
    with pytest.raises(TrainingDivergedError, match=r"diverged at iteration \d+") as error:
        train(exploding, run_dir, resume=True, log=quiet)
    failed_at = int(str(error.value).split("iteration ")[1].split(":")[0])
    assert 2 < failed_at <= 40
    assert (run_dir / "checkpoint.pt").read_bytes() == checkpoint_bytes
    assert (run_dir / "rule.npz").read_bytes() == rule_bytes
    assert not any(p.name.endswith(".tmp") for p in run_dir.iterdir())


def test_divergence_never_checkpoints_bad_weights(tmp_path):
    run_dir = tmp_path / "run"
    exploding = tiny_config(training={"iterations": 40, "learning_rate": 1e6, "checkpoint_every": 1})
    with pytest.raises(TrainingDivergedError):
        train(exploding, run_dir, log=quiet)
    payload = load_checkpoint(run_dir)
    assert all(torch.isfinite(value).all() for value in payload["model"].values())
    assert payload["iteration"] >= 1


def test_time_limit_stops_with_checkpoint(tmp_path):
    config = tiny_config(training={"iterations": 1000, "time_limit": 1e-6, "checkpoint_every": 500})
    result = train(config, tmp_path / "run", log=quiet)
    assert result.stopped_by_time_limit
    assert result.iterations == 1
    assert load_checkpoint(tmp_path / "run")["iteration"] == 1
    assert (tmp_path / "run" / "rule.npz").is_file()


# -- commands ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """A tiny run made by `nca train`, shared by the command tests."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(main, ["train", "--out", str(run_dir), "--reset-gate", *TINY_OPTIONS])
    assert result.exit_code == 0, result.output
    return run_dir, result.output


def test_train_command_writes_run(cli_run):
    run_dir, output = cli_run
    assert "parameters" in output
    assert "trainable" in output
    assert len(read_metrics(run_dir)) == 3
    rule = load_rule(run_dir / "rule.npz")
    assert rule.architecture.reset_gate
    assert rule.architecture.hidden_channels == 8


def test_train_command_config_file_and_override(tmp_path):
    config_path = tmp_path / "run.toml"
    config_path.write_text("[model]\nstate_channels = 5\nhidden_channels = 7\nnum_layers = 2\n"
                           "[training]\niterations = 9\n")
    run_dir = tmp_path / "run"
    options = ["--state-channels", "4", "--size", "12", "--num-synthetic", "8", "--batch-size", "3",
               "--target-steps", "6", "--unroll-steps", "3", "--threads", "1", "--iterations", "3"]
    result = CliRunner().invoke(main, ["train", "--config", str(config_path), "--out", str(run_dir), *options])
    assert result.exit_code == 0, result.output
    saved = load_config(run_dir / "config.toml")
    assert saved.model.state_channels == 4  # command line wins
    assert saved.model.hidden_channels == 7  # from the file
    assert saved.training.iterations == 3  # command line wins
    assert saved.model.num_layers == 2  # from the file

    result = CliRunner().invoke(main, ["train", "--out", str(run_dir), "--resume", "--iterations", "5"])
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2, 3, 4, 5]
    assert load_config(run_dir / "config.toml").model.state_channels == 4


def test_train_command_errors(tmp_path, cli_run):
    run_dir, _ = cli_run
    result = CliRunner().invoke(main, ["train", "--out", str(run_dir), *TINY_OPTIONS])
    assert result.exit_code != 0
    assert "--resume" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[training]\nbatchsize = 3\n")
    result = CliRunner().invoke(main, ["train", "--config", str(bad), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "unknown key 'batchsize'" in result.output
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "y"), "--unroll-steps", "80"])
    assert result.exit_code != 0
    assert "unroll_steps=80" in result.output


def test_evaluate_command_table_and_json(cli_run):
    run_dir, _ = cli_run
    runner = CliRunner()
    result = runner.invoke(main, ["evaluate", str(run_dir / "checkpoint.pt"), "--steps", "2,5", "--threads", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1].split() == ["step", "background", "object", "boundary", "mean"]
    assert [line.split()[0] for line in lines[2:]] == ["2", "5"]

    result = runner.invoke(main, ["evaluate", str(run_dir / "rule.npz"), "--steps", "3", "--size", "12",
                                  "--json", "--threads", "1"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    step = document["results"]["3"]
    assert set(step["per_class"]) == {"background", "object", "boundary"}
    present = [v for v in step["per_class"].values() if v is not None]
    assert step["mean"] == pytest.approx(sum(present) / len(present))
    assert all(0.0 <= v <= 1.0 for v in present)

    result = runner.invoke(main, ["evaluate", str(run_dir), "--steps", "0,4"])
    assert result.exit_code != 0
    assert "positive step counts" in result.output

    # Out-of-range numbers are usage errors naming the option, not crashes or silent defaults.
    for option, value in (("--size", "0"), ("--batch-size", "0"), ("--threads", "-2")):
        result = runner.invoke(main, ["evaluate", str(run_dir), "--steps", "2", option, value])
        assert result.exit_code == 2, result.output
        assert f"Invalid value for '{option}'" in result.output
        assert "Traceback" not in result.output


def test_evaluate_command_simulator_schedules(cli_run):
    run_dir, _ = cli_run
    runner = CliRunner()
    for schedule in ("sync", "async"):
        result = runner.invoke(main, ["evaluate", str(run_dir / "rule.npz"), "--steps", "2,4", "--size", "12",
                                      "--schedule", schedule, "--limit", "2", "--json"])
        assert result.exit_code == 0, result.output
        document = json.loads(result.output)
        assert document["schedule"] == schedule
        assert document["images"] == 2
        assert sorted(document["results"]) == ["2", "4"]
        assert document["simulator"]["cell_updates"] == 2 * 4 * 12 * 12
        present = [v for v in document["results"]["4"]["per_class"].values() if v is not None]
        assert all(0.0 <= v <= 1.0 for v in present)

    result = runner.invoke(main, ["evaluate", str(run_dir / "rule.npz"), "--steps", "2", "--size", "12",
                                  "--schedule", "async", "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert "schedule async" in result.output.splitlines()[0]


def test_evaluate_matches_direct_rollout(cli_run):
    from nca_train.data import open_dataset
    from nca_train.evaluate import evaluate_model, load_model
    from nca_train.metrics import IoUAccumulator

    run_dir, _ = cli_run
    loaded = load_model(run_dir)
    dataset = open_dataset(None, split="test", image_size=(12, 12), num_synthetic=8, seed=0)
    results = evaluate_model(loaded.model, dataset, [4], batch_size=len(dataset), seed=3)
    images = torch.from_numpy(np.stack([dataset[i][0].transpose(2, 0, 1) for i in range(len(dataset))]))
    labels = np.stack([dataset[i][1] for i in range(len(dataset))])
    _, logits = loaded.model.rollout(images, 4, generator=torch.Generator().manual_seed(3))
    accumulator = IoUAccumulator()
    accumulator.update(logits[4].argmax(dim=1).numpy(), labels)
    assert results[4] == accumulator.result()


def test_export_command(tmp_path, cli_run):
    run_dir, _ = cli_run
    runner = CliRunner()
    output = tmp_path / "rule.npz"
    result = runner.invoke(main, ["export", str(run_dir / "checkpoint.pt"), "-o", str(output)])
    assert result.exit_code == 0, result.output
    exported = load_rule(output)
    assert exported.weights_sha256() == load_rule(run_dir / "rule.npz").weights_sha256()
    # The boundary width of the training labels travels with the rule, for nca simulate.
    assert exported.metadata["boundary_width"] == 2
    assert load_rule(run_dir / "rule.npz").metadata["boundary_width"] == 2

    result = runner.invoke(main, ["export", str(run_dir), "-o", str(output)])
    assert result.exit_code != 0
    assert "--force" in result.output
    result = runner.invoke(main, ["export", str(run_dir), "-o", str(output), "--force"])
    assert result.exit_code == 0, result.output

    not_a_checkpoint = tmp_path / "junk.pt"
    not_a_checkpoint.write_bytes(b"not a checkpoint")
    result = runner.invoke(main, ["export", str(not_a_checkpoint), "-o", str(tmp_path / "new.npz")])
    assert result.exit_code != 0
    assert "not a readable nca checkpoint" in result.output
    assert not (tmp_path / "new.npz").exists()


def test_load_checkpoint_foreign_file_message(tmp_path):
    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    text = tmp_path / "config.toml"
    text.write_text("[model]\nstate_channels = 4\n")
    for path in (png, text):
        with pytest.raises(CheckpointError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert message.startswith(f"{str(path)!r} is not a readable nca checkpoint (")
        assert message.endswith("give a checkpoint.pt written by `nca train`, or its run directory")
        assert "\n" not in message
        assert "weights_only" not in message

    rule_file = tmp_path / "rule.npz"
    rule_file.write_bytes(b"PK\x03\x04")
    with pytest.raises(CheckpointError, match="'.*rule.npz' is a rule file, not a checkpoint"):
        load_checkpoint(rule_file)


def test_resume_of_run_with_zero_iterations(tmp_path):
    run_dir = tmp_path / "run"
    train(tiny_config(training={"iterations": 0}), run_dir, log=quiet)
    assert load_checkpoint(run_dir)["iteration"] == 0
    result = train(tiny_config(training={"iterations": 2}), run_dir, resume=True, log=quiet)
    assert result.iterations == 2
    assert [r["iteration"] for r in read_metrics(run_dir)] == [1, 2]


# -- learning-rate schedules -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"training": {"lr_schedule": "linear"}}, "training.lr_schedule='linear' is not supported"),
        ({"training": {"lr_schedule": "step"}}, "needs training.lr_step_every >= 1"),
        ({"training": {"min_learning_rate": 1.0}}, "training.min_learning_rate=1.0 is invalid"),
        ({"training": {"min_learning_rate": -1e-5}}, "training.min_learning_rate=-1e-05 is invalid"),
        ({"training": {"lr_step_factor": 0.0}}, "training.lr_step_factor=0.0 is invalid"),
        ({"training": {"lr_step_factor": 2.0}}, "training.lr_step_factor=2.0 is invalid"),
        ({"training": {"warmup_iterations": -1}}, "training.warmup_iterations=-1 is invalid"),
    ],
)
def test_config_bad_schedule_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_metrics_log_learning_rate(tmp_path):
    config = tiny_config(training={"iterations": 5, "learning_rate": 1e-2, "lr_schedule": "step",
                                   "lr_step_every": 2, "lr_step_factor": 0.5, "warmup_iterations": 1})
    messages = []
    train(config, tmp_path / "run", log=messages.append)
    logged = [record["learning_rate"] for record in read_metrics(tmp_path / "run")]
    assert logged == pytest.approx([1e-2, 1e-2, 1e-2, 5e-3, 5e-3])
    assert "learning rate: 0.01, multiplied by 0.5 every 2 iterations, after a linear warmup of 1 iteration" in messages
    optimizer = load_checkpoint(tmp_path / "run")["optimizer"]
    assert optimizer["param_groups"][0]["lr"] == pytest.approx(5e-3)


def test_resume_continues_cosine_schedule(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    schedule = {"iterations": 6, "checkpoint_every": 1, "lr_schedule": "cosine", "learning_rate": 1e-2,
                "min_learning_rate": 1e-3}
    train(tiny_config(training=schedule), straight, log=quiet)
    # A tiny time limit stops the run after its first iteration, with the same total of 6.
    stopped = train(tiny_config(training={**schedule, "time_limit": 1e-9}), split, log=quiet)
    assert stopped.stopped_by_time_limit and stopped.iterations == 1
    train(tiny_config(training=schedule), split, resume=True, log=quiet)

    straight_records, split_records = read_metrics(straight), read_metrics(split)
    assert [r["learning_rate"] for r in split_records] == [r["learning_rate"] for r in straight_records]
    assert straight_records[-1]["learning_rate"] == pytest.approx(1e-3)
    assert [r["loss"] for r in split_records] == [r["loss"] for r in straight_records]
    a, b = load_checkpoint(straight), load_checkpoint(split)
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def test_train_command_schedule_options(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", *TINY_OPTIONS, "--out", str(out), "--lr", "0.01", "--lr-schedule",
                                       "cosine", "--min-lr", "0.001", "--warmup-iterations", "1"])
    assert result.exit_code == 0, result.output
    assert "learning rate: cosine from 0.01 to 0.001 at iteration 3, after a linear warmup of 1 iteration" in result.output
    logged = [record["learning_rate"] for record in read_metrics(out)]
    assert logged == pytest.approx([0.01, 0.01, 0.001])
    config = load_config(out / "config.toml")
    assert (config.training.lr_schedule, config.training.min_learning_rate) == ("cosine", 0.001)
