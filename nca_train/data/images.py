"""Reader for loose image files, such as the photos given to the simulator.

Without masks every label pixel is -1 (unknown), and the image's EXIF orientation
is applied. With masks, each mask is read as in the directory readers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nca_train.data.dataset import (
    FilePair,
    InMemoryDataset,
    check_boundary_width,
    check_image_size,
    read_pairs,
)
from nca_train.data.masks import DEFAULT_BOUNDARY_WIDTH


def _as_path_list(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    return [Path(path) for path in paths]


def load_images(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    mask_paths: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
    *,
    image_size: tuple[int, int] | None = (64, 64),
    mask_format: str = "auto",
    boundary_width: int = DEFAULT_BOUNDARY_WIDTH,
) -> InMemoryDataset:
    """Read image files, and optionally one mask per image, into a dataset.

    Parameters
    ----------
    paths
        One image file or a sequence of them; the file stems become the item names.
    mask_paths
        None for unlabelled images (labels are -1 everywhere), or one mask file per
        image, in the same order.
    image_size
        ``(height, width)`` to resize to, or None for each image's native size.
    mask_format, boundary_width
        As for :func:`~nca_train.data.open_dataset`.

    Returns
    -------
    SegmentationDataset
        With files that cannot be decoded skipped and listed in ``skipped``.

    Raises
    ------
    FileNotFoundError
        When a file does not exist.
    ValueError
        When the number of masks differs from the number of images, for the mask
        errors of :func:`~nca_train.data.open_dataset`, or when no image can be read.
    """
    image_size = check_image_size(image_size)
    boundary_width = check_boundary_width(boundary_width)
    images = _as_path_list(paths)
    if not images:
        raise ValueError("load_images needs at least one image path, got an empty list")
    masks: list[Path | None]
    if mask_paths is None:
        masks = [None] * len(images)
    else:
        masks = list(_as_path_list(mask_paths))
        if len(masks) != len(images):
            raise ValueError(f"got {len(images)} image paths but {len(masks)} mask paths; give one mask per image")

    for path in [*images, *masks]:
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"image or mask file not found: {path}")

    pairs = [FilePair(image.stem, image, mask) for image, mask in zip(images, masks)]
    source = str(images[0]) if len(images) == 1 else f"{len(images)} image files"
    return read_pairs(
        pairs,
        root=None,
        source=source,
        image_size=image_size,
        mask_format=mask_format,
        boundary_width=boundary_width,
    )
