"""Find files by stem and read split lists, for the directory readers."""

from __future__ import annotations

from pathlib import Path

SPLITS = ("train", "test", "all")

# When several files share a stem, the first of these extensions wins, because the
# Oxford-IIIT Pet images folder also contains a few .mat files. Files are still
# decoded by content, so the extension only breaks ties.
_PREFERRED_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def _extension_rank(path: Path) -> tuple[int, str]:
    suffix = path.suffix.lower()
    rank = _PREFERRED_EXTENSIONS.index(suffix) if suffix in _PREFERRED_EXTENSIONS else len(_PREFERRED_EXTENSIONS)
    return rank, path.name


def index_by_stem(directory: Path) -> dict[str, Path]:
    """Map file stem -> file for the regular files in ``directory``.

    Hidden files (names starting with ".", such as the macOS "._" copies in the
    official Oxford annotations archive) are ignored.
    """
    index: dict[str, Path] = {}
    for path in directory.iterdir():
        if path.name.startswith(".") or not path.is_file():
            continue
        current = index.get(path.stem)
        if current is None or _extension_rank(path) < _extension_rank(current):
            index[path.stem] = path
    return index


def read_split_file(path: Path) -> list[str]:
    """Return the item names of a split file, in file order without repeats.

    Each line starts with the name; the rest of the line (Oxford's
    "CLASS-ID SPECIES BREED-ID") is ignored, as are blank lines and lines starting
    with "#".
    """
    names: dict[str, None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        names.setdefault(stripped.split()[0], None)
    return list(names)


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
