"""The input images of a simulation run, and how they change while it runs.

A run starts on the first image of its input set. With ``shift_every = N > 0``
the input changes after every N steps:

- ``"shift"`` translates the first image by a random offset of at most
  ``max_shift`` pixels along each axis. Every offset is relative to the
  original image, not to the previous shift. Pixels that the shift vacates get
  ``fill_color`` and the background class (0).
- ``"swap"`` moves to the next image of the set, wrapping around at its end.

Labels move with their image, so IoU against the shown image stays meaningful.
The offset of change k is drawn from a generator seeded with ``(seed, k)`` alone,
so the input at any step is a pure function of the step, which makes resuming a
run need no random state for its input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHANGES = ("none", "shift", "swap")

# Salt that separates the input generator's streams from the simulator's, which
# may also be seeded with the run's seed.
_SHIFT_STREAM = 0x5F1F7


@dataclass(frozen=True)
class InputPosition:
    """The input in effect at a step: which image of the set, and how it is shifted."""

    image_index: int
    shift_y: int = 0
    shift_x: int = 0


def images_needed(steps: int, shift_every: int, change: str, available: int) -> int:
    """Return how many images of a set of ``available`` images a run of ``steps`` steps shows."""
    if change != "swap" or shift_every <= 0:
        return min(1, available)
    # Steps 0..N show image 0, steps N+1..2N image 1, and so on.
    images_shown = max(1, math.ceil(steps / shift_every))
    return min(available, images_shown)


def shift_image(
    image: np.ndarray, label: np.ndarray | None, shift_y: int, shift_x: int, fill_color=(0.0, 0.0, 0.0)
) -> tuple[np.ndarray, np.ndarray | None]:
    """Translate an image and its label by whole pixels.

    Positive ``shift_y`` moves the content down and positive ``shift_x`` moves it
    right. Vacated pixels get ``fill_color`` in the image and class 0
    (background) in the label; content shifted past the border is dropped.

    Returns
    -------
    image, label
        New arrays of the same shapes and dtypes; ``label`` is None when the input
        label is None.
    """
    height, width = image.shape[:2]
    shifted = np.empty_like(image)
    shifted[...] = np.asarray(fill_color, dtype=image.dtype)
    shifted_label = None if label is None else np.zeros_like(label)

    # Source and destination windows along each axis; empty when |shift| >= size.
    def window(shift, size):
        if shift >= 0:
            return slice(0, max(size - shift, 0)), slice(min(shift, size), size)
        return slice(min(-shift, size), size), slice(0, max(size + shift, 0))

    source_y, target_y = window(shift_y, height)
    source_x, target_x = window(shift_x, width)
    shifted[target_y, target_x] = image[source_y, source_x]
    if label is not None:
        shifted_label[target_y, target_x] = label[source_y, source_x]
    return shifted, shifted_label


class InputSequence:
    """The images and labels a run shows, and which one is shown at each step.

    Parameters
    ----------
    images
        ``(n, height, width, 3)`` float32 in [0, 1], in the order a swap visits them.
    labels
        ``(n, height, width)`` integer classes, -1 where unknown; None when no
        label is known.
    shift_every
        Steps between two changes of the input; 0 keeps the first image for the
        whole run.
    change
        ``"shift"``, ``"swap"`` or ``"none"`` (``"none"`` requires ``shift_every = 0``
        and the reverse).
    max_shift
        Largest offset of a shift along each axis, in pixels.
    seed
        Seed of the shift offsets.
    fill_color
        RGB value in [0, 1] of the pixels that a shift vacates.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray | None = None,
        *,
        shift_every: int = 0,
        change: str = "none",
        max_shift: int = 0,
        seed: int = 0,
        fill_color=(0.0, 0.0, 0.0),
    ):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] < 1:
            raise ValueError(
                f"images have shape {images.shape}; expected (n, height, width, 3) with n >= 1"
            )
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images have dtype {images.dtype}; expected float values in [0, 1]")
        self.images = np.ascontiguousarray(images, dtype=np.float32)
        if labels is not None:
            labels = np.asarray(labels)
            if labels.shape != images.shape[:3]:
                raise ValueError(f"labels have shape {labels.shape}; expected {images.shape[:3]} to match the images")
            if not np.issubdtype(labels.dtype, np.integer):
                raise ValueError(f"labels have dtype {labels.dtype}; expected integer classes (-1 unknown)")
            labels = labels.astype(np.int8)
        self.labels = labels

        if change not in CHANGES:
            raise ValueError(f"change={change!r} is not supported: expected one of {', '.join(CHANGES)}")
        if not isinstance(shift_every, (int, np.integer)) or shift_every < 0:
            raise ValueError(f"shift_every={shift_every!r} is invalid: expected an integer >= 0 (0 for a fixed image)")
        if (change == "none") != (shift_every == 0):
            raise ValueError(
                f"change={change!r} with shift_every={shift_every}: pass change 'shift' or 'swap' "
                "together with shift_every > 0, or change 'none' with shift_every = 0"
            )
        if not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise ValueError(f"max_shift={max_shift!r} is invalid: expected an integer >= 0 (pixels)")
        fill = np.asarray(fill_color, dtype=np.float32)
        if fill.shape != (3,) or not np.all((fill >= 0) & (fill <= 1)):
            raise ValueError(f"fill_color={fill_color!r} is invalid: expected 3 values in [0, 1]")
        self.shift_every = int(shift_every)
        self.change = change
        self.max_shift = int(max_shift)
        self.seed = int(seed)
        self.fill_color = tuple(float(value) for value in fill)

    @property
    def count(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.images.shape[1], self.images.shape[2]

    def change_index(self, step: int) -> int:
        """Return how many input changes happened before ``step`` was computed.

        Steps 1..N read the first input, steps N+1..2N the second, and so on; step
        0 (the initial state) records the first input.
        """
        if step < 0:
            raise ValueError(f"step={step} is invalid: expected step >= 0")
        if self.shift_every == 0:
            return 0
        return max(step - 1, 0) // self.shift_every

    def position(self, step: int) -> InputPosition:
        """Return the input that the update from ``step - 1`` to ``step`` reads."""
        k = self.change_index(step)
        if self.change == "swap":
            return InputPosition(k % self.count)
        if self.change == "shift" and k > 0 and self.max_shift > 0:
            generator = np.random.default_rng([self.seed, _SHIFT_STREAM, k])
            shift_y, shift_x = generator.integers(-self.max_shift, self.max_shift, size=2, endpoint=True)
            return InputPosition(0, int(shift_y), int(shift_x))
        return InputPosition(0)

    def render(self, position: InputPosition) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the image and label (None when unknown) shown at ``position``."""
        image = self.images[position.image_index]
        label = None if self.labels is None else self.labels[position.image_index]
        if position.shift_y == 0 and position.shift_x == 0:
            return image, label
        return shift_image(image, label, position.shift_y, position.shift_x, self.fill_color)
