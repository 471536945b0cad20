"""The run loop: step a rule on a changing input and record the trajectory.

:func:`run_simulation` ties the :class:`~nca_sim.engine.Simulator`, an
:class:`~nca_sim.inputs.InputSequence` and a :class:`~nca_sim.recorder.Recorder`.
Step 0 records the initial N(0, 1) state; step t records the colony after t
steps. The statistics of every step are computed here from the simulator's
state and logits (see :mod:`nca_sim.schema` for their definitions).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nca_sim.engine import Simulator, StepInfo
from nca_sim.inputs import InputPosition, InputSequence
from nca_sim.metrics import mean_abs, mean_abs_change, segmentation_iou
from nca_sim.recorder import DEFAULT_BUFFER_STEPS, Recorder, StoreLayout
from nca_sim.rule import Rule
from nca_sim.store import StoreError

# Salt of the generator that draws per-cell clock rates, apart from the simulator's streams.
_CLOCK_RATE_STREAM = 0xC10C


@dataclass(frozen=True)
class SimulationSettings:
    """The settings of a run that the store records, so that a resumed run uses them again.

    Parameters
    ----------
    steps
        Steps to run after the initial state.
    schedule
        ``"sync"``, ``"bernoulli"``, ``"async"`` or ``"clock"``; see
        :class:`~nca_sim.engine.Simulator`.
    seed
        Seed of the simulator's random streams (and of the clock rates).
    threads
        Numba threads; the asynchronous schedules' trajectories depend on it.
    update_probability
        Fire probability of ``"bernoulli"``; None takes the rule's.
    stats_interval
        Steps between refreshes of batch/instance normalization statistics.
    snapshot_every
        Steps between snapshots of the class map (and of the state).
    record_state
        Also store the full state at every snapshot.
    clock_rates
        Per-cell rates of the ``"clock"`` schedule: ``"constant:R"`` or
        ``"uniform:LOW,HIGH"`` (updates per unit time), or None for rate 1.
    """

    steps: int
    schedule: str = "bernoulli"
    seed: int = 0
    threads: int = 1
    update_probability: float | None = None
    stats_interval: int = 1
    snapshot_every: int = 10
    record_state: bool = False
    clock_rates: str | None = None

    def __post_init__(self):
        for name, minimum in (("steps", 0), ("snapshot_every", 1), ("stats_interval", 1), ("threads", 1)):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")
        if self.clock_rates is not None:
            if self.schedule != "clock":
                raise ValueError(f"clock rates are only used by schedule 'clock', not {self.schedule!r}")
            parse_clock_rates(self.clock_rates)


@dataclass(frozen=True)
class RunSummary:
    """Summary of one call of :func:`run_simulation`."""

    path: Path
    steps_requested: int
    steps_done: int
    first_step: int
    """The step the call started from: 0 for a new run, the stored ``steps_done`` for a resumed one."""
    complete: bool
    wall_seconds: float
    cell_updates: int
    final_iou: list[float] | None
    final_mean_iou: float | None

    @property
    def steps_run(self) -> int:
        return self.steps_done - self.first_step

    @property
    def updates_per_second(self) -> float:
        return self.cell_updates / self.wall_seconds if self.wall_seconds > 0 else math.nan


def parse_clock_rates(spec: str) -> tuple[str, tuple[float, ...]]:
    """Parse ``"constant:R"`` or ``"uniform:LOW,HIGH"`` into ``(kind, parameters)``."""
    kind, _, values = str(spec).partition(":")
    try:
        parameters = tuple(float(value) for value in values.split(","))
    except ValueError:
        parameters = ()
    valid = (kind == "constant" and len(parameters) == 1) or (kind == "uniform" and len(parameters) == 2)
    if valid:
        valid = all(math.isfinite(value) and value > 0 for value in parameters)
    if valid and kind == "uniform":
        valid = parameters[0] <= parameters[1]
    if not valid:
        raise ValueError(
            f"clock rates {spec!r} are invalid: expected 'constant:R' or 'uniform:LOW,HIGH' "
            "with finite rates > 0 and LOW <= HIGH, e.g. 'uniform:0.5,1.5'"
        )
    return kind, parameters


def clock_rate_grid(spec: str, grid_shape: tuple[int, int], seed: int) -> np.ndarray:
    """Return the ``(h, w)`` float64 clock rates that ``spec`` describes, drawn reproducibly from ``seed``."""
    kind, parameters = parse_clock_rates(spec)
    if kind == "constant":
        return np.full(grid_shape, parameters[0], dtype=np.float64)
    generator = np.random.default_rng([int(seed), _CLOCK_RATE_STREAM])
    return generator.uniform(parameters[0], parameters[1], size=grid_shape)


def run_simulation(
    path: str | os.PathLike,
    rule: Rule,
    inputs: InputSequence | None = None,
    settings: SimulationSettings | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    input_description: str = "",
    stop_at: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    buffer_steps: int = DEFAULT_BUFFER_STEPS,
) -> RunSummary:
    """Simulate ``rule`` on ``inputs`` and record the trajectory at ``path``.

    Parameters
    ----------
    path
        The store (``RUN.zarr``). A new run requires that it does not exist, unless
        ``overwrite``.
    rule
        The rule to run. A resumed run requires the rule the store was recorded
        with (same weight hash).
    inputs, settings
        Required for a new run; for ``resume`` leave them None, because the store
        contains the images, labels and settings.
    resume
        Continue the run in ``path`` from its last committed step.
    overwrite
        Replace an existing trajectory store at ``path`` once the new run's first
        step is written.
    input_description
        Where the images came from, for the store's ``input`` attribute.
    stop_at
        Stop after this step (flushed, store left incomplete and resumable);
        None runs to the end.
    progress
        Called after every step with ``(step, steps_requested)``.
    buffer_steps
        Steps buffered in memory between two writes.

    Returns
    -------
    RunSummary

    Raises
    ------
    StoreError
        The store exists (new run), is missing, locked, complete, or was recorded
        with another rule (resume).
    ValueError
        Inputs or settings that do not fit the rule.
    """
    if resume:
        if inputs is not None or settings is not None:
            raise ValueError("a resumed run takes its inputs and settings from the store: pass neither")
        recorder = Recorder.open(path, buffer_steps=buffer_steps)
    else:
        if inputs is None or settings is None:
            raise ValueError("a new run needs inputs and settings")
        recorder = None
    with _ClosingRecorder(recorder) as holder:
        if resume:
            simulator, inputs, settings = _prepare_resume(holder.recorder, rule)
        else:
            simulator = _new_simulator(rule, inputs, settings)
            holder.recorder = _create_recorder(path, rule, inputs, settings, simulator, overwrite,
                                               input_description, buffer_steps)
        return _run_loop(simulator, inputs, settings, holder.recorder, rule, stop_at, progress)


class _ClosingRecorder:
    """Close whichever recorder the body ends up holding, also on errors."""

    def __init__(self, recorder: Recorder | None):
        self.recorder = recorder

    def __enter__(self) -> "_ClosingRecorder":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.recorder is not None:
            self.recorder.close()


def _new_simulator(rule: Rule, inputs: InputSequence, settings: SimulationSettings) -> Simulator:
    arch = rule.architecture
    if inputs.labels is not None and inputs.labels.max() >= arch.num_classes:
        raise ValueError(
            f"labels contain class {int(inputs.labels.max())}, but the rule has {arch.num_classes} classes "
            f"({', '.join(arch.class_names)})"
        )
    image_height, image_width = inputs.image_shape
    if arch.highres and (image_height % 2 or image_width % 2):
        raise ValueError(
            f"image size {image_height}x{image_width} is invalid for a high-resolution rule: "
            "pass an even height and width"
        )
    grid_shape = (image_height // arch.upscale, image_width // arch.upscale)
    clock_rates = None
    if settings.clock_rates is not None:
        clock_rates = clock_rate_grid(settings.clock_rates, grid_shape, settings.seed)
    return Simulator(
        rule,
        schedule=settings.schedule,
        seed=settings.seed,
        threads=settings.threads,
        update_probability=settings.update_probability,
        stats_interval=settings.stats_interval,
        clock_rates=clock_rates,
    )


def _create_recorder(path, rule, inputs, settings, simulator, overwrite, input_description, buffer_steps):
    arch = rule.architecture
    image_height, image_width = inputs.image_shape
    layout = StoreLayout(
        steps=int(settings.steps),
        snapshot_every=int(settings.snapshot_every),
        grid_shape=(image_height // arch.upscale, image_width // arch.upscale),
        image_shape=inputs.image_shape,
        state_channels=arch.state_channels,
        class_names=arch.class_names,
        image_count=inputs.count,
        labels=inputs.labels is not None,
        reset_gate=arch.reset_gate,
        record_state=bool(settings.record_state),
    )
    attrs = {
        "schedule": settings.schedule,
        "seed": int(settings.seed),
        "update_probability": float(simulator.update_probability),
        "threads": int(settings.threads),
        "stats_interval": int(settings.stats_interval),
        "shift_every": inputs.shift_every,
        "change": inputs.change,
        "max_shift": inputs.max_shift,
        "shift_fill_color": list(inputs.fill_color),
        "clock_rates": settings.clock_rates,
        "input": str(input_description),
    }
    return Recorder.create(path, layout, rule=rule, images=inputs.images, labels=inputs.labels, attrs=attrs,
                           overwrite=overwrite, buffer_steps=buffer_steps)


def _prepare_resume(recorder: Recorder, rule: Rule) -> tuple[Simulator, InputSequence, SimulationSettings]:
    """Rebuild the simulator, inputs and settings of a stored run, at its last committed step."""
    attrs = recorder.attrs

    if attrs["rule_sha256"] != rule.weights_sha256():
        raise StoreError(
            f"store {str(recorder.path)!r} was recorded with the rule of weight hash {attrs['rule_sha256'][:12]}..., "
            f"but the given rule has {rule.weights_sha256()[:12]}...: pass the rule file the run started with"
        )
    if recorder.complete:
        raise StoreError(
            f"store {str(recorder.path)!r} is complete ({recorder.steps_done} steps), so there is nothing to resume"
        )
    settings = SimulationSettings(
        steps=int(attrs["steps_requested"]),
        schedule=attrs["schedule"],
        seed=int(attrs["seed"]),
        threads=int(attrs["threads"]),
        update_probability=float(attrs["update_probability"]),
        stats_interval=int(attrs.get("stats_interval", 1)),
        snapshot_every=int(attrs["snapshot_every"]),
        record_state=recorder.layout.record_state,
        clock_rates=attrs.get("clock_rates"),
    )

    images, labels = recorder.read_inputs()
    inputs = InputSequence(
        images,
        labels,
        shift_every=int(attrs["shift_every"]),
        change=attrs["change"],
        max_shift=int(attrs.get("max_shift", 0)),
        seed=int(attrs["seed"]),
        fill_color=tuple(attrs.get("shift_fill_color", (0.0, 0.0, 0.0))),
    )

    simulator = _new_simulator(rule, inputs, settings)
    resume_state = recorder.read_resume_state()
    image, _ = inputs.render(inputs.position(recorder.steps_done))
    simulator.set_image(image)
    simulator.set_resume_state(resume_state["simulator"])
    return simulator, inputs, settings


@dataclass
class _Previous:
    """The state, logits and classes of the step before, for the change statistics."""

    state: np.ndarray
    logits: np.ndarray
    classes: np.ndarray


def _record_step(
    recorder: Recorder, simulator: Simulator, step: int, info: StepInfo, position: InputPosition,
    label: np.ndarray | None, previous: _Previous | None, num_classes: int,
) -> tuple[_Previous, dict]:
    """Compute the statistics of ``step`` from the simulator and append them to the recorder."""
    state = simulator.state
    logits = simulator.logits()
    classes = np.argmax(logits, axis=-1).astype(np.int8)
    values = {
        "state_l1": mean_abs(state),
        "logits_l1": mean_abs(logits),
        "updates": info.updates,
        "nonfinite_count": info.nonfinite,
        "image_index": position.image_index,
        "shift_y": position.shift_y,
        "shift_x": position.shift_x,
    }
    if recorder.layout.reset_gate:
        values["reset_gate_mean"] = info.reset_gate_mean
    if previous is not None:
        values["state_change_l1"] = mean_abs_change(state, previous.state)
        values["logits_change_l1"] = mean_abs_change(logits, previous.logits)
        values["class_change_fraction"] = float(np.mean(classes != previous.classes))
    if label is not None:
        values["iou"], values["mean_iou"] = segmentation_iou(classes, label, num_classes)
    recorder.append(step, values, classes=classes, state=state)
    # The asynchronous schedules update the state array in place, so keep a copy,
    # reusing the buffer of the step before to keep allocations flat.
    if previous is None:
        previous = _Previous(state.copy(), logits, classes)
    else:
        np.copyto(previous.state, state)
        previous.logits, previous.classes = logits, classes
    return previous, values


def _run_loop(simulator, inputs, settings, recorder, rule, stop_at, progress) -> RunSummary:
    num_classes = rule.architecture.num_classes
    last_step = settings.steps if stop_at is None else min(int(stop_at), settings.steps)
    first_step = recorder.next_step - 1 if recorder.next_step > 0 else 0
    start = time.perf_counter()
    cell_updates = 0

    if recorder.next_step == 0:
        position = inputs.position(0)
        image, label = inputs.render(position)
        simulator.set_image(image)  # the first image fixes the grid and draws the N(0, 1) state
        initial = StepInfo(updates=0, reset_gate_mean=math.nan,
                           nonfinite=int(np.count_nonzero(~np.isfinite(simulator.state))))
        previous, values = _record_step(recorder, simulator, 0, initial, position, label, None, num_classes)
        recorder.flush(simulator.get_resume_state())  # a store at the target path always has step 0
    else:
        position = inputs.position(recorder.steps_done)
        _, label = inputs.render(position)
        logits = simulator.logits()
        previous = _Previous(simulator.state.copy(), logits, np.argmax(logits, axis=-1).astype(np.int8))
        values = {}

    # NOTE: an interrupt or kill loses the steps buffered since the last flush (at most
    # buffer_steps, or flush_seconds of work), because a step cut short leaves no
    # consistent simulator state to save.
    for step in range(recorder.next_step, last_step + 1):
        next_position = inputs.position(step)
        if next_position != position:
            position = next_position
            image, label = inputs.render(position)
            simulator.set_image(image)
        info = simulator.step()
        cell_updates += info.updates
        previous, values = _record_step(recorder, simulator, step, info, position, label, previous, num_classes)
        if recorder.needs_flush:
            recorder.flush(simulator.get_resume_state())
        if progress is not None:
            progress(step, settings.steps)
    recorder.flush(simulator.get_resume_state())
    wall_seconds = time.perf_counter() - start

    final_iou = final_mean_iou = None
    if "iou" in values:
        final_iou = [float(value) for value in values["iou"]]
        final_mean_iou = float(values["mean_iou"])
    return RunSummary(
        path=recorder.path,
        steps_requested=settings.steps,
        steps_done=recorder.steps_done,
        first_step=first_step,
        complete=recorder.complete,
        wall_seconds=wall_seconds,
        cell_updates=cell_updates,
        final_iou=final_iou,
        final_mean_iou=final_mean_iou,
    )
