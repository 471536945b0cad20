"""The simulator's changing input: shifts, swaps and labels that follow the image."""

from __future__ import annotations

import numpy as np
import pytest

from nca_sim.inputs import InputPosition, InputSequence, images_needed, shift_image


def numbered_image(height=4, width=5):
    """An image whose red channel is the pixel's flat index, so moves are easy to read."""
    image = np.zeros((height, width, 3), np.float32)
    image[..., 0] = np.arange(height * width).reshape(height, width)
    return image


def test_shift_image_down_right():
    image = numbered_image()
    label = np.arange(20).reshape(4, 5) % 3
    shifted, shifted_label = shift_image(image, label, 1, 2, fill_color=(0.5, 0.25, 1.0))

    assert shifted.shape == image.shape
    assert shifted.dtype == np.float32
    np.testing.assert_array_equal(shifted[1:, 2:, 0], image[:-1, :-2, 0])
    np.testing.assert_array_equal(shifted[0, :], np.tile([0.5, 0.25, 1.0], (5, 1)))
    np.testing.assert_array_equal(shifted[:, :2], np.tile([0.5, 0.25, 1.0], (4, 2, 1)))
    np.testing.assert_array_equal(shifted_label[1:, 2:], label[:-1, :-2])
    assert np.all(shifted_label[0, :] == 0)
    assert np.all(shifted_label[:, :2] == 0)


def test_shift_image_up_left():
    image = numbered_image()
    label = np.full((4, 5), -1, np.int8)
    label[3, 4] = 2
    shifted, shifted_label = shift_image(image, label, -3, -4)

    assert shifted[0, 0, 0] == image[3, 4, 0]
    assert np.count_nonzero(shifted[..., 0]) == 1
    assert shifted_label[0, 0] == 2
    # Every other pixel is vacated, so it becomes background (0), not unknown (-1).
    assert np.all(shifted_label.ravel()[1:] == 0)


def test_shift_image_beyond_size():
    image = numbered_image() + 1
    shifted, label = shift_image(image, None, 10, -10)
    assert label is None
    assert np.all(shifted == 0)


def test_shift_image_zero_is_copy():
    image = numbered_image()
    label = np.ones((4, 5), np.int64)
    shifted, shifted_label = shift_image(image, label, 0, 0)
    np.testing.assert_array_equal(shifted, image)
    np.testing.assert_array_equal(shifted_label, label)
    assert shifted_label.dtype == np.int64


def test_position_fixed_image():
    inputs = InputSequence(np.zeros((2, 3, 3, 3), np.float32))
    assert [inputs.position(step) for step in (0, 1, 100)] == [InputPosition(0)] * 3


def test_position_swap_wraps():
    images = np.stack([numbered_image() + i for i in range(3)])
    inputs = InputSequence(images, shift_every=2, change="swap")
    indices = [inputs.position(step).image_index for step in range(0, 10)]
    # Steps 0..2 show image 0, 3..4 image 1, 5..6 image 2, then image 0 again.
    assert indices == [0, 0, 0, 1, 1, 2, 2, 0, 0, 1]
    assert all(inputs.position(step).shift_y == 0 for step in range(10))


def test_swap_labels_follow_image():
    images = np.stack([numbered_image() + 100 * i for i in range(2)])
    labels = np.stack([np.full((4, 5), i, np.int64) for i in range(2)])
    inputs = InputSequence(images, labels, shift_every=3, change="swap")
    image, label = inputs.render(inputs.position(4))
    np.testing.assert_array_equal(image, images[1])
    np.testing.assert_array_equal(label, np.ones((4, 5)))
    assert label.dtype == np.int8


def test_shift_offsets_relative_to_original():
    image = numbered_image(8, 8)
    label = (np.arange(64).reshape(8, 8) % 3).astype(np.int64)
    inputs = InputSequence(image[None], label[None], shift_every=5, change="shift", max_shift=3, seed=7)

    assert inputs.position(5) == InputPosition(0)  # the first N steps see the original image
    offsets = [inputs.position(5 * k + 1) for k in range(1, 30)]
    assert all(abs(p.shift_y) <= 3 for p in offsets)
    assert all(abs(p.shift_x) <= 3 for p in offsets)
    assert len({(p.shift_y, p.shift_x) for p in offsets}) > 5
    for position in offsets[:5]:
        image_shown, label_shown = inputs.render(position)
        expected, expected_label = shift_image(image, label, position.shift_y, position.shift_x)
        np.testing.assert_array_equal(image_shown, expected)
        np.testing.assert_array_equal(label_shown, expected_label)
    # Steps inside one interval share the offset.
    assert inputs.position(6) == inputs.position(10)


def test_shift_offsets_depend_only_on_seed_and_change():
    image = np.zeros((1, 8, 8, 3), np.float32)
    first = InputSequence(image, shift_every=4, change="shift", max_shift=2, seed=1)
    second = InputSequence(image, shift_every=4, change="shift", max_shift=2, seed=1)
    other = InputSequence(image, shift_every=4, change="shift", max_shift=2, seed=2)
    steps = [20, 3, 41, 9]  # any order: no hidden generator state
    expected = {step: first.position(step) for step in steps}
    assert {step: second.position(step) for step in reversed(steps)} == expected
    assert [first.position(s) for s in range(5, 80, 4)] != [other.position(s) for s in range(5, 80, 4)]


@pytest.mark.parametrize(
    "steps, shift_every, change, available, expected",
    [(10, 0, "none", 5, 1), (10, 5, "shift", 5, 1), (10, 5, "swap", 5, 2), (11, 5, "swap", 5, 3),
     (100, 5, "swap", 4, 4), (0, 5, "swap", 4, 1)],
)
def test_images_needed(steps, shift_every, change, available, expected):
    assert images_needed(steps, shift_every, change, available) == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"change": "rotate", "shift_every": 2}, "change='rotate'"),
        ({"change": "swap", "shift_every": 0}, "shift_every = 0"),
        ({"change": "none", "shift_every": 3}, "shift_every > 0"),
        ({"shift_every": -1, "change": "shift"}, "shift_every=-1"),
        ({"max_shift": -2}, "max_shift=-2"),
        ({"fill_color": (2.0, 0.0, 0.0)}, "fill_color"),
    ],
)
def test_input_sequence_rejects_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InputSequence(np.zeros((1, 4, 4, 3), np.float32), **kwargs)


def test_input_sequence_rejects_bad_arrays():
    with pytest.raises(ValueError, match="expected \\(n, height, width, 3\\)"):
        InputSequence(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="expected float"):
        InputSequence(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="to match the images"):
        InputSequence(np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4, 5), np.int64))
    with pytest.raises(ValueError, match="integer classes"):
        InputSequence(np.zeros((1, 4, 4, 3), np.float32), np.zeros((1, 4, 4), np.float32))
    with pytest.raises(ValueError, match="step=-1"):
        InputSequence(np.zeros((1, 4, 4, 3), np.float32)).position(-1)
