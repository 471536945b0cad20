"""Decode image and mask files by content with Pillow, and resize them.

Pillow identifies a file from its first bytes, so a PNG named ``.jpg`` decodes
as a PNG. Images become 8-bit RGB:

- greyscale (``L``, ``1``) is repeated over the three channels;
- alpha (``RGBA``, ``LA``, ``PA``, palette transparency) is dropped, keeping the
  stored colour of transparent pixels;
- palette (``P``) and ``CMYK`` images go through Pillow's conversion to RGB;
- 16-bit greyscale (``I;16`` variants, and 32-bit ``I``) is divided by 257 to
  give 8 bits. Float images (``F``) are clipped to [0, 1] and scaled by 255.

NOTE: EXIF orientation is applied only to images that have no mask, because
annotations are drawn on the stored pixel grid.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Errors Pillow raises on files it cannot identify or decode: UnidentifiedImageError
# and "image file is truncated" are OSError; some plugins raise SyntaxError,
# ValueError or EOFError on corrupt data.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)

# Images are reduced to the training resolution with Pillow's bilinear filter,
# which widens its support when downscaling (so it antialiases) and, unlike
# Lanczos, does not ring at sharp edges. Masks use nearest neighbour so that no
# new label values appear.
IMAGE_RESAMPLE = Image.Resampling.BILINEAR
MASK_RESAMPLE = Image.Resampling.NEAREST


class UnreadableFileError(Exception):
    """A file that exists but that Pillow cannot identify or fully decode."""


def _describe_error(path: Path, error: BaseException) -> str:
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    message = str(error) or type(error).__name__
    # Pillow names the full path in "cannot identify image file '...'"; the caller
    # already reports the file name.
    return message.replace(f" {str(path)!r}", "")


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        values = np.asarray(image, dtype=np.float64)
        grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        grey = np.rint(np.clip(values, 0.0, 1.0) * 255.0).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "RGB":
        return image
    return image.convert("RGB")


def decode_image(
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
    *,
    apply_exif_orientation: bool = False,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image file into 8-bit RGB, optionally resized.

    Parameters
    ----------
    path
        Image file in any format Pillow reads.
    size
        ``(height, width)`` to resize to, or None for the native size.
    apply_exif_orientation
        Rotate or flip the image as its EXIF orientation tag specifies.

    Returns
    -------
    image : numpy.ndarray of uint8, shape (height, width, 3)
    native_size : tuple of int
        ``(height, width)`` of the stored image before resizing (after the EXIF
        transpose when that applies).

    Raises
    ------
    UnreadableFileError
        When Pillow cannot identify the file or the data is truncated or corrupt.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            if apply_exif_orientation:
                image = ImageOps.exif_transpose(image)
            native_width, native_height = image.size
            if size is not None and image.format == "JPEG" and not apply_exif_orientation:
                # Let the JPEG decoder downscale by 2, 4 or 8 in the DCT domain while
                # staying at least as large as the target: several times faster, and
                # the bilinear resize below still sets the final size.
                image.draft(None, (size[1], size[0]))
            image.load()
            rgb = _to_rgb(image)
            if size is not None and rgb.size != (size[1], size[0]):
                rgb = rgb.resize((size[1], size[0]), IMAGE_RESAMPLE)
            array = np.asarray(rgb, dtype=np.uint8).copy()
    except DECODE_ERRORS as error:
        raise UnreadableFileError(_describe_error(path, error)) from error
    return array, (native_height, native_width)


def decode_mask(path: str | os.PathLike) -> np.ndarray:
    """Decode a mask file into a 2-D array of its stored integer values, at native size.

    Palette (``P``) masks give their palette indices, bilevel (``1``) masks give 0
    and 255, and ``LA`` masks their ``L`` channel. Colour masks are accepted only
    when all three channels are equal.

    Raises
    ------
    UnreadableFileError
        When Pillow cannot identify the file or the data is truncated or corrupt.
    ValueError
        For a colour mask whose channels differ.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "1":
                values = np.asarray(image.convert("L"))
            elif mode in ("L", "P") or mode.startswith("I"):
                values = np.asarray(image)
            elif mode in ("LA", "PA"):
                values = np.asarray(image.getchannel(0))
            else:
                values = np.asarray(image.convert("RGB"))
    except DECODE_ERRORS as error:
        raise UnreadableFileError(_describe_error(path, error)) from error

    if values.ndim == 3:
        if not (np.array_equal(values[..., 0], values[..., 1]) and np.array_equal(values[..., 0], values[..., 2])):
            raise ValueError(
                f"mask {path} is a colour image whose channels differ; save it as "
                "8-bit greyscale with one class value per pixel"
            )
        values = values[..., 0]
    return values


def resize_mask(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D array of label values in [0, 255] with nearest neighbour."""
    if values.shape == tuple(size):
        return values.copy()
    image = Image.fromarray(values.astype(np.uint8), mode="L")
    resized = image.resize((size[1], size[0]), MASK_RESAMPLE)
    return np.asarray(resized).astype(values.dtype)
