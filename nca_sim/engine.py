"""The simulator: runs a learned rule on one image under a chosen update schedule.

docs/simulator.md describes the schedules, threads, reproducibility and the
normalization statistics in full.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numba
import numpy as np

from nca_sim import kernels, schedules
from nca_sim.numba_config import max_threads
from nca_sim.random import fill_rows_normal, seed_streams
from nca_sim.rule import Rule

RESUME_FORMAT_VERSION = 1


@dataclass
class StepInfo:
    """Summary of one :meth:`Simulator.step`."""

    updates: int
    """Cell updates performed in this step."""
    reset_gate_mean: float
    """Mean reset-gate activation over this step's updates (NaN without a gate or without updates)."""
    nonfinite: int
    """Number of NaN or infinite state values after the step."""


def _encode_array(array: np.ndarray) -> dict:
    array = np.ascontiguousarray(array)
    return {
        "dtype": array.dtype.str,
        "shape": list(array.shape),
        "base64": base64.b64encode(array.tobytes()).decode("ascii"),
    }


def _decode_array(data: dict) -> np.ndarray:
    raw = base64.b64decode(data["base64"])
    return np.frombuffer(raw, dtype=np.dtype(data["dtype"])).reshape(data["shape"]).copy()


class Simulator:
    """Run a rule's cellular automaton on one image, cell by cell, in Numba.

    Parameters
    ----------
    rule
        The learned rule (weights and architecture).
    schedule
        ``"sync"``: every cell updates from the same snapshot.
        ``"bernoulli"``: like sync, but each cell fires with probability ``update_probability``.
        ``"async"``: random-sequential and in place, one update per cell per step.
        ``"clock"``: one Poisson clock per cell, and a step advances time by 1.
    seed
        Seed of every random stream (initial state, fire draws, reset noise, clocks).
    threads
        Threads of a step. The asynchronous schedules split the grid into this
        many bands of rows, one per thread, which changes their trajectory.
    update_probability
        Fire probability of ``"bernoulli"``; defaults to the architecture's.
    stats_interval
        Steps between refreshes of the batch and instance normalization
        statistics from the live grid (1: every step, as in PyTorch).
    clock_rates
        ``(h, w)`` positive rates of the ``"clock"`` schedule, in updates per unit
        time; default 1 for every cell.

    Attributes
    ----------
    state
        ``(h, w, d)`` float32 C-contiguous state grid; assigning copies the value.
    step_count
        Steps done since construction (or since the resumed run's start).
    """

    def __init__(
        self,
        rule: Rule,
        *,
        schedule: str = "bernoulli",
        seed: int = 0,
        threads: int = 1,
        update_probability: float | None = None,
        stats_interval: int = 1,
        clock_rates: np.ndarray | None = None,
    ):
        if schedule not in schedules.SCHEDULES:
            raise ValueError(f"schedule={schedule!r} is not supported: expected one of {', '.join(schedules.SCHEDULES)}")
        limit = max_threads()
        if not isinstance(threads, (int, np.integer)) or not 1 <= threads <= limit:
            raise ValueError(
                f"threads={threads!r} is invalid: expected an integer from 1 to {limit} "
                "(raise the limit with the NUMBA_NUM_THREADS environment variable)"
            )
        if update_probability is None:
            update_probability = rule.architecture.update_probability
        if not 0.0 < float(update_probability) <= 1.0:
            raise ValueError(f"update_probability={update_probability!r} is invalid: expected 0 < p <= 1")
        if not isinstance(stats_interval, (int, np.integer)) or stats_interval < 1:
            raise ValueError(f"stats_interval={stats_interval!r} is invalid: expected an integer >= 1")
        if clock_rates is not None:
            clock_rates = np.asarray(clock_rates, dtype=np.float64)
            if clock_rates.ndim != 2 or not np.all(np.isfinite(clock_rates)) or not np.all(clock_rates > 0):
                raise ValueError(
                    f"clock_rates is invalid (shape {clock_rates.shape}): expected a 2-D array of finite rates > 0"
                )
            if schedule != "clock":
                raise ValueError(f"clock_rates is only used by schedule='clock', not {schedule!r}")

        arch = rule.architecture
        self.rule = rule
        self.schedule = schedule
        self.seed = int(seed)
        self.threads = int(threads)
        self.update_probability = 1.0 if schedule == "sync" else float(update_probability)
        self.stats_interval = int(stats_interval)
        self.step_count = 0

        self._weights = kernels.pack_weights(rule)
        self._config = kernels.config_array(rule)
        self._eps = np.float32(arch.norm_eps)
        self._batch_stats = arch.normalization in ("batch", "instance")
        d = arch.state_channels
        self._shift = np.zeros(d, np.float32)
        self._depthwise = arch.perception == "depthwise"
        # Depthwise rules: each cell's pointwise-layer output, (h, w, hidden); see kernels.pointwise_grid.
        self._pointwise: np.ndarray | None = None
        self._scale = np.ones(d, np.float32)
        self._clock_rates_request = clock_rates

        self.height = self.width = 0
        self.image_height = self.image_width = 0
        self._state: np.ndarray | None = None
        self._term: np.ndarray | None = None
        self._streams: np.ndarray | None = None
        self._next_time: np.ndarray | None = None
        self._rates: np.ndarray | None = None
        self._heap: np.ndarray | None = None
        self._heap_layout: tuple | None = None

    # -- grid and state --------------------------------------------------------------------

    def set_image(self, image: np.ndarray) -> None:
        """Set the image that the cells read, ``(H, W, 3)`` float32 in [0, 1].

        The first call fixes the state grid: ``(H, W)`` for plain rules, ``(H / 2, W / 2)``
        for high-resolution rules (which need even ``H`` and ``W``). Later images
        must have the same size. The per-cell input is computed here once.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
            raise ValueError(f"image has shape {image.shape}: expected (height, width, 3)")
        image = np.ascontiguousarray(image, dtype=np.float32)
        if not np.all((image >= 0.0) & (image <= 1.0)):
            raise ValueError(
                f"image values span [{np.nanmin(image)}, {np.nanmax(image)}] or include NaN: expected floats in "
                "[0, 1] (divide 8-bit images by 255)"
            )
        arch = self.rule.architecture
        image_height, image_width = image.shape[:2]
        if self._term is not None and (image_height, image_width) != (self.image_height, self.image_width):
            raise ValueError(
                f"image size {image_height}x{image_width} differs from the simulator's "
                f"{self.image_height}x{self.image_width}: resize the image or create a new Simulator"
            )
        if arch.highres and (image_height % 2 or image_width % 2):
            raise ValueError(
                f"image size {image_height}x{image_width} is invalid for a high-resolution rule: "
                "height and width must be even (crop one row or column)"
            )
        cell_input = kernels.encode_image(self.rule, image)
        term = kernels.input_term(self.rule, cell_input)
        if self._state is None:
            height, width = cell_input.shape[:2]
            self._rates = self._clock_rates_for(height, width)
            self.image_height, self.image_width = image_height, image_width
            self.height, self.width = height, width
            self._streams = seed_streams(self.seed, height)
            self.reset_state()
        self._term = term

    def _clock_rates_for(self, height: int, width: int) -> np.ndarray | None:
        """Return the flat float64 clock rates for a ``height`` x ``width`` grid (None unless ``clock``)."""
        if self.schedule != "clock":
            return None
        if self._clock_rates_request is None:
            return np.ones(height * width, np.float64)
        if self._clock_rates_request.shape != (height, width):
            raise ValueError(
                f"clock_rates has shape {self._clock_rates_request.shape}, but the state grid is "
                f"{height}x{width}: pass one rate per cell"
            )
        return np.ascontiguousarray(self._clock_rates_request.reshape(-1))

    def _require_image(self) -> None:
        if self._state is None:
            raise RuntimeError("no image set: call set_image(image) first")

    @property
    def state(self) -> np.ndarray:
        self._require_image()
        return self._state

    @state.setter
    def state(self, value: np.ndarray) -> None:
        self._require_image()
        value = np.asarray(value)
        expected = (self.height, self.width, self.rule.architecture.state_channels)
        if value.shape != expected:
            raise ValueError(f"state has shape {value.shape}, expected {expected}")
        self._state = np.array(value, dtype=np.float32, order="C", copy=True)

    def reset_state(self) -> None:
        """Replace the state with fresh N(0, 1) values from the simulator's random streams."""
        if self._streams is None:
            raise RuntimeError("no image set: call set_image(image) first")
        d = self.rule.architecture.state_channels
        state = np.empty((self.height, self.width, d), np.float32)
        fill_rows_normal(self._streams, state)
        self._state = state

    # -- stepping ------------------------------------------------------------------------

    def step(self, *, noise: np.ndarray | None = None) -> StepInfo:
        """Run one step of the schedule.

        Parameters
        ----------
        noise
            Optional ``(h, w, d)`` float32 reset-gate noise ``z``; every update of
            cell (i, j) in this step uses ``noise[i, j]``. Drawn from the random
            streams when omitted.
        """
        self._require_image()
        d = self.rule.architecture.state_channels
        if noise is None:
            use_noise = False
            noise = np.zeros((1, 1, d), np.float32)
        else:
            noise = np.ascontiguousarray(noise, dtype=np.float32)
            if noise.shape != self._state.shape:
                raise ValueError(f"noise has shape {noise.shape}, expected the state's {self._state.shape}")
            use_noise = True
        if self._batch_stats and self.step_count % self.stats_interval == 0:
            kernels.channel_statistics(self._state, self._eps, self._shift, self._scale)

        numba.set_num_threads(self.threads)
        weights = tuple(self._weights)
        if self._pointwise is None:
            hidden = self.rule.architecture.hidden_channels
            shape = (self.height, self.width, hidden) if self._depthwise else (1, 1, hidden)
            self._pointwise = np.zeros(shape, np.float32)
        if self._depthwise:
            # Refreshed every step, since the state, the image or the statistics
            # may have changed since the last one; in-place updates keep it exact.
            kernels.pointwise_grid(
                self._state, self._config, self._eps, self._shift, self._scale, self._term, weights, self._pointwise
            )
        common = (self._config, self._eps, self._shift, self._scale, self._term, self._pointwise, weights)
        if self.schedule in ("sync", "bernoulli"):
            updates = np.zeros(self.height, np.int64)
            gate_sums = np.zeros(self.height, np.float64)
            new_state = np.empty_like(self._state)
            schedules.synchronous_step(
                self._state, new_state, self.update_probability, *common, self._streams, noise, use_noise,
                updates, gate_sums,
            )
            self._state = new_state
        else:
            bands = schedules.band_rows(self.height, self.threads)
            updates = np.zeros(len(bands) - 1, np.int64)
            gate_sums = np.zeros(len(bands) - 1, np.float64)
            if self.schedule == "async":
                schedules.asynchronous_step(
                    self._state, bands, schedules.TILE, *common, self._streams, noise, use_noise, updates,
                    gate_sums,
                )
            else:
                self._prepare_clock(bands)
                end_time = float(self.step_count + 1)
                schedules.clock_step(
                    self._state, bands, schedules.TILE, end_time, self._next_time, self._rates, self._heap,
                    *common, self._streams, noise, use_noise, updates, gate_sums,
                )
        self.step_count += 1

        total = int(updates.sum())
        if self.rule.architecture.reset_gate and total > 0:
            gate_mean = float(gate_sums.sum() / (total * d))
        else:
            gate_mean = math.nan
        return StepInfo(total, gate_mean, int(kernels.count_nonfinite(self._state)))

    def _prepare_clock(self, bands: np.ndarray) -> None:
        if self._next_time is None:
            self._next_time = np.empty(self.height * self.width, np.float64)
            schedules.draw_clock_times(float(self.step_count), self._rates, self._streams, self.width, self._next_time)
            self._heap = None
        layout = (tuple(bands), schedules.TILE)
        if self._heap is None or self._heap_layout != layout:
            self._heap = np.empty(self.height * self.width, np.int64)
            schedules.build_heaps(bands, self.width, schedules.TILE, self._next_time, self._heap)
            self._heap_layout = layout

    # -- readout -------------------------------------------------------------------------

    def logits(self) -> np.ndarray:
        """Return class logits ``(H_out, W_out, classes)`` float32, at image resolution for high-resolution rules."""
        self._require_image()
        return kernels.logits(self.rule, self._state)

    def predict(self) -> np.ndarray:
        """Return the predicted class per pixel, ``(H_out, W_out)`` int8 (argmax of the logits)."""
        return np.argmax(self.logits(), axis=-1).astype(np.int8)

    # -- resume --------------------------------------------------------------------------

    def get_resume_state(self) -> dict:
        """Return everything needed to continue this run identically.

        Every value is JSON-serializable except ``"state"``, the ``(h, w, d)``
        float32 state array. Other arrays (random streams, clock times,
        normalization statistics) are stored as base64 text. The image is not
        included: call :meth:`set_image` with the same image before resuming.
        """
        self._require_image()
        data = {
            "format_version": RESUME_FORMAT_VERSION,
            "schedule": self.schedule,
            "seed": self.seed,
            "threads": self.threads,
            "step_count": self.step_count,
            "height": self.height,
            "width": self.width,
            "streams": _encode_array(self._streams),
            "norm_shift": _encode_array(self._shift),
            "norm_scale": _encode_array(self._scale),
            "clock_next_time": None if self._next_time is None else _encode_array(self._next_time),
            "state": self._state.copy(),
        }
        return data

    def set_resume_state(self, data: dict) -> None:
        """Restore a dict from :meth:`get_resume_state`; call :meth:`set_image` first."""
        self._require_image()
        if data.get("format_version") != RESUME_FORMAT_VERSION:
            raise ValueError(
                f"resume state has format_version {data.get('format_version')!r}, expected {RESUME_FORMAT_VERSION}"
            )
        if data["schedule"] != self.schedule:
            raise ValueError(
                f"resume state is for schedule {data['schedule']!r}, but this simulator runs {self.schedule!r}"
            )
        if (data["height"], data["width"]) != (self.height, self.width):
            raise ValueError(
                f"resume state is for a {data['height']}x{data['width']} grid, "
                f"but this simulator's grid is {self.height}x{self.width}"
            )
        self.state = data["state"]
        self.step_count = int(data["step_count"])
        self._streams = _decode_array(data["streams"])
        self._shift = _decode_array(data["norm_shift"])
        self._scale = _decode_array(data["norm_scale"])
        if data["clock_next_time"] is None:
            self._next_time = None
        else:
            self._next_time = _decode_array(data["clock_next_time"])
        self._heap = None

