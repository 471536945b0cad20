"""``nca simulate``: run a rule in the Numba simulator and record its trajectory to a Zarr store."""

from __future__ import annotations

import datetime
import json
import math
import sys
from pathlib import Path

import click

from cli.options import parse_size

SCHEDULES = ("sync", "bernoulli", "async", "clock")

# Options that a resumed run takes from the store; passing one with --resume is an error.
_STORED_OPTIONS = (
    "steps", "schedule", "seed", "threads", "update_probability", "stats_interval", "snapshot_every",
    "record_state", "shift_every", "change", "max_shift", "input_source", "split", "size", "first_image", "clock_rates",
    "boundary_width",
)


def _load_inputs(source, split, size, first_image, count_for, boundary_width):
    """Read the images a run shows from a dataset; return ``(images, labels or None, description)``."""
    import numpy as np

    from nca_train.data import open_dataset

    dataset = open_dataset(source or None, split=split, image_size=size, boundary_width=boundary_width)
    available = len(dataset)
    if available == 0:
        raise click.ClickException(f"input {source or 'synthetic'!r} (split {split!r}) has no images")
    if not 0 <= first_image < available:
        raise click.BadParameter(
            f"{first_image} is out of range: the input has {available} images (0 to {available - 1})",
            param_hint="--first-image",
        )
    count = count_for(available)
    items = [dataset[(first_image + i) % available] for i in range(count)]
    shapes = {image.shape for image, _ in items}
    if len(shapes) > 1:
        raise click.ClickException(
            f"the input images differ in size ({', '.join(sorted(f'{s[0]}x{s[1]}' for s in shapes))}): "
            "pass --size HxW to resize them"
        )
    images = np.stack([image for image, _ in items]).astype(np.float32)
    labels = np.stack([label for _, label in items])
    if np.all(labels < 0):
        labels = None
    description = f"{source or 'synthetic'} (split {split}, images {first_image}..{first_image + count - 1})"
    return images, labels, description


def _format_iou(value: float) -> str:
    """Return an IoU with 3 decimals, or "-" for a class absent from labels and prediction (NaN)."""
    if math.isnan(value):
        return "-"
    return f"{value:.3f}"


def _print_summary(summary, class_names, as_json: bool) -> None:
    if as_json:
        record = {
            "store": str(summary.path),
            "steps_requested": summary.steps_requested,
            "steps_done": summary.steps_done,
            "first_step": summary.first_step,
            "complete": summary.complete,
            "wall_seconds": summary.wall_seconds,
            "cell_updates": summary.cell_updates,
            "cell_updates_per_second": summary.updates_per_second,
            "final_iou": None if summary.final_iou is None else dict(zip(class_names, summary.final_iou)),
            "final_mean_iou": summary.final_mean_iou,
        }
        click.echo(json.dumps(record, indent=2))
        return
    state = "complete" if summary.complete else "incomplete, continue with --resume"
    click.echo(f"steps:       {summary.first_step} -> {summary.steps_done} of {summary.steps_requested} ({state})")
    click.echo(f"wall time:   {summary.wall_seconds:.2f} s")
    click.echo(f"cell updates per second: {summary.updates_per_second:,.0f}")
    if summary.final_iou is not None:
        per_class = ", ".join(f"{name} {_format_iou(value)}" for name, value in zip(class_names, summary.final_iou))
        click.echo(f"final IoU:   {per_class} (mean {summary.final_mean_iou:.3f})")
    click.echo(f"store:       {summary.path}")


@click.command()
@click.option("--rule", "rule_path", type=click.Path(dir_okay=False),
              help="Rule file (.npz) from `nca export`. Default: the rule shipped with nca.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True, help="Steps to simulate.")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Trajectory store to write (a directory, NAME.zarr). Default: runs/simulate-<time>.zarr.")
@click.option("--schedule", type=click.Choice(SCHEDULES), default="bernoulli", show_default=True,
              help="Update schedule: sync (all cells), bernoulli (each cell with the update probability), "
                   "async (random sequential), clock (per-cell Poisson clocks).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulator's random streams.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="Numba threads. The async and clock trajectories depend on it.")
@click.option("--update-probability", type=click.FloatRange(min=0, max=1, min_open=True),
              help="Fire probability of the bernoulli schedule. Default: the rule's.")
@click.option("--stats-interval", type=click.IntRange(min=1), default=1, show_default=True,
              help="Steps between refreshes of batch/instance normalization statistics.")
@click.option("--snapshot-every", type=click.IntRange(min=1), default=10, show_default=True,
              help="Steps between snapshots of the predicted class map.")
@click.option("--record-state", is_flag=True, help="Also store the full state at every snapshot.")
@click.option("--shift-every", type=click.IntRange(min=0), default=0, show_default=True,
              help="Steps between changes of the input image; 0 keeps one image.")
@click.option("--change", type=click.Choice(("shift", "swap")),
              help="How the input changes: shift (translate the first image) or swap (next image). "
                   "Default: shift. Needs --shift-every.")
@click.option("--max-shift", type=click.IntRange(min=0),
              help="Largest shift along each axis, in pixels. Default: an eighth of the smaller image side.")
@click.option("--input", "input_source", multiple=True,
              help="Input images: a dataset directory that `nca train` reads, or image files (repeat the "
                   "option). Default: the built-in synthetic set.")
@click.option("--split", type=click.Choice(("train", "test", "all")), default="test", show_default=True,
              help="Split of a dataset input.")
@click.option("--size", help="Image size HxW in pixels that inputs are resized to (the state grid is half "
                             "of it for high-resolution rules). Default: the input's own size.")
@click.option("--boundary-width", type=click.IntRange(min=0),
              help="Width in pixels of the boundary band derived around binary masks (and synthetic objects); "
                   "0 for none.  [default: the width the rule was trained with, else 2]")
@click.option("--first-image", type=click.IntRange(min=0), default=0, show_default=True,
              help="Index of the first input image in the dataset.")
@click.option("--clock-rates", help="Per-cell rates of the clock schedule: 'constant:R' or 'uniform:LOW,HIGH' "
                                    "in updates per unit time. Default: 1 for every cell.")
@click.option("--resume", is_flag=True, help="Continue the run in the store given by -o from its last saved step.")
@click.option("--overwrite", is_flag=True, help="Replace an existing store at -o once the new run has started.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
def simulate(ctx, rule_path, steps, output, schedule, seed, threads, update_probability, stats_interval,
             snapshot_every, record_state, shift_every, change, max_shift, input_source, split, size, first_image,
             boundary_width, clock_rates, resume, overwrite, as_json):
    """Simulate a rule on an image, or a changing sequence of images, and record the trajectory.

    The store is written while the run goes: a killed run leaves every saved step
    readable with xarray.open_zarr, and --resume continues it.
    """
    from tqdm import tqdm

    from nca_sim import default_rule_path
    from nca_sim.inputs import InputSequence, images_needed
    from nca_sim.rule import RuleFileError, load_rule
    from nca_sim.simulate import SimulationSettings, run_simulation
    from nca_sim.schema import SCHEMA_NAME
    from nca_sim.store import StoreError, read_root_attrs

    try:
        rule = load_rule(rule_path if rule_path is not None else default_rule_path())
    except RuleFileError as error:
        raise click.ClickException(str(error)) from error

    if resume:
        if output is None:
            raise click.UsageError("--resume needs the store to continue: pass it with -o RUN.zarr")
        if overwrite:
            raise click.UsageError("--resume and --overwrite exclude each other")
        stored_options_given = [name for name in _STORED_OPTIONS
                                if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE]
        if stored_options_given:
            flag_of = {param.name: max(param.opts, key=len) for param in ctx.command.params}
            flags = ", ".join(flag_of[name] for name in stored_options_given)
            raise click.UsageError(f"{flags}: a resumed run uses the settings stored in {output}; drop these options")
        inputs = settings = None
        description = ""
    else:
        if change is not None and shift_every == 0:
            raise click.UsageError(f"--change {change} needs --shift-every N (steps between changes)")
        change = (change or "shift") if shift_every > 0 else "none"
        if clock_rates is not None and schedule != "clock":
            raise click.UsageError("--clock-rates is only used with --schedule clock")
        try:
            settings = SimulationSettings(
                steps=steps, schedule=schedule, seed=seed, threads=threads,
                update_probability=update_probability, stats_interval=stats_interval,
                snapshot_every=snapshot_every, record_state=record_state, clock_rates=clock_rates,
            )
        except ValueError as error:
            raise click.UsageError(str(error)) from error

        sources = list(input_source)
        if not sources:
            source = None
        elif len(sources) == 1:
            source = sources[0]
        else:
            source = sources
        if boundary_width is None:
            from nca_train.data.masks import DEFAULT_BOUNDARY_WIDTH

            boundary_width = int(rule.metadata.get("boundary_width", DEFAULT_BOUNDARY_WIDTH))
        try:
            images, labels, description = _load_inputs(
                source, split, parse_size(size), first_image,
                lambda available: images_needed(steps, shift_every, change, available),
                boundary_width,
            )
        except (ValueError, FileNotFoundError) as error:
            raise click.ClickException(str(error)) from error
        if max_shift is None:
            max_shift = max(1, min(images.shape[1:3]) // 8)
        inputs = InputSequence(images, labels, shift_every=shift_every, change=change, max_shift=max_shift,
                               seed=seed)
        if output is None:
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            output = str(Path("runs") / f"simulate-{stamp}.zarr")
            click.echo(f"writing the trajectory to {output}", err=True)

    bar = None

    def show_progress(step: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, initial=step - 1, unit="step", disable=not sys.stderr.isatty())
        bar.update(1)

    try:
        summary = run_simulation(
            output, rule, inputs, settings, resume=resume, overwrite=overwrite,
            input_description=description, progress=show_progress,
        )
    except (StoreError, ValueError) as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        attrs = read_root_attrs(output)
        if attrs is None or attrs.get("schema") != SCHEMA_NAME:
            raise click.ClickException("interrupted before the first step was saved; no store was written") from None
        raise click.ClickException(
            f"interrupted: {output} contains steps 0 to {attrs.get('steps_done')}; continue with "
            f"`nca simulate --resume -o {output}`"
        ) from None
    finally:
        if bar is not None:
            bar.close()
    _print_summary(summary, rule.architecture.class_names, as_json)
