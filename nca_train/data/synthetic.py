"""The built-in synthetic dataset: textured shapes on textured backgrounds.

Each item is drawn on the fly from ``numpy.random.default_rng([seed, split, index])``,
so an item depends only on those three numbers and the image size. An image
contains one object (two in 30% of the items) of one shape kind: ellipse, regular
polygon, star or blob. Objects get a fine texture (stripes with a period of 5 to 11
pixels at 64x64, or checks of that size), backgrounds a smooth one (value noise or a
gradient), each between two colours. 70% of the textures of either kind are cut into
two flat tones. All colours are drawn uniformly from the RGB cube, and half of the
objects share one colour with their background. So object and background pixels
have nearly the same colour distribution over the dataset: texture and shape tell
them apart, and a cell finds the texture by comparing its colour with its neighbours'.
Labels are 0 = background, 1 = object, 2 = boundary, with the boundary band of
:func:`~nca_train.data.masks.derive_boundary` at the item's resolution.
"""

from __future__ import annotations

import math

import numpy as np

from nca_train.data.dataset import SegmentationDataset, check_boundary_width, check_image_size
from nca_train.data.listing import check_split
from nca_train.data.masks import DEFAULT_BOUNDARY_WIDTH, derive_boundary

SHAPE_KINDS = ("ellipse", "polygon", "star", "blob")
OBJECT_TEXTURES = ("stripes", "checks")
BACKGROUND_TEXTURES = ("noise", "gradient")

# Probability that a texture is thresholded at its middle into two flat tones (sharp
# stripes, or a background split into two regions by a smooth edge). Objects and
# backgrounds share it, which keeps their colour distributions alike.
_TWO_TONE_PROBABILITY = 0.7

# Smallest RGB distance between the two colours of a texture, so that an object's texture
# is visible. Backgrounds obey it too, so that both keep the same colour distribution.
_MIN_CONTRAST = 0.4

# Size used when the caller asks for native size (image_size=None): synthetic
# images have no native size.
DEFAULT_SYNTHETIC_SIZE = (64, 64)

# Standard deviation of the Gaussian pixel noise added to every image (intensity units).
_PIXEL_NOISE = 0.03

# Index of each split in the random-number key, so the splits never share items.
_SPLIT_KEYS = {"train": 0, "test": 1}


def _stripes(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0.0, math.pi)
    frequency = rng.uniform(6.0, 14.0)  # cycles per shorter image side
    phase = rng.uniform(0.0, 2.0 * math.pi)
    return 0.5 + 0.5 * np.sin(2.0 * math.pi * frequency * (x * math.cos(angle) + y * math.sin(angle)) + phase)


def _checks(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0.0, 0.5 * math.pi)
    frequency = rng.uniform(3.0, 7.0)  # checks of 4.6 to 11 pixels at 64x64
    u = x * math.cos(angle) + y * math.sin(angle)
    v = -x * math.sin(angle) + y * math.cos(angle)
    phase_u, phase_v = rng.uniform(0.0, 2.0 * math.pi, size=2)
    product = np.sin(2.0 * math.pi * frequency * u + phase_u) * np.sin(2.0 * math.pi * frequency * v + phase_v)
    return (product > 0.0).astype(np.float64)


def _noise(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Value noise: random values on a coarse grid, bilinearly interpolated."""
    cells = rng.uniform(2.0, 5.0)  # grid cells per shorter image side
    grid_y = y[:, 0] * cells
    grid_x = x[0, :] * cells
    grid = rng.random((int(grid_y[-1]) + 2, int(grid_x[-1]) + 2))
    row = np.floor(grid_y).astype(np.int64)
    col = np.floor(grid_x).astype(np.int64)
    fy = (grid_y - row)[:, None]
    fx = (grid_x - col)[None, :]
    top = grid[row][:, col] * (1.0 - fx) + grid[row][:, col + 1] * fx
    bottom = grid[row + 1][:, col] * (1.0 - fx) + grid[row + 1][:, col + 1] * fx
    values = top * (1.0 - fy) + bottom * fy
    low, high = values.min(), values.max()
    return (values - low) / max(high - low, 1e-6)


def _gradient(rng: np.random.Generator, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    angle = rng.uniform(0.0, 2.0 * math.pi)
    span = rng.uniform(0.5, 1.5)  # distance of the full ramp, in shorter-side units
    center_y, center_x = y.mean(), x.mean()
    ramp = ((x - center_x) * math.cos(angle) + (y - center_y) * math.sin(angle)) / span + 0.5
    return np.clip(ramp, 0.0, 1.0)


_TEXTURES = {"stripes": _stripes, "checks": _checks, "noise": _noise, "gradient": _gradient}


def _colour_pair(rng: np.random.Generator) -> np.ndarray:
    """Draw two colours uniformly from the RGB cube, at least ``_MIN_CONTRAST`` apart."""
    while True:
        colours = rng.random((2, 3))
        if np.linalg.norm(colours[1] - colours[0]) >= _MIN_CONTRAST:
            return colours


def _shape_mask(rng: np.random.Generator, kind: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Draw one shape of ``kind`` whose center lies in the middle half of the image."""
    extent_y = y[-1, 0] + y[0, 0]  # image height in shorter-side units
    extent_x = x[0, -1] + x[0, 0]
    center_y = rng.uniform(0.25, 0.75) * extent_y
    center_x = rng.uniform(0.25, 0.75) * extent_x
    radius = rng.uniform(0.2, 0.36)  # in shorter-side units
    rotation = rng.uniform(0.0, 2.0 * math.pi)
    dy = y - center_y
    dx = x - center_x

    if kind == "ellipse":
        semi_u = radius * rng.uniform(0.8, 1.3)
        semi_v = radius * rng.uniform(0.5, 1.0)
        u = dx * math.cos(rotation) + dy * math.sin(rotation)
        v = -dx * math.sin(rotation) + dy * math.cos(rotation)
        return (u / semi_u) ** 2 + (v / semi_v) ** 2 <= 1.0

    distance = np.hypot(dx, dy)
    angle = np.arctan2(dy, dx) - rotation
    if kind == "polygon":
        sides = int(rng.integers(3, 8))
        sector = 2.0 * math.pi / sides
        # Distance from the center to a regular polygon's edge with circumradius `radius`.
        edge = radius * math.cos(math.pi / sides) / np.cos(np.mod(angle, sector) - math.pi / sides)
    elif kind == "star":
        points = int(rng.integers(5, 9))
        depth = rng.uniform(0.3, 0.55)
        edge = radius * (1.0 - depth * (0.5 - 0.5 * np.cos(points * angle)))
    else:  # blob: a circle with random low harmonics on its radius
        edge = np.full_like(distance, radius)
        for harmonic in range(2, 6):
            amplitude = rng.uniform(-0.12, 0.12)
            phase = rng.uniform(0.0, 2.0 * math.pi)
            edge = edge + radius * amplitude * np.cos(harmonic * angle + phase)
    return distance <= edge


def make_synthetic_item(
    seed: int,
    index: int,
    image_size: tuple[int, int] = DEFAULT_SYNTHETIC_SIZE,
    *,
    split: str = "train",
    boundary_width: int = DEFAULT_BOUNDARY_WIDTH,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw synthetic item ``index`` of ``split`` for ``seed``.

    Returns
    -------
    image : numpy.ndarray of float32, shape (height, width, 3), values in [0, 1]
    label : numpy.ndarray of int64, shape (height, width), values in {0, 1, 2}
    """
    rng = np.random.default_rng([seed, _SPLIT_KEYS[split], index])
    height, width = image_size
    # Pixel centers in units of the shorter side, so shapes stay round in non-square images.
    unit = float(min(height, width))
    y = ((np.arange(height) + 0.5) / unit)[:, None] + np.zeros((1, width))
    x = ((np.arange(width) + 0.5) / unit)[None, :] + np.zeros((height, 1))

    background_kind = BACKGROUND_TEXTURES[int(rng.integers(len(BACKGROUND_TEXTURES)))]
    object_kind = OBJECT_TEXTURES[int(rng.integers(len(OBJECT_TEXTURES)))]
    background_colours = _colour_pair(rng)
    object_colours = _colour_pair(rng)
    if rng.random() < 0.5:
        object_colours[0] = background_colours[int(rng.integers(2))]
        while np.linalg.norm(object_colours[1] - object_colours[0]) < _MIN_CONTRAST:
            object_colours[1] = rng.random(3)

    def paint(kind: str, colours: np.ndarray) -> np.ndarray:
        pattern = _TEXTURES[kind](rng, y, x)
        if rng.random() < _TWO_TONE_PROBABILITY:
            pattern = (pattern > 0.5).astype(np.float64)
        return colours[0] + pattern[..., None] * (colours[1] - colours[0])

    background = paint(background_kind, background_colours)
    foreground = paint(object_kind, object_colours)

    shape_kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
    mask = _shape_mask(rng, shape_kind, y, x)
    if rng.random() < 0.3:
        mask |= _shape_mask(rng, shape_kind, y, x)

    image = np.where(mask[..., None], foreground, background)
    image += rng.normal(0.0, _PIXEL_NOISE, size=image.shape)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    return image, derive_boundary(mask, boundary_width)


class SyntheticDataset(SegmentationDataset):
    """The built-in synthetic dataset, generated on the fly (see the module docstring).

    Parameters
    ----------
    num_items : int
        Items per split; split "all" has the train items then the test items.
    image_size : tuple of int or None
        ``(height, width)``; None gives 64x64.
    seed : int
        Non-negative seed; the same seed gives the same items.
    split : {"train", "test", "all"}
    boundary_width : int
        Width of the boundary band in pixels.
    """

    def __init__(
        self,
        num_items: int = 512,
        image_size: tuple[int, int] | None = DEFAULT_SYNTHETIC_SIZE,
        *,
        seed: int = 0,
        split: str = "train",
        boundary_width: int = DEFAULT_BOUNDARY_WIDTH,
    ) -> None:
        check_split(split)
        if isinstance(num_items, bool) or not isinstance(num_items, (int, np.integer)) or num_items < 1:
            raise ValueError(f"num_synthetic must be an integer >= 1, got {num_items!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        size = check_image_size(image_size) or DEFAULT_SYNTHETIC_SIZE
        self.seed = int(seed)
        self.boundary_width = check_boundary_width(boundary_width)

        splits = ("train", "test") if split == "all" else (split,)
        self._keys = [(part, index) for part in splits for index in range(int(num_items))]
        names = [f"synthetic-{index:06d}" if part == "train" else f"synthetic-{part}-{index:06d}" for part, index in self._keys]
        super().__init__(names, size, skipped=())

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        split, item = self._keys[self._check_index(index)]
        assert self.image_size is not None
        return make_synthetic_item(self.seed, item, self.image_size, split=split, boundary_width=self.boundary_width)
