"""Random augmentations that keep an image and its label aligned.

All functions take an image (height, width, channels) and a label (height, width),
return new arrays of the same shapes and dtypes, and draw randomness only from the
given generator, so the same generator state gives the same output.
"""

from __future__ import annotations

import numpy as np

from nca_train.data.masks import BACKGROUND


def _check_pair(image: np.ndarray, label: np.ndarray) -> None:
    if image.ndim != 3 or label.ndim != 2 or image.shape[:2] != label.shape:
        raise ValueError(
            f"expected image (height, width, channels) and label (height, width) of the same size, "
            f"got shapes {image.shape} and {label.shape}"
        )


def flip_horizontal(image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image and label left to right."""
    _check_pair(image, label)
    return image[:, ::-1].copy(), label[:, ::-1].copy()


def crop_and_resize(
    image: np.ndarray, label: np.ndarray, top: int, left: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the box (top, left, height, width) and scale it back to the input size.

    The image is interpolated bilinearly and the label takes the nearest pixel, so
    the label gains no new values. Pixel centers map onto pixel centers.
    """
    _check_pair(image, label)
    out_height, out_width = label.shape
    if not (0 <= top and 0 <= left and height >= 1 and width >= 1 and top + height <= out_height and left + width <= out_width):
        raise ValueError(
            f"crop box top={top}, left={left}, height={height}, width={width} does not fit in "
            f"a {out_height}x{out_width} image"
        )

    # Position, in input pixels, of each output pixel's center.
    source_y = top + (np.arange(out_height) + 0.5) * (height / out_height) - 0.5
    source_x = left + (np.arange(out_width) + 0.5) * (width / out_width) - 0.5

    nearest_y = np.clip(np.floor(source_y + 0.5).astype(np.int64), top, top + height - 1)
    nearest_x = np.clip(np.floor(source_x + 0.5).astype(np.int64), left, left + width - 1)
    new_label = label[nearest_y[:, None], nearest_x[None, :]]

    source_y = np.clip(source_y, 0, out_height - 1)
    source_x = np.clip(source_x, 0, out_width - 1)
    y0 = np.floor(source_y).astype(np.int64)
    x0 = np.floor(source_x).astype(np.int64)
    y1 = np.minimum(y0 + 1, out_height - 1)
    x1 = np.minimum(x0 + 1, out_width - 1)
    fy = (source_y - y0).astype(image.dtype)[:, None, None]
    fx = (source_x - x0).astype(image.dtype)[None, :, None]
    top_row = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom_row = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    new_image = (top_row * (1 - fy) + bottom_row * fy).astype(image.dtype)
    return new_image, new_label


def shift(image: np.ndarray, label: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    """Translate content by (dy, dx) pixels: the input pixel (y, x) moves to (y + dy, x + dx).

    Uncovered image pixels repeat the nearest edge pixel of the input; uncovered
    label pixels are background (0).
    """
    _check_pair(image, label)
    height, width = label.shape
    rows = np.arange(height) - dy
    cols = np.arange(width) - dx
    new_image = image[np.clip(rows, 0, height - 1)][:, np.clip(cols, 0, width - 1)]

    new_label = np.full_like(label, BACKGROUND)
    inside_rows = (rows >= 0) & (rows < height)
    inside_cols = (cols >= 0) & (cols < width)
    new_label[np.ix_(inside_rows, inside_cols)] = label[np.ix_(rows[inside_rows], cols[inside_cols])]
    return new_image, new_label


def augment(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    flip: bool = True,
    crop_scale: tuple[float, float] | None = (0.75, 1.0),
    max_shift: float = 0.125,
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a random crop, horizontal flip and shift, in that order.

    Parameters
    ----------
    image : numpy.ndarray, shape (height, width, channels)
    label : numpy.ndarray, shape (height, width)
    rng : numpy.random.Generator
        Source of all randomness.
    flip : bool
        Mirror left to right with probability 1/2.
    crop_scale : (float, float) or None
        Range of the crop's side as a fraction of the image side. One fraction is
        drawn uniformly for both sides. The crop is scaled back to the input size, so
        the boundary band widens by up to 1 / crop_scale[0]. None disables cropping.
    max_shift : float
        Largest shift as a fraction of the height and of the width; the shift in
        pixels is drawn uniformly from the integers within it. 0 disables shifting.

    Returns
    -------
    image, label : numpy.ndarray
        New arrays with the input shapes and dtypes.
    """
    _check_pair(image, label)
    height, width = label.shape
    if crop_scale is not None and not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale!r}")
    if not 0.0 <= max_shift < 1.0:
        raise ValueError(f"max_shift must be a fraction in [0, 1), got {max_shift!r}")

    if crop_scale is not None:
        scale = rng.uniform(crop_scale[0], crop_scale[1])
        crop_height = max(1, round(scale * height))
        crop_width = max(1, round(scale * width))
        top = int(rng.integers(0, height - crop_height + 1))
        left = int(rng.integers(0, width - crop_width + 1))
        if (crop_height, crop_width) != (height, width):
            image, label = crop_and_resize(image, label, top, left, crop_height, crop_width)

    if flip and rng.random() < 0.5:
        image, label = flip_horizontal(image, label)

    limit_y = int(max_shift * height)
    limit_x = int(max_shift * width)
    dy = int(rng.integers(-limit_y, limit_y + 1))
    dx = int(rng.integers(-limit_x, limit_x + 1))
    if dy or dx:
        image, label = shift(image, label, dy, dx)

    return np.array(image, copy=True), np.array(label, copy=True)
