"""Measure training iterations per second of a few model configs on random 64x64 data.

Usage: python benchmarks/bench_train.py [--threads N] [--repeats R]

One iteration is what `nca train` does per optimizer step in pool mode: a K = 10 step
mini-unroll with the loss at every step, backward and an Adam step. Data loading is
left out because it takes about 1 ms per batch. The fastest of the repeats is reported.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from nca_sim.rule import Architecture
from nca_train.model import SegmentationNCA, count_parameters
from nca_train.train import unroll_loss

CONFIGS = [
    ("paper d=48 hidden=64 4 layers full, batch 32", {}, 32),
    ("paper d=48 hidden=64 4 layers full, batch 8", {}, 8),
    ("d=24 hidden=64 3 layers depthwise no residual, batch 8",
     {"state_channels": 24, "hidden_channels": 64, "num_layers": 3, "perception": "depthwise", "residual": False}, 8),
    ("d=32 hidden=48 3 layers depthwise, batch 8",
     {"state_channels": 32, "hidden_channels": 48, "num_layers": 3, "perception": "depthwise"}, 8),
    ("d=16 hidden=64 3 layers full, batch 8", {"state_channels": 16, "hidden_channels": 64, "num_layers": 3}, 8),
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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, 64x64 grid, K = 10")
    for name, options, batch in CONFIGS:
        parameters, seconds = time_iteration(options, batch, args.repeats)
        print(f"{name}: {parameters} parameters, {seconds:.3f} s/iteration, {1 / seconds:.2f} iterations/s")


if __name__ == "__main__":
    main()
