"""Cell updates per second: the PyTorch synchronous step against each simulator schedule.

Runs, in one process and on the same rule and grid, the PyTorch ``SegmentationNCA.step``
(batch 1, every cell fires) and each :class:`nca_sim.engine.Simulator` schedule,
and prints a Markdown table of cell updates per second and the ratio to PyTorch.
The rule is the default architecture (48 state channels, 64 hidden, 4 layers,
full perception) with random weights. Its update layer is scaled down so that
long runs stay finite, because NaN arithmetic would distort the timings.

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


def make_model(seed: int = 0) -> SegmentationNCA:
    torch.manual_seed(seed)
    model = SegmentationNCA(Architecture()).eval()
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
    with torch.no_grad():
        cell_input = model.encode_image(torch.from_numpy(image).permute(2, 0, 1)[None].contiguous())
        state = model.initial_state(1, image.shape[0], image.shape[1])
        state, _ = model.step(state, cell_input, update_probability=1.0)  # warm-up
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
    parser.add_argument("--seconds", type=float, default=2.0, help="target duration of each timing, in seconds")
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="simulator thread counts")
    parser.add_argument(
        "--torch-threads", type=int, nargs="+", default=[2, 1],
        help="PyTorch intra-op thread counts; the first is the reference of the ratio column",
    )
    args = parser.parse_args()

    model = make_model()
    rule = model.to_rule()
    arch = rule.architecture
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores visible")
    print(
        f"Python {platform.python_version()}, NumPy {np.__version__}, Numba {numba.__version__}, "
        f"PyTorch {torch.__version__}, NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}"
    )
    print(
        f"Rule: {arch.state_channels} state, {arch.hidden_channels} hidden, {arch.num_layers} layers, "
        f"{arch.perception} perception, {multiply_adds_per_cell(arch):,} multiply-adds per cell"
    )
    print()
    print("| grid | steps | runner | threads | cell updates/s | ratio to PyTorch |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        image = np.random.default_rng(size).random((size, size, 3), dtype=np.float32)
        steps = steps_for(size, args.seconds)
        reference = None
        for threads in args.torch_threads:
            rate = time_torch(model, image, steps, threads)
            reference = reference or rate
            print(
                f"| {size}x{size} | {steps} | PyTorch sync | {threads} | {rate:,.0f} | {rate / reference:.2f} |",
                flush=True,
            )
        for schedule in SCHEDULES:
            for threads in args.threads:
                rate = time_simulator(rule, image, schedule, steps, threads)
                print(
                    f"| {size}x{size} | {steps} | {schedule} | {threads} | {rate:,.0f} | {rate / reference:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
