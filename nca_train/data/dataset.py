"""The dataset protocol, and the in-memory dataset that the file readers build.

File readers decode every file once when the dataset is opened, and keep the
resized arrays in memory as uint8 images and int8 labels. A 64x64 item takes 16 KB,
so the 7,349 labelled Oxford-IIIT Pet images take about 120 MB. Decoding
everything up front also finds truncated files, which a header check does not.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nca_sim.rule import DEFAULT_CLASS_NAMES
from nca_train.data.decode import UnreadableFileError, decode_image, decode_mask, resize_mask
from nca_train.data.masks import (
    UNKNOWN_LABEL,
    check_mask_format_option,
    derive_boundary,
    mask_format_of,
    trimap_to_label,
)

CLASS_NAMES = DEFAULT_CLASS_NAMES

# Names listed in a warning about skipped files; the full list is in dataset.skipped.
_MAX_NAMES_IN_WARNING = 10


class SkippedFilesWarning(UserWarning):
    """Some files of a dataset could not be decoded and were left out."""


class SegmentationDataset:
    """Images with per-pixel class labels, indexed like a sequence.

    Items are ``(image, label)``: ``image`` is float32 of shape (height, width, 3)
    with values in [0, 1], and ``label`` is int64 of shape (height, width) with
    class indices in the order of :attr:`class_names` (0 = background,
    1 = object, 2 = boundary), or -1 where the class is unknown.

    Attributes
    ----------
    names : list of str
        One name per item: the file stem, or ``"synthetic-000017"``.
    image_size : tuple of int or None
        ``(height, width)`` of every item, or None when items keep their native size.
    skipped : list of (str, str)
        ``(file name, reason)`` for each unreadable file that was left out.
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        names: Iterable[str],
        image_size: tuple[int, int] | None,
        skipped: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.names = list(names)
        self.image_size = image_size
        self.skipped = list(skipped)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(index).__name__}")
        length = len(self)
        position = int(index) + length if index < 0 else int(index)
        if not 0 <= position < length:
            raise IndexError(f"index {index} is out of range for a dataset of {length} items")
        return position

    def __repr__(self) -> str:
        size = "native size" if self.image_size is None else f"{self.image_size[0]}x{self.image_size[1]}"
        return f"<{type(self).__name__}: {len(self)} items, {size}, {len(self.skipped)} skipped>"


class InMemoryDataset(SegmentationDataset):
    """A dataset whose items were decoded at open time and are held as arrays.

    ``source`` is the directory or file list it was read from.
    """

    def __init__(
        self,
        names: list[str],
        images: list[np.ndarray],
        labels: list[np.ndarray],
        image_size: tuple[int, int] | None,
        skipped: list[tuple[str, str]],
        source: str,
    ) -> None:
        super().__init__(names, image_size, skipped)
        self._images = images  # uint8, (height, width, 3)
        self._labels = labels  # int8, (height, width)
        self.source = source

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        position = self._check_index(index)
        image = self._images[position].astype(np.float32) / np.float32(255.0)
        label = self._labels[position].astype(np.int64)
        return image, label


@dataclass(frozen=True)
class FilePair:
    """An item to read: its name, image file and mask file (None when unlabelled)."""

    name: str
    image: Path
    mask: Path | None


def check_image_size(image_size: object) -> tuple[int, int] | None:
    """Return ``image_size`` as ``(height, width)``; an int n means (n, n)."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    try:
        height, width = image_size  # type: ignore[misc]
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width) in pixels or None, got {image_size!r}") from None
    for value in (height, width):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"image_size must be two integers >= 1 (height, width), got {image_size!r}")
    return int(height), int(width)


def check_boundary_width(boundary_width: object) -> int:
    if isinstance(boundary_width, bool) or not isinstance(boundary_width, (int, np.integer)) or boundary_width < 0:
        raise ValueError(f"boundary_width must be an integer >= 0 pixels, got {boundary_width!r}")
    return int(boundary_width)


def mask_to_label(
    values: np.ndarray,
    size: tuple[int, int] | None,
    mask_format: str,
    boundary_width: int,
    file_name: str,
) -> np.ndarray:
    """Resize mask values (nearest neighbour) and map them to class indices.

    The boundary band of a binary mask is derived after resizing, so that
    ``boundary_width`` counts pixels of the returned label.
    """
    found_format = mask_format_of(values, mask_format, file_name)
    target = values.shape if size is None else size
    if found_format == "binary":
        mask = resize_mask((values > 0).astype(np.uint8), target) > 0
        return derive_boundary(mask, boundary_width)
    return trimap_to_label(resize_mask(values, target))


def _display_name(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return str(path)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[1]}x{size[0]} (width x height)"


def read_pairs(
    pairs: Iterable[FilePair],
    *,
    root: Path | None,
    source: str,
    image_size: tuple[int, int] | None,
    mask_format: str,
    boundary_width: int,
) -> InMemoryDataset:
    """Decode every pair into memory, skipping and reporting unreadable files.

    An image or mask that Pillow cannot decode is skipped and listed in
    ``skipped`` with the reason, and one :class:`SkippedFilesWarning` names them.
    Images without a mask get the label -1 (unknown) everywhere.

    Raises
    ------
    ValueError
        When a mask's size differs from its image's, a mask has values of no known
        format, or no item could be read.
    """
    check_mask_format_option(mask_format)
    names: list[str] = []
    images: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    skipped: list[tuple[str, str]] = []

    for pair in pairs:
        image_name = _display_name(pair.image, root)
        try:
            image, native_size = decode_image(pair.image, image_size, apply_exif_orientation=pair.mask is None)
        except UnreadableFileError as error:
            skipped.append((image_name, str(error)))
            continue

        if pair.mask is None:
            label = np.full(image.shape[:2], UNKNOWN_LABEL, dtype=np.int8)
        else:
            mask_name = _display_name(pair.mask, root)
            try:
                values = decode_mask(pair.mask)
            except UnreadableFileError as error:
                skipped.append((mask_name, str(error)))
                continue
            if values.shape != native_size:
                raise ValueError(
                    f"mask {mask_name} is {_size_text(values.shape)} but its image {image_name} is "
                    f"{_size_text(native_size)}; a mask must have the size of its image"
                )
            label = mask_to_label(values, image_size, mask_format, boundary_width, mask_name).astype(np.int8)

        names.append(pair.name)
        images.append(image)
        labels.append(label)

    if skipped:
        listed = "; ".join(f"{name} ({reason})" for name, reason in skipped[:_MAX_NAMES_IN_WARNING])
        more = len(skipped) - _MAX_NAMES_IN_WARNING
        if more > 0:
            listed += f"; and {more} more in dataset.skipped"
        warnings.warn(f"skipped {len(skipped)} unreadable file(s) in {source}: {listed}", SkippedFilesWarning, stacklevel=3)
    if not names:
        reasons = "; ".join(f"{name} ({reason})" for name, reason in skipped[:_MAX_NAMES_IN_WARNING])
        raise ValueError(f"no readable image in {source}" + (f": {reasons}" if reasons else ""))

    return InMemoryDataset(names, images, labels, image_size, skipped, source)
