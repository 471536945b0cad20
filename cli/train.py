"""``nca train``: train a segmentation NCA and write a run directory."""

from __future__ import annotations

import time

import click

# Command-line option -> (config table, key). Options left unset keep the file's or the default value.
OPTION_KEYS = {
    "state_channels": ("model", "state_channels"),
    "hidden_channels": ("model", "hidden_channels"),
    "num_layers": ("model", "num_layers"),
    "perception": ("model", "perception"),
    "residual": ("model", "residual"),
    "reset_gate": ("model", "reset_gate"),
    "normalization": ("model", "normalization"),
    "padding": ("model", "padding"),
    "update_probability": ("model", "update_probability"),
    "highres_encoder_channels": ("model", "highres_encoder_channels"),
    "freeze_spatial": ("model", "freeze_spatial"),
    "data": ("data", "source"),
    "size": ("data", "size"),
    "boundary_width": ("data", "boundary_width"),
    "num_synthetic": ("data", "num_synthetic"),
    "augment": ("data", "augment"),
    "iterations": ("training", "iterations"),
    "batch_size": ("training", "batch_size"),
    "lr": ("training", "learning_rate"),
    "lr_schedule": ("training", "lr_schedule"),
    "min_lr": ("training", "min_learning_rate"),
    "warmup_iterations": ("training", "warmup_iterations"),
    "lr_step_every": ("training", "lr_step_every"),
    "lr_step_factor": ("training", "lr_step_factor"),
    "target_steps": ("training", "target_steps"),
    "unroll_steps": ("training", "unroll_steps"),
    "full_unroll": ("training", "full_unroll"),
    "image_survival": ("training", "image_survival"),
    "state_survival": ("training", "state_survival"),
    "grad_clip": ("training", "grad_clip"),
    "seed": ("training", "seed"),
    "checkpoint_every": ("training", "checkpoint_every"),
    "time_limit": ("training", "time_limit"),
    "threads": ("training", "threads"),
}


def _overrides(options: dict) -> dict:
    nested: dict = {}
    for option, value in options.items():
        if value is None or option not in OPTION_KEYS:
            continue
        section, key = OPTION_KEYS[option]
        nested.setdefault(section, {})[key] = value
    return nested


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="TOML file with [model], [data] and [training] tables; command-line options override it.")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<date>-<time>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.pt.")
# model
@click.option("--state-channels", type=int, help="Channels of a cell's state, d.  [default: 48]")
@click.option("--hidden-channels", type=int, help="Width of the hidden layers.  [default: 64]")
@click.option("--num-layers", type=int, help="Layers of the update network, at least 2.  [default: 4]")
@click.option("--perception", type=click.Choice(["full", "depthwise"]), help="3x3 perception layer.  [default: full]")
@click.option("--residual/--no-residual", default=None, help="Add the update to the state (s + U(s)).  [default: on]")
@click.option("--reset-gate/--no-reset-gate", default=None, help="Learned gate that resets cells to noise.  [default: off]")
@click.option("--normalization", type=click.Choice(["none", "batch", "instance", "pixel"]), help="State normalization.  [default: none]")
@click.option("--padding", type=click.Choice(["zero", "replicate", "circular"]), help="Grid border of the 3x3 layers.  [default: zero]")
@click.option("--update-probability", type=float, help="Probability that a cell updates at a step.  [default: 0.5]")
@click.option("--highres-encoder-channels", type=int, help="Encoder channels of the high-resolution variant (images at 2x the grid); 0 for the plain model.  [default: 0]")
@click.option("--freeze-spatial/--no-freeze-spatial", default=None, help="Keep the 3x3 spatial filter at its random initialization.  [default: off]")
# data
@click.option("--data", help="Dataset folder; empty or unset trains on the built-in synthetic dataset.")
@click.option("--size", type=int, help="Side of the square state grid in cells.  [default: 64]")
@click.option("--boundary-width", type=int, help="Width in pixels of the boundary band derived from binary masks.  [default: 2]")
@click.option("--num-synthetic", type=int, help="Images in the synthetic dataset.  [default: 512]")
@click.option("--augment/--no-augment", default=None, help="Random flips and other augmentations.  [default: on]")
# training
@click.option("--iterations", type=int, help="Total optimizer steps, one mini-unroll each.  [default: 20]")
@click.option("--batch-size", type=int, help="Samples per batch, also the pool size.  [default: 32]")
@click.option("--lr", type=float, help="Adam learning rate (the peak, with a schedule).  [default: 3e-4]")
@click.option("--lr-schedule", type=click.Choice(["constant", "cosine", "step"]), help="How the learning rate changes over the iterations; cosine ends at --min-lr at the last iteration.  [default: constant]")
@click.option("--min-lr", type=float, help="Learning rate at the end of the cosine schedule.  [default: 0]")
@click.option("--warmup-iterations", type=int, help="Iterations of linear warmup to --lr before the schedule.  [default: 0]")
@click.option("--lr-step-every", type=int, help="Iterations between decays of the step schedule.")
@click.option("--lr-step-factor", type=float, help="Factor of each decay of the step schedule.  [default: 0.1]")
@click.option("--target-steps", type=int, help="T, the rollout length trained for.  [default: 40]")
@click.option("--unroll-steps", type=int, help="K, steps back-propagated per iteration.  [default: 10]")
@click.option("--full-unroll/--no-full-unroll", default=None, help="Back-propagate all T steps from fresh states, without pools.  [default: off]")
@click.option("--image-survival", type=float, help="Fraction of pool images that survive T steps without a reset.  [default: 0.5]")
@click.option("--state-survival", type=float, help="Fraction of pool states that survive T steps without a reset.  [default: 0.5]")
@click.option("--grad-clip", type=float, help="Maximum gradient norm; 0 disables clipping.  [default: 0]")
@click.option("--seed", type=int, help="Seed of every random generator.  [default: 0]")
@click.option("--checkpoint-every", type=int, help="Iterations between checkpoints.  [default: 100]")
@click.option("--time-limit", type=float, help="Wall-clock budget in minutes; stops cleanly with a checkpoint.  [default: 0, none]")
@click.option("--threads", type=int, help="PyTorch CPU threads; 0 uses every core.  [default: 0]")
def train(config_path, out, resume, **options):
    """Train a segmentation NCA and write checkpoint.pt, metrics.jsonl, config.toml and rule.npz.

    With no options it trains the default model (d=48, 64 hidden channels, 4
    layers, full 3x3 perception, 41K parameters) on the built-in synthetic
    dataset at 64x64 for 20 iterations of batch 32: a check of the whole
    pipeline that takes 1 to 2 minutes on 2 CPU cores. This model does not learn
    to segment in that time; docs/training.md gives a smaller model and settings
    that learn within 30 minutes on a CPU.
    """
    from nca_train.checkpoint import CheckpointError, load_checkpoint
    from nca_train.config import ConfigError, TrainConfig, load_config
    from nca_train.train import CHECKPOINT_NAME, RunDirectoryError, TrainingDivergedError
    from nca_train.train import train as run_training

    if resume and out is None:
        raise click.UsageError("--resume needs --out, the run directory to continue")
    out = out or f"runs/{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        base = None
        if resume:
            from pathlib import Path

            payload = load_checkpoint(Path(out) / CHECKPOINT_NAME)
            base = TrainConfig.from_dict(payload["config"], origin=f"{out}/{CHECKPOINT_NAME}")
        config = load_config(config_path, _overrides(options), base=base)
        click.echo(f"run directory: {out}")
        result = run_training(config, out, resume=resume, log=click.echo)
    except (ConfigError, CheckpointError, RunDirectoryError, TrainingDivergedError) as error:
        raise click.ClickException(str(error)) from error
    if result.stopped_by_time_limit:
        click.echo(f"stopped by the time limit after {result.iterations} iterations; resume with --resume --out {out}")
