"""``nca evaluate``: per-class IoU of a trained model on a dataset split, at chosen steps."""

from __future__ import annotations

import json

import click


def _parse_steps(ctx, param, value: str) -> list[int]:
    try:
        steps = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers such as 10,20,40") from None
    if not steps or min(steps) < 1:
        raise click.BadParameter(f"{value!r} is invalid: give positive step counts such as 10,20,40")
    return steps


@click.command()
@click.argument("model_path", metavar="CHECKPOINT", type=click.Path(exists=True))
@click.option("--steps", default="10,20,40,80,200,1000", show_default=True, callback=_parse_steps,
              help="Comma-separated steps at which to read the segmentation.")
@click.option("--data", help="Dataset folder; default: the one the checkpoint was trained on (synthetic for a rule file).")
@click.option("--split", type=click.Choice(["train", "test", "all"]), default="test", show_default=True,
              help="Dataset split to evaluate.")
@click.option("--size", type=click.IntRange(min=3), help="Side of the square state grid in cells; default: the checkpoint's, else 64.")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images rolled out together.")
@click.option("--schedule", type=click.Choice(["torch", "sync", "bernoulli", "async", "clock"]), default="torch",
              show_default=True,
              help="torch: the PyTorch model in batches. Otherwise the Numba simulator, one image at a time, "
                   "with this update schedule.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the initial states and update masks; the simulator uses SEED + i for image i.")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="CPU threads: for torch, 0 uses every core; for the simulator, 0 means 1 "
                   "(async and clock trajectories depend on the thread count).")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N images of the split.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
def evaluate(model_path, steps, data, split, size, batch_size, schedule, seed, threads, limit, as_json):
    """Roll out the model in CHECKPOINT (checkpoint.pt, its run directory, or a rule .npz) and print IoU per class.

    IoU sums intersections and unions over every labelled pixel of the split. A class
    absent from both target and prediction shows '-' (null in JSON) and is left out of
    the mean. With a simulator --schedule, the rule of a checkpoint is exported in
    memory and run by nca_sim.evaluate.evaluate_rule.
    """
    import os

    import torch

    from nca_train.checkpoint import CheckpointError
    from nca_train.config import DataConfig
    from nca_train.data import open_dataset
    from nca_train.allocator import keep_freed_memory
    from nca_train.evaluate import evaluate_model, format_table, load_model

    if schedule == "torch":
        torch.set_num_threads(threads or os.cpu_count() or 1)
        keep_freed_memory()
    try:
        loaded = load_model(model_path)
    except (CheckpointError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    data_config = loaded.config.data if loaded.config is not None else DataConfig()
    source = data if data is not None else data_config.source
    side = (size or data_config.size) * loaded.model.arch.upscale
    try:
        dataset = open_dataset(
            source or None,
            split=split,
            image_size=(side, side),
            boundary_width=data_config.boundary_width,
            num_synthetic=data_config.num_synthetic,
            seed=loaded.config.training.seed if loaded.config is not None else 0,
        )
        if limit is not None:
            dataset = [dataset[i] for i in range(min(limit, len(dataset)))]
        if schedule == "torch":
            results = evaluate_model(loaded.model, dataset, steps, batch_size=batch_size, seed=seed)
        else:
            from nca_sim.evaluate import evaluate_rule

            evaluation = evaluate_rule(
                loaded.model.to_rule(), dataset, steps=steps, schedule=schedule, seed=seed, threads=threads or 1
            )
            results = evaluation.results()
    except (OSError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    if as_json:
        document = {
            "model": loaded.source,
            "data": source or "synthetic",
            "split": split,
            "images": len(dataset),
            "schedule": schedule,
            "results": {str(step): result for step, result in results.items()},
        }
        if schedule != "torch":
            document["simulator"] = {key: value for key, value in evaluation.to_dict().items() if key != "results"}
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(
            f"{loaded.source} on {source or 'synthetic'} ({split}, {len(dataset)} images, schedule {schedule}): "
            "IoU per class"
        )
        click.echo(format_table(results))
        if schedule != "torch":
            click.echo(f"{evaluation.cell_updates} cell updates in {evaluation.wall_seconds:.1f} s")
