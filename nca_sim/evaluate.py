"""Evaluation with the simulator: per-class IoU of a rule over a dataset split at chosen steps.

The Numba counterpart of :func:`nca_train.evaluate.evaluate_model`, for every
update schedule of :class:`nca_sim.engine.Simulator`. IoU is pooled over every
labelled pixel of every image, as :mod:`nca_sim.metrics` defines it.
"""

from __future__ import annotations

import itertools
import numbers
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from nca_sim.engine import Simulator
from nca_sim.metrics import IGNORE_LABEL, intersection_and_union, iou_from_counts, iou_report
from nca_sim.rule import Rule

DEFAULT_STEPS = (10, 20, 40, 80, 200, 1000)


def check_steps(steps: Iterable[int]) -> tuple[int, ...]:
    """Return ``steps`` sorted, after checking that they are distinct integers >= 1.

    Raises
    ------
    ValueError
        Naming the first invalid value: not an integer, below 1, or repeated.
    """
    checked = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise ValueError(f"step {step!r} is invalid: expected an integer >= 1 such as 10")
        if step < 1:
            raise ValueError(f"step {step!r} is invalid: expected an integer >= 1 (step 1 is after the first update)")
        if int(step) in checked:
            raise ValueError(f"step {int(step)} is listed twice: give each step once")
        checked.append(int(step))
    if not checked:
        raise ValueError("steps is empty: give at least one step, such as (10, 20, 40)")
    return tuple(sorted(checked))


@dataclass(frozen=True)
class EvaluationResult:
    """Pixel counts and IoU of one rule over a set of images, at each requested step.

    Attributes
    ----------
    steps
        Steps at which the prediction was read, ascending.
    class_names
        Class names in label order.
    intersection, union
        ``(len(steps), num_classes)`` int64 pixel counts, summed over all images.
    images
        Number of images evaluated.
    schedule, seed, threads, stats_interval
        The :class:`~nca_sim.engine.Simulator` settings; image ``i`` used seed ``seed + i``.
    update_probability
        Fire probability per step: the one used by ``"bernoulli"``, 1 for ``"sync"``,
        None for ``"async"`` and ``"clock"``, which update every cell about once a step.
    cell_updates
        Cell updates performed over all images and steps.
    nonfinite_images
        Images whose state held NaN or infinite values after the last step.
    wall_seconds
        Wall-clock time of the evaluation, including reading the images.
    """

    steps: tuple[int, ...]
    class_names: tuple[str, ...]
    intersection: np.ndarray
    union: np.ndarray
    images: int
    schedule: str
    seed: int
    threads: int
    stats_interval: int
    update_probability: float | None
    cell_updates: int
    nonfinite_images: int
    wall_seconds: float

    @property
    def iou(self) -> np.ndarray:
        """``(len(steps), num_classes)`` float64 IoU, NaN for a class absent from target and prediction."""
        return iou_from_counts(self.intersection, self.union)[0]

    @property
    def mean_iou(self) -> np.ndarray:
        """``(len(steps),)`` float64 mean IoU over the classes that are not NaN (NaN when none is)."""
        return np.asarray(iou_from_counts(self.intersection, self.union)[1], dtype=np.float64)

    def results(self) -> dict[int, dict]:
        """Return ``{step: {"per_class": {class name: IoU or None}, "mean": IoU or None}}``.

        The layout of :func:`nca_train.evaluate.evaluate_model`'s result, for :func:`format_table`.
        """
        return {
            step: iou_report(self.intersection[row], self.union[row], self.class_names)
            for row, step in enumerate(self.steps)
        }

    def to_dict(self) -> dict:
        """Return the settings, results and pixel counts as plain values for ``json.dumps`` (absent IoU is None)."""
        return {
            "schedule": self.schedule,
            "seed": self.seed,
            "threads": self.threads,
            "stats_interval": self.stats_interval,
            "update_probability": self.update_probability,
            "images": self.images,
            "class_names": list(self.class_names),
            "cell_updates": self.cell_updates,
            "nonfinite_images": self.nonfinite_images,
            "wall_seconds": self.wall_seconds,
            "results": {str(step): result for step, result in self.results().items()},
            "pixel_counts": {
                str(step): {"intersection": self.intersection[row].tolist(), "union": self.union[row].tolist()}
                for row, step in enumerate(self.steps)
            },
        }


def format_table(results: dict[int, dict] | EvaluationResult) -> str:
    """Return IoU results as a text table, one row per step; absent classes show '-'.

    ``results`` is an :class:`EvaluationResult` or the dict of
    :meth:`EvaluationResult.results`; the table reads like the PyTorch evaluation's.
    """
    if isinstance(results, EvaluationResult):
        results = results.results()
    class_names = list(next(iter(results.values()))["per_class"])
    header = ["step", *class_names, "mean"]
    rows = [header]
    for step, result in results.items():
        values = [*result["per_class"].values(), result["mean"]]
        rows.append([str(step), *("-" if value is None else f"{value:.3f}" for value in values)])
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows)


def _check_label(index: int, image: np.ndarray, label: np.ndarray, rule: Rule) -> np.ndarray:
    """Return ``label`` as int64 after checking its shape and values against ``image`` and the rule's classes."""
    label = np.asarray(label)
    if label.shape != image.shape[:2]:
        raise ValueError(
            f"label {index} has shape {label.shape}, but its image is {image.shape[:2]}: "
            "labels must be (height, width) at the image's resolution"
        )
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"label {index} has dtype {label.dtype}: expected integer class indices")
    num_classes = rule.architecture.num_classes
    invalid = label[(label != IGNORE_LABEL) & ((label < 0) | (label >= num_classes))]
    if invalid.size:
        raise ValueError(
            f"label {index} contains class {int(invalid[0])}, "
            f"but the rule has classes 0..{num_classes - 1} (and -1 for unknown pixels)"
        )
    return label.astype(np.int64, copy=False)


def _pairs(images, labels) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    if labels is None:
        return images
    if hasattr(images, "__len__") and hasattr(labels, "__len__") and len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels: give one label per image")
    return zip(images, labels, strict=True)


def evaluate_rule(
    rule: Rule,
    images: Iterable[np.ndarray] | Iterable[tuple[np.ndarray, np.ndarray]],
    labels: Iterable[np.ndarray] | None = None,
    *,
    steps: Iterable[int] = DEFAULT_STEPS,
    schedule: str = "bernoulli",
    seed: int = 0,
    threads: int = 1,
    update_probability: float | None = None,
    stats_interval: int = 1,
    limit: int | None = None,
    initial_states: Sequence[np.ndarray] | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> EvaluationResult:
    """Run ``rule`` on every image and return the pooled per-class IoU at each of ``steps``.

    Each image gets its own :class:`~nca_sim.engine.Simulator` with seed ``seed + i``
    (``i`` = the image's position), so an image's result does not depend on the
    images before it or on ``limit``. Its state starts from fresh N(0, 1) values, is
    stepped to ``max(steps)``, and the prediction is read after each requested step.

    Parameters
    ----------
    rule
        The rule to run.
    images
        ``(H, W, 3)`` float32 images in [0, 1], with ``labels``; or, when ``labels``
        is None, ``(image, label)`` pairs, such as a dataset of :mod:`nca_train.data`.
    labels
        ``(H, W)`` integer labels in ``0 .. num_classes - 1``, -1 for unknown
        pixels, at the image's resolution (also for high-resolution rules).
    steps
        Steps after which to read the prediction: distinct integers >= 1, sorted here.
    schedule, threads, update_probability, stats_interval
        As for :class:`~nca_sim.engine.Simulator`. ``update_probability`` is used
        only by ``"bernoulli"`` (default: the architecture's).
    seed
        Seed of image 0; image ``i`` uses ``seed + i``.
    limit
        Evaluate only the first ``limit`` images.
    initial_states
        Optional ``(h, w, d)`` start state per image in place of the random one,
        to compare schedules or implementations from the same start.
    progress
        Called after each image with (images done, total images or None when unknown).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ValueError
        On invalid steps, settings, images or labels, naming the value, and when
        there are no images.

    Notes
    -----
    With ``"batch"`` normalization each image's statistics come from that image
    alone, as in a PyTorch batch of one. The PyTorch evaluation pools them over a
    batch of images, so the two can differ for such rules.
    """
    steps = check_steps(steps)
    if update_probability is not None and schedule != "bernoulli":
        raise ValueError(
            f"update_probability={update_probability!r} is only used by schedule='bernoulli', not {schedule!r}: "
            "leave it unset"
        )
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or limit < 1):
        raise ValueError(f"limit={limit!r} is invalid: expected an integer >= 1, or None for every image")

    # Checks schedule, threads, update_probability and stats_interval before any image is read.
    settings = dict(schedule=schedule, threads=threads, update_probability=update_probability,
                    stats_interval=stats_interval)
    probe = Simulator(rule, seed=seed, **settings)
    effective_probability = probe.update_probability if schedule in ("sync", "bernoulli") else None

    pairs = _pairs(images, labels)
    total = len(images) if hasattr(images, "__len__") else None
    if total is not None and limit is not None:
        total = min(total, int(limit))
    if limit is not None:
        pairs = itertools.islice(pairs, int(limit))

    num_classes = rule.architecture.num_classes
    intersection = np.zeros((len(steps), num_classes), dtype=np.int64)
    union = np.zeros((len(steps), num_classes), dtype=np.int64)
    cell_updates = 0
    nonfinite_images = 0
    count = 0
    start = time.perf_counter()
    for index, (image, label) in enumerate(pairs):
        image = np.asarray(image)
        label = _check_label(index, image, label, rule)
        # A fresh simulator per image restarts the step count and the clock schedule's
        # event times; Numba compiles the kernels once per process, not per simulator.
        simulator = Simulator(rule, seed=seed + index, **settings)
        # The first set_image of a simulator also draws the N(0, 1) start state.
        simulator.set_image(image)
        if initial_states is not None:
            if index >= len(initial_states):
                raise ValueError(f"initial_states has {len(initial_states)} states, but image {index} needs one")
            simulator.state = initial_states[index]

        row = 0
        for step in range(1, steps[-1] + 1):
            info = simulator.step()
            cell_updates += info.updates
            if step == steps[row]:
                counts = intersection_and_union(simulator.predict(), label, num_classes)
                intersection[row] += counts[0]
                union[row] += counts[1]
                row += 1
        nonfinite_images += info.nonfinite > 0
        count += 1
        if progress is not None:
            progress(count, total)
    wall_seconds = time.perf_counter() - start
    if count == 0:
        raise ValueError("no images to evaluate: check the data folder, the split and limit")

    return EvaluationResult(
        steps=steps,
        class_names=tuple(rule.architecture.class_names),
        intersection=intersection,
        union=union,
        images=count,
        schedule=schedule,
        seed=int(seed),
        threads=int(threads),
        stats_interval=int(stats_interval),
        update_probability=effective_probability,
        cell_updates=int(cell_updates),
        nonfinite_images=int(nonfinite_images),
        wall_seconds=wall_seconds,
    )
