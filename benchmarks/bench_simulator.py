"""Cell updates per second: the PyTorch synchronous step against each simulator schedule.

Runs, in one process and on the same rule and grid, the PyTorch ``SegmentationNCA.step``
(batch 1, every cell fires, ``torch.inference_mode``, warmed up) with 2 and 1
intra-op threads, and each :class:`nca_sim.engine.Simulator` schedule with 2 and
1 threads. The whole set is measured ``--runs`` times, interleaved, so that every
run compares PyTorch and the simulator under the same load. Prints a Markdown
table of cell updates per second and the ratios to PyTorch with 2 and 1 threads.

Rules (random weights, update layer scaled down so that long runs stay finite,
because NaN arithmetic would distort the timings):

- ``default``: ``Architecture()``, 48 state, 64 hidden, 4 layers, full perception.
- ``depthwise``: ``Architecture(state_channels=24, hidden_channels=64, num_layers=3,
  perception="depthwise")``.

    NUMBA_NUM_THREADS=2 python benchmarks/bench_simulator.py --sizes 64 256 1024
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numba
import numpy as np
import torch

from nca_sim.engine import Simulator
from nca_sim.rule import Architecture, multiply_adds_per_cell
from nca_train.model import SegmentationNCA

SCHEDULES = ("sync", "bernoulli", "async", "clock")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


RULES = {
    "default": Architecture(),
    "depthwise": Architecture(state_channels=24, hidden_channels=64, num_layers=3, perception="depthwise"),
}


def make_model(arch: Architecture, seed: int = 0) -> SegmentationNCA:
    torch.manual_seed(seed)
    model = SegmentationNCA(arch).eval()
    with torch.no_grad():
        model.update.weight.mul_(0.3)
        model.update.bias.mul_(0.3)
    return model


def steps_for(size: int, seconds: float) -> int:
    """Return a step count that takes roughly ``seconds`` at about 1e6 cell updates per second."""
    return max(1, int(seconds * 1e6 / (size * size)))


def time_torch(model, image: np.ndarray, steps: int, threads: int) -> float:
    """Return PyTorch cell updates per second for synchronous steps."""
    torch.set_num_threads(threads)
    with torch.inference_mode():
        cell_input = model.encode_image(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())
        state = model.initial_state(1, image.shape[0], image.shape[1])
        for _ in range(3):  # warm-up: the first steps allocate and pick kernels
            state, _ = model.step(state, cell_input, update_probability=1.0)
        start = time.perf_counter()
        for _ in range(steps):
            state, _ = model.step(state, cell_input, update_probability=1.0)
        elapsed = time.perf_counter() - start
    return steps * image.shape[0] * image.shape[1] / elapsed


def time_simulator(rule, image: np.ndarray, schedule: str, steps: int, threads: int) -> float:
    """Return simulator cell updates per second (updates actually performed, over wall time)."""
    simulator = Simulator(rule, schedule=schedule, threads=threads, seed=1)
    simulator.set_image(image)
    simulator.step()  # compiles or loads the cached kernels
    updates = 0
    start = time.perf_counter()
    for _ in range(steps):
        updates += simulator.step().updates
    elapsed = time.perf_counter() - start
    return updates / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024], help="grid side lengths, in cells")
    parser.add_argument("--rules", nargs="+", default=list(RULES), choices=list(RULES), help="rules to measure")
    parser.add_argument("--seconds", type=float, default=2.0, help="target duration of each timing, in seconds")
    parser.add_argument("--runs", type=int, default=2, help="repetitions of every timing, interleaved")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="simulator thread counts")
    parser.add_argument("--schedules", nargs="+", default=list(SCHEDULES), choices=SCHEDULES)
    args = parser.parse_args()

    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores visible")
    print(
        f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__} "
        f"({numba.config.THREADING_LAYER} threading layer), PyTorch {torch.__version__}, "
        f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}"
    )
    for name in args.rules:
        arch = RULES[name]
        print(
            f"Rule {name}: {arch.state_channels} state, {arch.hidden_channels} hidden, {arch.num_layers} layers, "
            f"{arch.perception} perception, {multiply_adds_per_cell(arch):,} multiply-adds per cell"
        )
    runs = range(1, args.runs + 1)
    print()
    print(
        "| rule | grid | steps | runner | threads | "
        + " | ".join(f"updates/s, run {r}" for r in runs)
        + " | "
        + " | ".join(f"ratio to PyTorch 2 threads, run {r}" for r in runs)
        + " | "
        + " | ".join(f"ratio to PyTorch 1 thread, run {r}" for r in runs)
        + " |"
    )
    print("|---" * (5 + 3 * args.runs) + "|")
    for name in args.rules:
        model = make_model(RULES[name])
        rule = model.to_rule()
        for size in args.sizes:
            image = np.random.default_rng(size).random((size, size, 3), dtype=np.float32)
            steps = steps_for(size, args.seconds)
            rows = [("PyTorch sync", 2), ("PyTorch sync", 1)]
            rows += [(schedule, threads) for schedule in args.schedules for threads in args.threads]
            rates = {row: [] for row in rows}
            for _ in runs:
                for runner, threads in rows:
                    if runner == "PyTorch sync":
                        rate = time_torch(model, image, steps, threads)
                    else:
                        rate = time_simulator(rule, image, runner, steps, threads)
                    rates[runner, threads].append(rate)
            torch_2, torch_1 = rates["PyTorch sync", 2], rates["PyTorch sync", 1]
            for runner, threads in rows:
                values = rates[runner, threads]
                cells = [f"{v:,.0f}" for v in values]
                cells += [f"{v / t:.2f}" for v, t in zip(values, torch_2)]
                cells += [f"{v / t:.2f}" for v, t in zip(values, torch_1)]
                print(f"| {name} | {size}x{size} | {steps} | {runner} | {threads} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
