"""Segmentation masks to 3-class labels: trimap mapping, binary masks and the boundary band.

Labels use the class order of :data:`nca_sim.rule.DEFAULT_CLASS_NAMES`:
0 = background, 1 = object, 2 = boundary, and -1 where the class is unknown.
"""

from __future__ import annotations

import numpy as np

BACKGROUND, OBJECT, BOUNDARY = 0, 1, 2
UNKNOWN_LABEL = -1

# Width in pixels, at the resolution of the label, of the boundary band derived from
# a binary mask: 1 pixel inside the object plus 1 pixel outside it, the narrowest
# band on both sides of the edge. Oxford-IIIT Pet trimap borders resized to 64x64
# are wider, about 2 to 4.5 pixels (band pixels per edge pixel, 26 images).
DEFAULT_BOUNDARY_WIDTH = 2

MASK_FORMATS = ("auto", "trimap", "binary")

# Oxford-IIIT Pet trimap value -> class: 1 = pet, 2 = background, 3 = border.
_TRIMAP_TO_CLASS = {1: OBJECT, 2: BACKGROUND, 3: BOUNDARY}
_TRIMAP_VALUES = frozenset(_TRIMAP_TO_CLASS)
_BINARY_VALUE_SETS = (frozenset({0, 255}), frozenset({0, 1}))


def _disk_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) with dy**2 + dx**2 <= radius**2, without (0, 0)."""
    return [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if 0 < dy * dy + dx * dx <= radius * radius
    ]


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a Euclidean disk; pixels outside the array count as False."""
    out = mask.copy()
    height, width = mask.shape
    for dy, dx in _disk_offsets(radius):
        # out[y, x] |= mask[y + dy, x + dx] wherever y + dy, x + dx lie inside the array.
        out[max(0, -dy) : height - max(0, dy), max(0, -dx) : width - max(0, dx)] |= mask[
            max(0, dy) : height - max(0, -dy), max(0, dx) : width - max(0, -dx)
        ]
    return out


def derive_boundary(mask: np.ndarray, width: int = DEFAULT_BOUNDARY_WIDTH) -> np.ndarray:
    """Turn a binary mask into a 3-class label with a boundary band along the mask edge.

    The band straddles the edge between object and background pixels: it takes the
    object pixels within Euclidean distance ``ceil(width / 2)`` of a background pixel
    and the background pixels within ``floor(width / 2)`` of an object pixel. With the
    default width 2 these are the object and background pixels that are 4-neighbours
    across the edge. The image border is not an edge, so an object that touches it
    has no band there.

    Parameters
    ----------
    mask : array_like of bool, shape (height, width)
        True on the object.
    width : int, default DEFAULT_BOUNDARY_WIDTH
        Band width in pixels; 0 gives no boundary class.

    Returns
    -------
    numpy.ndarray of int64, shape (height, width)
        0 = background, 1 = object, 2 = boundary.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), got shape {mask.shape}")
    if mask.dtype != np.bool_:
        raise ValueError(f"mask must be a bool array, got dtype {mask.dtype}; pass mask > 0 or similar")
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or width < 0:
        raise ValueError(f"boundary width must be an integer >= 0 pixels, got {width!r}")

    label = mask.astype(np.int64)  # 1 = object, 0 = background
    inner_radius = (int(width) + 1) // 2
    outer_radius = int(width) // 2
    if inner_radius > 0:
        label[mask & _dilate(~mask, inner_radius)] = BOUNDARY
    if outer_radius > 0:
        label[~mask & _dilate(mask, outer_radius)] = BOUNDARY
    return label


def _describe_values(values: np.ndarray) -> str:
    listed = ", ".join(str(int(v)) for v in values[:12])
    if len(values) > 12:
        listed += f", ... ({len(values)} distinct values)"
    return "{" + listed + "}"


def distinct_values(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values of an integer array; a histogram is faster than np.unique for masks."""
    if values.size and values.dtype.kind in "ui" and values.min() >= 0 and values.max() < 65536:
        return np.flatnonzero(np.bincount(values.ravel()))
    return np.unique(values)


def detect_mask_format(values: np.ndarray, file_name: str) -> str:
    """Return ``"trimap"`` or ``"binary"`` for a mask with these distinct values.

    Values {0, 255} or {0, 1} (or a subset) are binary; a subset of {1, 2, 3} is a
    trimap. A mask whose only value is 1 fits both, and both read it as all object.
    """
    present = frozenset(int(v) for v in values)
    if any(present <= allowed for allowed in _BINARY_VALUE_SETS):
        return "binary"
    if present <= _TRIMAP_VALUES:
        return "trimap"
    raise ValueError(
        f"mask {file_name} has values {_describe_values(values)}, which are neither binary "
        "({0, 255} or {0, 1}) nor an Oxford trimap (subset of {1, 2, 3}); save masks as "
        "8-bit greyscale PNG with one of these value sets (threshold a JPEG-compressed mask at 128)"
    )


def mask_format_of(mask: np.ndarray, mask_format: str, file_name: str) -> str:
    """Check ``mask``'s values against ``mask_format`` and return the format that applies."""
    values = distinct_values(mask)
    if mask_format == "auto":
        return detect_mask_format(values, file_name)

    present = frozenset(int(v) for v in values)
    if mask_format == "trimap" and not present <= _TRIMAP_VALUES:
        raise ValueError(
            f"mask {file_name} has values {_describe_values(values)}, but mask_format='trimap' "
            "expects a subset of {1, 2, 3}; use mask_format='auto' or 'binary' for 0/255 masks"
        )
    if mask_format == "binary" and not any(present <= allowed for allowed in _BINARY_VALUE_SETS):
        raise ValueError(
            f"mask {file_name} has values {_describe_values(values)}, but mask_format='binary' "
            "expects {0, 255} or {0, 1}; threshold the mask to 0/255, or use mask_format='trimap'"
        )
    return mask_format


def trimap_to_label(trimap: np.ndarray) -> np.ndarray:
    """Map Oxford trimap values (1 pet, 2 background, 3 border) to class indices (int64)."""
    lookup = np.zeros(256, dtype=np.int64)
    for value, class_index in _TRIMAP_TO_CLASS.items():
        lookup[value] = class_index
    return lookup[trimap.astype(np.uint8)]


def check_mask_format_option(mask_format: str) -> None:
    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
