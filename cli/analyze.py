"""``nca analyze``: stability, reset gate, IoU recovery, adversarial regions, movies and run comparisons.

Each subcommand prints a short verdict table (``--json``: the same as JSON) and
writes a PNG (or an animation) next to the store, or to the path given by ``-o``. The
analysis functions live in :mod:`analysis`; this module parses options and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.options import parse_size

# Errors that mean "this analysis cannot run on this input"; they are printed as one message.
_INPUT_ERRORS = (ValueError, FileNotFoundError, RuntimeError)


def _fail(analysis: str, error: Exception, as_json: bool):
    if as_json:
        click.echo(json.dumps({"analysis": analysis, "error": str(error)}, indent=2))
        sys.exit(1)
    raise click.ClickException(str(error))


def _emit(analysis: str, rows: list[dict], *, notes, plot, as_json: bool, **extra) -> None:
    from analysis.report import format_table, to_json

    if as_json:
        click.echo(to_json(analysis, rows, notes=notes, plot=plot, **extra))
        return
    for note in notes:
        click.echo(f"note: {note}")
    click.echo(format_table(rows))
    if plot is not None:
        click.echo(f"wrote {plot}")


def _output_option(help_text: str):
    return click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help=help_text)


_json_option = click.option("--json", "as_json", is_flag=True, help="Print the verdicts as JSON instead of a table.")


@click.group()
def analyze():
    """Analyse trajectory stores (RUN.zarr) and training logs."""


@analyze.command()
@click.argument("store", type=click.Path(path_type=Path))
@_output_option("PNG path.  [default: RUN.norms.png next to the store]")
@click.option("--window-fraction", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
              help="Fraction of the steps, counted from the end, that the growth fits use.")
@click.option("--saturation-threshold", type=click.FloatRange(min=0.0), default=0.1, show_default=True,
              help="Relative growth over the fit window below which a series counts as saturating.")
@_json_option
def norms(store, output, window_fraction, saturation_threshold, as_json):
    """Classify the growth of the state and logits norms: saturating, linear, exponential or diverged."""
    from analysis.norms import analyze_norms, plot_norms
    from analysis.report import default_plot_path, rows_along

    try:
        result = analyze_norms(store, window_fraction=window_fraction, saturation_threshold=saturation_threshold)
    except _INPUT_ERRORS as error:
        _fail("norms", error, as_json)
    plot = None
    if result.sizes["series"]:
        plot = output or default_plot_path(store, "norms")
        plot_norms(result, plot)
    columns = ["series", "verdict", "rate", "doubling_steps", "relative_growth", "level", "first_nonfinite_step"]
    rows = [{key: row[key] for key in columns if key in row} for row in rows_along(result, "series")]
    for row in rows:
        if row.get("first_nonfinite_step") == -1:
            row["first_nonfinite_step"] = None
    _emit("norms", rows, notes=result.attrs["notes"], plot=plot, as_json=as_json, run=result.attrs["run"])


@analyze.command()
@click.argument("source", type=click.Path(path_type=Path))
@_output_option("PNG path.  [default: RUN.reset.png next to the store, or reset.png next to the log]")
@click.option("--threshold", type=click.FloatRange(min=0.0), default=3.0, show_default=True,
              help="Level difference, in multiples of the noise, that counts as a regime change.")
@click.option("--min-difference", type=click.FloatRange(min=0.0), default=0.05, show_default=True,
              help="Smallest change of the mean gate activation that counts as a regime change.")
@click.option("--smoothing", type=click.IntRange(min=1), default=None,
              help="Width of the moving mean before the change-point fit.  [default: 1/50 of the series]")
@_json_option
def reset(source, output, threshold, min_difference, smoothing, as_json):
    """Reset-gate activity over the steps of RUN.zarr, or over training from a metrics.jsonl log."""
    from analysis.report import default_plot_path
    from analysis.reset import analyze_reset, plot_reset, reset_rows

    try:
        result = analyze_reset(source, threshold=threshold, min_difference=min_difference, smoothing=smoothing)
    except _INPUT_ERRORS as error:
        _fail("reset", error, as_json)
    if output is None:
        output = source.parent / "reset.png" if str(source).endswith(".jsonl") else default_plot_path(source, "reset")
    plot_reset(result, output)
    _emit("reset", reset_rows(result), notes=result.attrs["notes"], plot=output, as_json=as_json)


@analyze.command()
@click.argument("store", type=click.Path(path_type=Path))
@_output_option("PNG path.  [default: RUN.iou.png next to the store]")
@click.option("--tolerance", type=click.FloatRange(min=0.0), default=0.02, show_default=True,
              help="IoU within this of the level before a change counts as recovered.")
@click.option("--baseline-steps", type=click.IntRange(min=1), default=5, show_default=True,
              help="Steps before a change whose mean IoU is the level before it.")
@click.option("--series", "series_name", default="mean", show_default=True,
              help="IoU series in the table: 'mean', a class name, or 'all'.")
@_json_option
def iou(store, output, tolerance, baseline_steps, series_name, as_json):
    """Per-class IoU over steps; drop and recovery time at every image change."""
    from analysis.iou import analyze_iou, iou_rows, plot_iou
    from analysis.report import default_plot_path

    try:
        result = analyze_iou(store, tolerance=tolerance, baseline_steps=baseline_steps)
        names = [str(name) for name in result["series"].values]
        if series_name != "all" and series_name not in names:
            raise ValueError(f"--series {series_name!r} is not one of {', '.join(names)} or all")
    except _INPUT_ERRORS as error:
        _fail("iou", error, as_json)
    output = output or default_plot_path(store, "iou")
    plot_iou(result, output)
    rows = []
    for name in names if series_name == "all" else [series_name]:
        rows += iou_rows(result, name)
    notes = list(result.attrs["notes"])
    if not rows:
        notes.append(f"final mean IoU {result.attrs['final_mean_iou']:.3f}")
    _emit("iou", rows, notes=notes, plot=output, as_json=as_json, final_mean_iou=result.attrs["final_mean_iou"])


@analyze.command()
@click.option("--rule", "rule_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Rule file (.npz) written by `nca export`.")
@click.argument("image", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--region", required=True,
              help="Region to grey and perturb: box:y0,x0,y1,x1 (pixels, end exclusive), mask:PATH, or object.")
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Label mask of IMAGE (0/255 or Oxford trimap); --region object uses its object class.")
@click.option("--size", "size_text", default=None, help="Resize the image to N or HxW pixels.  [default: native size]")
@click.option("--step", type=click.IntRange(min=1), default=40, show_default=True,
              help="Step at which the region should be predicted as the target class.")
@click.option("--target", default="object", show_default=True, help="Class name the region should be predicted as.")
@click.option("--iterations", type=click.IntRange(min=1), default=200, show_default=True, help="Adam iterations at most.")
@click.option("--lr", type=click.FloatRange(min=0.0, min_open=True), default=0.05, show_default=True,
              help="Adam step size, in image intensity units.")
@click.option("--samples", type=click.IntRange(min=1), default=4, show_default=True,
              help="Random initial states and fire masks averaged per iteration.")
@click.option("--eval-samples", type=click.IntRange(min=1), default=8, show_default=True,
              help="Held-out random draws for the verdict.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=0.9, show_default=True,
              help="Fraction of region pixels predicted as the target that counts as success.")
@click.option("--grey", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="Intensity that fills the region.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random draws.")
@_output_option("PNG path of the figure.  [default: IMAGE.adversarial.png next to the image]")
@_json_option
def adversarial(rule_path, image, region, mask_path, size_text, step, target, iterations, lr, samples,
                eval_samples, threshold, grey, seed, output, as_json):
    """Search for a perturbation confined to a greyed region that makes the rule predict an object there."""
    from analysis.adversarial import adversarial_rows, adversarial_search, parse_region, plot_adversarial, \
        write_adversarial_image
    from nca_train.data.images import load_images

    try:
        dataset = load_images(image, None if mask_path is None else mask_path, image_size=parse_size(size_text))
        if len(dataset) == 0:
            raise ValueError(f"{image} could not be decoded as an image")
        picture, label = dataset[0]
        region_mask = parse_region(region, picture.shape[:2], label=label if mask_path is not None else None)
        result = adversarial_search(rule_path, picture, region_mask, step=step, target_class=target,
                                    iterations=iterations, learning_rate=lr, samples=samples,
                                    eval_samples=eval_samples, threshold=threshold, grey=grey, seed=seed)
    except _INPUT_ERRORS as error:
        _fail("adversarial", error, as_json)
    output = output or image.parent / f"{image.stem}.adversarial.png"
    plot_adversarial(result, output)
    image_path = write_adversarial_image(result, output.with_name(output.stem + "-image.png"))
    notes = [f"adversarial image written to {image_path}"]
    _emit("adversarial", adversarial_rows(result), notes=notes, plot=output, as_json=as_json)


@analyze.command()
@click.argument("store", type=click.Path(path_type=Path))
@_output_option("Animation path.  [default: RUN.movie.gif next to the store]")
@click.option("--format", "movie_format", type=click.Choice(["gif", "mp4"]), default=None,
              help="Animation format; MP4 needs ffmpeg on PATH.  [default: from the -o suffix, else gif]")
@click.option("--fps", type=click.FloatRange(min=0.0, min_open=True), default=10.0, show_default=True,
              help="Frames per second.")
@click.option("--scale", type=click.IntRange(min=1), default=None,
              help="Screen pixels per image pixel.  [default: enough for panels of at least 128 pixels]")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Keep at most this many evenly spaced snapshots.")
@_json_option
def movie(store, output, movie_format, fps, scale, max_frames, as_json):
    """Animate the snapshots: input image, predicted classes and the state's first three principal components."""
    from analysis.movie import render_movie, write_movie
    from analysis.report import default_plot_path

    try:
        result = render_movie(store, scale=scale, max_frames=max_frames)
        if output is None:
            output = default_plot_path(store, "movie", suffix=f".{movie_format or 'gif'}")
        path = write_movie(result, output, fps=fps, format=movie_format)
    except _INPUT_ERRORS as error:
        _fail("movie", error, as_json)
    frames = result["frames"]
    rows = [{"frames": frames.sizes["frame"], "height": frames.sizes["height"], "width": frames.sizes["width"],
             "panels": ", ".join(result.attrs["panels"]),
             "first_step": int(result["snapshot_step"].values[0]),
             "last_step": int(result["snapshot_step"].values[-1])}]
    _emit("movie", rows, notes=result.attrs["notes"], plot=path, as_json=as_json)


@analyze.command()
@click.argument("stores", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--variable", default="state_l1", show_default=True,
              help="Per-step variable to compare, e.g. state_l1, logits_l1, mean_iou, reset_gate_mean.")
@_output_option("PNG path.  [default: compare-VARIABLE.png next to the first store]")
@click.option("--window-fraction", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.5, show_default=True,
              help="Fraction of the steps, counted from the end, that the growth fits use.")
@_json_option
def compare(stores, variable, output, window_fraction, as_json):
    """Plot one per-step series of several runs together, with a growth verdict per run."""
    from analysis.compare import compare_runs, plot_compare
    from analysis.report import rows_along

    try:
        result = compare_runs(stores, variable=variable, window_fraction=window_fraction)
    except _INPUT_ERRORS as error:
        _fail("compare", error, as_json)
    output = output or stores[0].parent / f"compare-{variable}.png"
    plot_compare(result, output)
    rows = rows_along(result, "run")
    for row in rows:
        if row.get("first_nonfinite_step") == -1:
            row["first_nonfinite_step"] = None
    _emit("compare", rows, notes=result.attrs["notes"], plot=output, as_json=as_json, variable=variable)
