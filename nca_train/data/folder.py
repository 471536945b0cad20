"""Reader for a folder of images with matching mask files.

Layout::

    images/<stem>.<any image format>
    masks/<stem>.png              same stem as the image; any format Pillow reads
    train.txt                     optional: one stem per line ("#" starts a comment)
    test.txt                      optional

``trainval.txt`` is accepted in place of ``train.txt``. Split "all" reads every
file in images/, in sorted order. Split "train" reads train.txt, or without it
every image not listed in test.txt. Split "test" requires test.txt.
"""

from __future__ import annotations

from pathlib import Path

from nca_train.data.dataset import FilePair, InMemoryDataset, read_pairs
from nca_train.data.listing import check_split, index_by_stem, read_split_file

_TRAIN_LISTS = ("train.txt", "trainval.txt")
_TEST_LIST = "test.txt"


def is_folder_layout(root: Path) -> bool:
    """Return whether ``root`` has ``images/`` and ``masks/``."""
    return (root / "images").is_dir() and (root / "masks").is_dir()


def _split_names(root: Path, split: str, image_index: dict[str, Path]) -> tuple[list[str], str]:
    """Return the names of ``split`` and a description of where they came from."""
    all_files = f"all files in {root / 'images'}"
    if split == "all":
        return sorted(image_index), all_files

    test_list = root / _TEST_LIST
    if split == "test":
        if not test_list.is_file():
            raise ValueError(
                f"split file {test_list} not found for split='test'; list the test images in it "
                "(one stem per line) or use split='all'"
            )
        return read_split_file(test_list), str(test_list)

    for list_name in _TRAIN_LISTS:
        train_list = root / list_name
        if train_list.is_file():
            return read_split_file(train_list), str(train_list)
    if test_list.is_file():
        held_out = set(read_split_file(test_list))
        return sorted(set(image_index) - held_out), f"{all_files} not listed in {test_list}"
    return sorted(image_index), all_files


def open_folder(
    root: Path,
    split: str,
    *,
    image_size: tuple[int, int] | None,
    mask_format: str,
    boundary_width: int,
) -> InMemoryDataset:
    """Read a folder with ``images/`` and ``masks/`` into memory.

    Raises
    ------
    ValueError
        When a split list names an image that is not found, an image has no mask,
        and for the mask errors of :func:`~nca_train.data.dataset.read_pairs`.
    """
    check_split(split)
    image_index = index_by_stem(root / "images")
    mask_index = index_by_stem(root / "masks")
    names, listed_in = _split_names(root, split, image_index)

    pairs = []
    for name in names:
        image = image_index.get(name)
        if image is None:
            raise ValueError(f"image {name!r} listed in {listed_in} not found: no file {name}.* in {root / 'images'}")
        mask = mask_index.get(name)
        if mask is None:
            raise ValueError(f"mask for image {image.name} not found: no file {name}.* in {root / 'masks'}")
        pairs.append(FilePair(name, image, mask))

    return read_pairs(
        pairs,
        root=root,
        source=f"{root} (split {split!r})",
        image_size=image_size,
        mask_format=mask_format,
        boundary_width=boundary_width,
    )
