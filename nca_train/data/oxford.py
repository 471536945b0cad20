"""Reader for the Oxford-IIIT Pet layout, with trimaps or binary masks.

Layout (as unpacked from the official images.tar.gz and annotations.tar.gz)::

    images/<Name>.jpg
    annotations/trimaps/<Name>.png
    annotations/trainval.txt      "Name CLASS-ID SPECIES BREED-ID" per line
    annotations/test.txt

Split "train" reads trainval.txt, "test" reads test.txt, and "all" reads those of
the two that exist, in that order. When neither exists, "all" takes every file in
images/.
"""

from __future__ import annotations

from pathlib import Path

from nca_train.data.dataset import FilePair, InMemoryDataset, read_pairs
from nca_train.data.listing import check_split, index_by_stem, read_split_file

_SPLIT_FILES = {"train": ("trainval.txt",), "test": ("test.txt",), "all": ("trainval.txt", "test.txt")}


def is_oxford_layout(root: Path) -> bool:
    """Return whether ``root`` has ``images/`` and ``annotations/trimaps/``."""
    return (root / "images").is_dir() and (root / "annotations" / "trimaps").is_dir()


def _split_names(root: Path, split: str, image_index: dict[str, Path]) -> tuple[list[str], str]:
    """Return the names of ``split`` and a description of where they came from."""
    annotations = root / "annotations"
    list_files = [annotations / name for name in _SPLIT_FILES[split]]
    present = [path for path in list_files if path.is_file()]

    if split == "all" and not present:
        return sorted(image_index), f"all files in {root / 'images'}"
    if split != "all" and not present:
        raise ValueError(
            f"split file {list_files[0]} not found for split={split!r}; add it (one image name per "
            "line) or use split='all' to read every image"
        )

    names: dict[str, None] = {}
    for path in present:
        for name in read_split_file(path):
            names.setdefault(name, None)
    return list(names), ", ".join(str(path) for path in present)


def open_oxford(
    root: Path,
    split: str,
    *,
    image_size: tuple[int, int] | None,
    mask_format: str,
    boundary_width: int,
) -> InMemoryDataset:
    """Read a directory in the Oxford-IIIT Pet layout into memory.

    Raises
    ------
    ValueError
        When a split list is missing, or names an image or trimap that is not found,
        and for the mask errors of :func:`~nca_train.data.dataset.read_pairs`.
    """
    check_split(split)
    image_index = index_by_stem(root / "images")
    mask_index = index_by_stem(root / "annotations" / "trimaps")
    names, listed_in = _split_names(root, split, image_index)

    pairs = []
    for name in names:
        image = image_index.get(name)
        if image is None:
            raise ValueError(f"image {name!r} listed in {listed_in} not found: no file {name}.* in {root / 'images'}")
        mask = mask_index.get(name)
        if mask is None:
            raise ValueError(
                f"mask for image {image.name} not found: no file {name}.* in {root / 'annotations' / 'trimaps'}"
            )
        pairs.append(FilePair(name, image, mask))

    return read_pairs(
        pairs,
        root=root,
        source=f"{root} (split {split!r})",
        image_size=image_size,
        mask_format=mask_format,
        boundary_width=boundary_width,
    )
