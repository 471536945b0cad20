"""Measure training iterations per second of a few model configs on random 64x64 data.

Usage: python benchmarks/bench_train.py [--threads N] [--repeats R] [--allocator kept|default|both]

One iteration is what `nca train` does per optimizer step in pool mode: a K = 10 step
mini-unroll with the loss at every step, backward and an Adam step. Data loading is
left out because it takes about 1 ms per batch. The fastest of the repeats is reported.

``--allocator kept`` applies :func:`nca_train.allocator.keep_freed_memory`, as
`nca train` does; ``default`` leaves glibc's malloc as it is. ``both`` (the default)
runs each in its own process, one after the other, and prints them side by side,
because glibc's dynamic default cannot be restored within a process.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

from nca_sim.rule import Architecture
from nca_train.model import SegmentationNCA, count_parameters
from nca_train.train import unroll_loss

HORSE = {"state_channels": 24, "hidden_channels": 64, "num_layers": 3, "perception": "depthwise", "residual": False}

# (name, Architecture options, batch size)
CONFIGS = [
    ("paper default: d=48, hidden 64, 4 layers, full", {}, 32),
    ("paper default: d=48, hidden 64, 4 layers, full", {}, 8),
    ("d=24, hidden 64, 3 layers, depthwise, no residual", HORSE, 32),
    ("d=24, hidden 64, 3 layers, depthwise, no residual", HORSE, 8),
    ("the same with the reset gate", {**HORSE, "reset_gate": True}, 8),
    ("d=32, hidden 48, 3 layers, depthwise", {"state_channels": 32, "hidden_channels": 48, "num_layers": 3,
                                             "perception": "depthwise"}, 8),
    ("d=16, hidden 64, 3 layers, full", {"state_channels": 16, "hidden_channels": 64, "num_layers": 3}, 8),
]


def time_iteration(arch_options: dict, batch: int, repeats: int, size: int = 64, unroll_steps: int = 10) -> tuple[int, float]:
    torch.manual_seed(0)
    model = SegmentationNCA(Architecture(**arch_options))
    optimizer = torch.optim.Adam(model.parameters(), 3e-4)
    images = torch.rand(batch, 3, size, size)
    labels = torch.randint(0, 3, (batch, size, size))
    states = model.initial_state(batch, size, size)
    loss_mask = np.ones((unroll_steps, batch), dtype=bool)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss, _, _, _ = unroll_loss(model, states, model.encode_image(images), labels, loss_mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return count_parameters(model), min(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="iterations timed per config (default 3)")
    parser.add_argument("--allocator", choices=["kept", "default", "both"], default="both",
                        help="glibc malloc setting to measure (default both, in two processes)")
    args = parser.parse_args()
    if args.allocator == "both":
        results = {}
        for allocator in ("default", "kept"):
            command = [sys.executable, __file__, "--threads", str(args.threads), "--repeats", str(args.repeats),
                       "--allocator", allocator]
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            results[allocator] = [line.split("\t") for line in output.splitlines() if "\t" in line]
        print(f"torch {torch.__version__}, {args.threads} threads, 64x64 grid, K = 10; seconds per iteration")
        print("| model | parameters | batch | default malloc | freed memory kept | speed-up |")
        print("| --- | --- | --- | --- | --- | --- |")
        for (name, parameters, batch, before), (_, _, _, after) in zip(results["default"], results["kept"]):
            print(f"| {name} | {parameters} | {batch} | {float(before):.3f} | {float(after):.3f} | "
                  f"{float(before) / float(after):.2f}x |")
        return

    torch.set_num_threads(args.threads)
    if args.allocator == "kept":
        from nca_train.allocator import keep_freed_memory

        keep_freed_memory()
    for name, options, batch in CONFIGS:
        parameters, seconds = time_iteration(options, batch, args.repeats)
        print(f"{name}\t{parameters}\t{batch}\t{seconds:.4f}")


if __name__ == "__main__":
    main()
