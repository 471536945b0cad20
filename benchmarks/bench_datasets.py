"""Speed of the dataset readers: synthetic items per second and open time of file datasets.

Prints a Markdown table with three measurements:

- synthetic items generated on the fly, at 64x64 and 128x128;
- ``open_dataset`` on Oxford-IIIT Pet sized files (500x375 JPEG and PNG trimap,
  the typical size of the official images) written to a temporary directory,
  decoded and resized to 64x64;
- ``open_dataset`` on a real photo set, when its directory is given.

    python benchmarks/bench_datasets.py --files 200 --photos ../shared/data/weizmann-horse
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nca_train.data import open_dataset


def time_synthetic(size: tuple[int, int], count: int) -> float:
    """Return seconds per synthetic item of ``size``."""
    dataset = open_dataset("synthetic", image_size=size, num_synthetic=count)
    start = time.perf_counter()
    for index in range(count):
        dataset[index]
    return (time.perf_counter() - start) / count


def write_oxford_sized_files(root: Path, count: int) -> None:
    """Write ``count`` 500x375 JPEG photos with trimaps in the Oxford-IIIT Pet layout."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    (root / "annotations" / "trimaps").mkdir(parents=True)
    height, width = 375, 500
    y, x = np.mgrid[0:height, 0:width]
    inside = (y - height / 2) ** 2 / 120**2 + (x - width / 2) ** 2 / 160**2 <= 1
    trimap = np.where(inside, 1, 2).astype(np.uint8)
    names = []
    for index in range(count):
        name = f"pet_{index}"
        smooth = rng.random((height // 25, width // 25, 3))
        photo = np.kron(smooth, np.ones((25, 25, 1))) * 200 + rng.random((height, width, 3)) * 55
        Image.fromarray(photo.astype(np.uint8)).save(root / "images" / f"{name}.jpg", quality=90)
        Image.fromarray(trimap).save(root / "annotations" / "trimaps" / f"{name}.png")
        names.append(name)
    (root / "annotations" / "trainval.txt").write_text("".join(f"{name} 1 1 1\n" for name in names))


def time_open(source: Path, split: str) -> tuple[float, int]:
    start = time.perf_counter()
    dataset = open_dataset(source, split)
    return time.perf_counter() - start, len(dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200, help="number of Oxford-sized files to write and open")
    parser.add_argument("--photos", type=Path, default=None, help="a dataset directory to open (optional)")
    args = parser.parse_args()

    print(f"CPU: {platform.processor() or platform.machine()}, Python {platform.python_version()}")
    print()
    print("| measurement | result |")
    print("|---|---|")
    for size in [(64, 64), (128, 128)]:
        seconds = time_synthetic(size, 200)
        print(f"| synthetic item {size[0]}x{size[1]} | {seconds * 1e3:.2f} ms |")

    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_oxford_sized_files(root, args.files)
        seconds, count = time_open(root, "train")
        print(f"| open {count} 500x375 JPEG + trimap pairs at 64x64 | {seconds:.2f} s ({seconds / count * 1e3:.1f} ms per pair) |")

    if args.photos is not None:
        seconds, count = time_open(args.photos, "all")
        print(f"| open {args.photos.name} ({count} items) at 64x64 | {seconds:.2f} s |")


if __name__ == "__main__":
    main()
