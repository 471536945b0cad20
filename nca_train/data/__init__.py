"""Dataset readers: images with per-pixel labels, as NumPy arrays. Imports no torch.

Items are ``(image, label)``: ``image`` float32 (height, width, 3) in [0, 1],
``label`` int64 (height, width) with 0 = background, 1 = object, 2 = boundary,
and -1 where the class is unknown. docs/datasets.md describes the accepted layouts.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from nca_train.data.dataset import (
    CLASS_NAMES,
    InMemoryDataset,
    SegmentationDataset,
    SkippedFilesWarning,
    check_boundary_width,
    check_image_size,
)
from nca_train.data.decode import UnreadableFileError
from nca_train.data.folder import is_folder_layout, open_folder
from nca_train.data.images import load_images
from nca_train.data.listing import SPLITS, check_split
from nca_train.data.masks import (
    DEFAULT_BOUNDARY_WIDTH,
    UNKNOWN_LABEL,
    check_mask_format_option,
    derive_boundary,
)
from nca_train.data.oxford import is_oxford_layout, open_oxford
from nca_train.data.synthetic import SyntheticDataset
from nca_train.data.transforms import augment

__all__ = [
    "CLASS_NAMES",
    "DEFAULT_BOUNDARY_WIDTH",
    "SPLITS",
    "UNKNOWN_LABEL",
    "InMemoryDataset",
    "SegmentationDataset",
    "SkippedFilesWarning",
    "SyntheticDataset",
    "UnreadableFileError",
    "augment",
    "derive_boundary",
    "load_images",
    "open_dataset",
]

_ACCEPTED_SOURCES = (
    "None or 'synthetic' for the built-in synthetic set; a directory in the Oxford-IIIT Pet "
    "layout (images/ and annotations/trimaps/); a directory with images/ and masks/; "
    "an image file or a list of image files"
)


def open_dataset(
    source: str | os.PathLike | Sequence[str | os.PathLike] | None,
    split: str = "train",
    *,
    image_size: tuple[int, int] | None = (64, 64),
    mask_format: str = "auto",
    boundary_width: int = DEFAULT_BOUNDARY_WIDTH,
    num_synthetic: int = 512,
    seed: int = 0,
) -> SegmentationDataset:
    """Open a segmentation dataset from a directory, image files, or the synthetic set.

    Parameters
    ----------
    source
        - None or ``"synthetic"``: the built-in synthetic set, generated on the fly;
        - a directory with ``images/`` and ``annotations/trimaps/``: the Oxford-IIIT
          Pet layout, with split lists ``annotations/trainval.txt`` and ``test.txt``;
        - a directory with ``images/`` and ``masks/``: masks share their image's stem,
          with optional split lists ``train.txt`` and ``test.txt``;
        - an image file, or a list of them: unlabelled images (labels -1), for the
          simulator's input.
    split : {"train", "test", "all"}
        Ignored for image files.
    image_size
        ``(height, width)`` in pixels that every item is resized to, or None to keep
        native sizes (synthetic items are then 64x64).
    mask_format : {"auto", "trimap", "binary"}
        ``"trimap"``: Oxford values 1 = object, 2 = background, 3 = boundary.
        ``"binary"``: 0 = background and 255 (or 1) = object, with a boundary band
        derived around the object. ``"auto"`` picks per mask from its values.
    boundary_width
        Width in pixels, at ``image_size``, of the band derived from binary masks and
        drawn in synthetic labels.
    num_synthetic
        Items per split of the synthetic set.
    seed
        Seed of the synthetic set.

    Returns
    -------
    SegmentationDataset
        File-based datasets are decoded and resized at open time and held in memory.
        Files Pillow cannot decode are left out, listed in ``dataset.skipped`` and
        named in a :class:`SkippedFilesWarning`.

    Raises
    ------
    ValueError
        For an unknown source, an invalid option, a split list that is missing or
        names a missing file, an image without a mask, a mask of another size than its
        image, or mask values of no known format.
    FileNotFoundError
        When an image file in a list does not exist.
    """
    check_split(split)
    check_mask_format_option(mask_format)
    image_size = check_image_size(image_size)
    boundary_width = check_boundary_width(boundary_width)

    if source is None or (isinstance(source, str) and source == "synthetic"):
        return SyntheticDataset(
            num_synthetic, image_size, seed=seed, split=split, boundary_width=boundary_width
        )
    if not isinstance(source, (str, os.PathLike)):
        return load_images(source, image_size=image_size, mask_format=mask_format, boundary_width=boundary_width)

    path = Path(source)
    options = {"image_size": image_size, "mask_format": mask_format, "boundary_width": boundary_width}
    if path.is_dir():
        if is_oxford_layout(path):
            return open_oxford(path, split, **options)
        if is_folder_layout(path):
            return open_folder(path, split, **options)
        raise ValueError(f"directory {path} has no dataset layout that nca reads; expected {_ACCEPTED_SOURCES}")
    if path.is_file():
        return load_images(path, **options)
    raise ValueError(f"dataset source {path} not found; expected {_ACCEPTED_SOURCES}")
