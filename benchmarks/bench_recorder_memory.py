"""Measure the peak memory of a recorded simulation run (default: 2000 steps at 256x256).

Usage::

    python benchmarks/bench_recorder_memory.py [--steps 2000] [--size 256] [--record-state]

The rule has random weights of the requested architecture (memory does not depend
on the weight values), and the input is one image of the built-in synthetic set
with a swap every 40 steps. The script prints the resident set size every
``--report-every`` steps, so a reader can see that memory stays flat while the
store grows, then the peak (``resource.getrusage`` ``ru_maxrss``), the wall time
and the store's size on disk. Run it with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from nca_sim.inputs import InputSequence, images_needed
from nca_sim.rule import Architecture, Rule, weight_shapes
from nca_sim.simulate import SimulationSettings, run_simulation
from nca_train.data import open_dataset


def resident_mib() -> float:
    """Return the current resident set size in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def random_rule(arch: Architecture, seed: int = 0) -> Rule:
    rng = np.random.default_rng(seed)
    weights = {name: rng.normal(0, 0.05, shape).astype(np.float32) for name, shape in weight_shapes(arch).items()}
    return Rule(arch, weights)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="image height and width, pixels")
    parser.add_argument("--state-channels", type=int, default=48)
    parser.add_argument("--hidden-channels", type=int, default=64)
    parser.add_argument("--schedule", default="bernoulli")
    parser.add_argument("--snapshot-every", type=int, default=10)
    parser.add_argument("--record-state", action="store_true", help="store the full state at every snapshot")
    parser.add_argument("--shift-every", type=int, default=40)
    parser.add_argument("--report-every", type=int, default=200)
    parser.add_argument("--keep", help="write the store here and keep it (default: a temporary folder)")
    args = parser.parse_args()

    arch = Architecture(state_channels=args.state_channels, hidden_channels=args.hidden_channels)
    rule = random_rule(arch)
    size = (args.size, args.size)
    dataset = open_dataset(None, split="test", image_size=size)
    count = images_needed(args.steps, args.shift_every, "swap", len(dataset))
    items = [dataset[i] for i in range(count)]
    inputs = InputSequence(
        np.stack([image for image, _ in items]), np.stack([label for _, label in items]),
        shift_every=args.shift_every, change="swap",
    )
    settings = SimulationSettings(
        steps=args.steps, schedule=args.schedule, snapshot_every=args.snapshot_every, record_state=args.record_state
    )

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="nca-bench-"))
    path = folder / "bench.zarr"
    samples = []

    def report(step: int, total: int) -> None:
        if step % args.report_every == 0 or step == total:
            samples.append((step, round(resident_mib(), 1)))
            print(f"step {step:6d}  RSS {samples[-1][1]:8.1f} MiB", flush=True)

    start_rss = resident_mib()
    start = time.perf_counter()
    summary = run_simulation(path, rule, inputs, settings, progress=report)
    wall = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    store_mib = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20

    result = {
        "steps": summary.steps_done,
        "image_size": list(size),
        "state_channels": arch.state_channels,
        "hidden_channels": arch.hidden_channels,
        "schedule": args.schedule,
        "record_state": args.record_state,
        "snapshot_every": args.snapshot_every,
        "wall_seconds": round(wall, 1),
        "seconds_per_step": round(wall / max(summary.steps_run, 1), 4),
        "rss_before_run_mib": round(start_rss, 1),
        "rss_samples_mib": samples,
        "peak_rss_mib": round(peak_mib, 1),
        "store_mib": round(store_mib, 1),
    }
    print(json.dumps(result, indent=2))
    if not args.keep:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
