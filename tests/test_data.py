"""Tests of the dataset readers on small image files written to tmp_path, and on the shared photos."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nca_sim.rule import DEFAULT_CLASS_NAMES
from nca_train.data import (
    CLASS_NAMES,
    DEFAULT_BOUNDARY_WIDTH,
    SkippedFilesWarning,
    augment,
    derive_boundary,
    load_images,
    open_dataset,
)
from nca_train.data.transforms import crop_and_resize, flip_horizontal, shift

# --------------------------------------------------------------------------- helpers


def gradient_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth uint8 RGB image that survives JPEG compression recognisably."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None]
    x = np.linspace(0, 1, width)[None, :]
    base = rng.uniform(0.2, 0.8, size=3)
    image = np.stack([base[0] + 0.2 * y + 0 * x, base[1] + 0.2 * x + 0 * y, base[2] + 0.1 * (x + y)], axis=-1)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def save_jpeg(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path, format="JPEG", quality=95)
    return path


def save_mask(path: Path, values: np.ndarray) -> Path:
    Image.fromarray(values.astype(np.uint8), mode="L").save(path, format="PNG")
    return path


def trimap_for(height: int, width: int) -> np.ndarray:
    """Oxford trimap: background 2, a central pet 1, a 1-pixel border 3 around it."""
    trimap = np.full((height, width), 2, dtype=np.uint8)
    trimap[height // 4 : 3 * height // 4, width // 4 : 3 * width // 4] = 3
    trimap[height // 4 + 1 : 3 * height // 4 - 1, width // 4 + 1 : 3 * width // 4 - 1] = 1
    return trimap


def trimap_classes(trimap: np.ndarray) -> np.ndarray:
    """Class indices of an Oxford trimap, by a lookup independent of the reader."""
    return np.select([trimap == 1, trimap == 2, trimap == 3], [1, 0, 2], default=-99)


def binary_for(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4 : 3 * height // 4, width // 3 : 2 * width // 3] = 255
    return mask


def make_oxford(
    root: Path,
    train: list[str],
    test: list[str],
    *,
    size: tuple[int, int] = (30, 40),
    binary: bool = False,
) -> Path:
    """Write an Oxford-IIIT Pet layout with one JPEG and one mask per name."""
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    for index, name in enumerate(train + test):
        save_jpeg(root / "images" / f"{name}.jpg", gradient_rgb(*size, seed=index))
        mask = binary_for(*size) if binary else trimap_for(*size)
        save_mask(root / "annotations" / "trimaps" / f"{name}.png", mask)
    header = "#Image CLASS-ID SPECIES BREED-ID\n"
    (root / "annotations" / "trainval.txt").write_text(header + "".join(f"{n} 1 1 1\n" for n in train))
    (root / "annotations" / "test.txt").write_text("".join(f"{n} 2 2 1\n" for n in test) + "\n")
    return root


def open_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SkippedFilesWarning)
        return open_dataset(*args, **kwargs)


def reference_boundary(mask: np.ndarray, width: int) -> np.ndarray:
    """Brute-force band: object pixels within ceil(w/2) of background, background within floor(w/2) of object."""
    height, width_px = mask.shape
    label = mask.astype(np.int64)
    object_points = np.argwhere(mask)
    background_points = np.argwhere(~mask)
    for y in range(height):
        for x in range(width_px):
            others = background_points if mask[y, x] else object_points
            if len(others) == 0:
                continue
            distance = np.sqrt(((others - [y, x]) ** 2).sum(axis=1)).min()
            radius = math.ceil(width / 2) if mask[y, x] else width // 2
            if distance <= radius:
                label[y, x] = 2
    return label


# --------------------------------------------------------------------------- class names and boundary band


def test_data_package_imports_no_torch():
    code = "import sys, nca_train.data; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_class_names_match_simulator():
    assert CLASS_NAMES == DEFAULT_CLASS_NAMES
    assert CLASS_NAMES == ("background", "object", "boundary")


@pytest.mark.parametrize("width", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("shape", [(13, 17), (9, 9)])
def test_derive_boundary_matches_reference(width, shape):
    rng = np.random.default_rng(width * 100 + shape[0])
    mask = rng.random(shape) < 0.5
    mask[2:7, 2:7] = True
    label = derive_boundary(mask, width)
    assert label.dtype == np.int64
    assert label.shape == shape
    np.testing.assert_array_equal(label, reference_boundary(mask, width))


@pytest.mark.parametrize("width, inside, outside", [(1, 1, 0), (2, 1, 1), (3, 2, 1), (4, 2, 2)])
def test_derive_boundary_band_width_straddles_edge(width, inside, outside):
    mask = np.zeros((8, 20), dtype=bool)
    mask[:, :10] = True  # a vertical edge between columns 9 and 10
    label = derive_boundary(mask, width)
    boundary_columns = np.flatnonzero((label == 2).all(axis=0))
    assert list(boundary_columns) == list(range(10 - inside, 10 + outside))
    assert (label == 2).sum() == 8 * width
    assert set(np.unique(label[:, : 10 - inside])) == {1}
    assert set(np.unique(label[:, 10 + outside :])) == {0}


def test_derive_boundary_ignores_image_border():
    mask = np.zeros((10, 10), dtype=bool)
    mask[:5, :] = True  # touches the top, left and right borders
    label = derive_boundary(mask, 2)
    assert (label[4] == 2).all()
    assert (label[5] == 2).all()
    assert (label[:4] == 1).all()
    assert (label[6:] == 0).all()


def test_derive_boundary_uniform_masks():
    assert (derive_boundary(np.ones((5, 6), dtype=bool), 2) == 1).all()
    assert (derive_boundary(np.zeros((5, 6), dtype=bool), 2) == 0).all()


def test_derive_boundary_rejects_bad_input():
    with pytest.raises(ValueError, match="bool"):
        derive_boundary(np.zeros((4, 4), dtype=np.uint8), 2)
    with pytest.raises(ValueError, match="width"):
        derive_boundary(np.zeros((4, 4), dtype=bool), -1)
    with pytest.raises(ValueError, match="2-D"):
        derive_boundary(np.zeros((4, 4, 1), dtype=bool), 2)


def test_default_boundary_width():
    assert DEFAULT_BOUNDARY_WIDTH == 2


# --------------------------------------------------------------------------- Oxford layout


def test_oxford_trimap_splits_shapes_and_dtypes(tmp_path):
    root = make_oxford(tmp_path / "pets", ["Abyssinian_1", "Bengal_2", "beagle_3"], ["pug_4", "pug_5"])
    train = open_quietly(root, "train", image_size=(16, 24))
    test = open_quietly(root, "test", image_size=(16, 24))
    everything = open_quietly(root, "all", image_size=(16, 24))

    assert train.names == ["Abyssinian_1", "Bengal_2", "beagle_3"]
    assert test.names == ["pug_4", "pug_5"]
    assert everything.names == train.names + test.names
    assert train.image_size == (16, 24)
    assert train.skipped == []
    for index in range(len(everything)):
        image, label = everything[index]
        assert image.shape == (16, 24, 3)
        assert image.dtype == np.float32
        assert image.min() >= 0.0
        assert image.max() <= 1.0
        assert label.shape == (16, 24)
        assert label.dtype == np.int64
        assert set(np.unique(label)) <= {0, 1, 2}


def test_oxford_trimap_values_map_exactly(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [], size=(4, 6))
    trimap = np.array([[1, 2, 3, 1, 2, 3], [2, 2, 2, 1, 1, 1], [3, 3, 3, 3, 3, 3], [1, 1, 1, 2, 2, 2]], dtype=np.uint8)
    save_mask(root / "annotations" / "trimaps" / "a.png", trimap)
    _, label = open_quietly(root, image_size=None)[0]
    expected = np.array([[1, 0, 2, 1, 0, 2], [0, 0, 0, 1, 1, 1], [2, 2, 2, 2, 2, 2], [1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(label, expected)


def test_oxford_native_size_keeps_pixels(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [], size=(30, 40))
    image, label = open_quietly(root, image_size=None)[0]
    assert image.shape == (30, 40, 3)
    np.testing.assert_array_equal(label, trimap_classes(trimap_for(30, 40)))


def test_oxford_binary_masks_auto(tmp_path):
    root = make_oxford(tmp_path / "horses", ["h1", "h2"], ["h3"], size=(40, 60), binary=True)
    dataset = open_quietly(root, "all", image_size=(20, 30))
    for index in range(len(dataset)):
        _, label = dataset[index]
        expected = derive_boundary(binary_for(40, 60)[1::2, 1::2] > 0, DEFAULT_BOUNDARY_WIDTH)
        np.testing.assert_array_equal(label, expected)
    assert set(np.unique(dataset[0][1])) == {0, 1, 2}


def test_binary_band_is_derived_at_final_resolution(tmp_path):
    root = make_oxford(tmp_path / "horses", ["h1"], [], size=(200, 200), binary=True)
    mask = np.zeros((200, 200), dtype=np.uint8)
    mask[:, :100] = 255
    save_mask(root / "annotations" / "trimaps" / "h1.png", mask)
    for width in (2, 3):
        _, label = open_quietly(root, image_size=(20, 20), boundary_width=width)[0]
        assert ((label == 2).sum(axis=1) == width).all()


def test_binary_zero_one_masks(tmp_path):
    root = make_oxford(tmp_path / "masks01", ["a"], [], size=(12, 12))
    values = np.zeros((12, 12), dtype=np.uint8)
    values[3:9, 3:9] = 1
    save_mask(root / "annotations" / "trimaps" / "a.png", values)
    _, label = open_quietly(root, image_size=None, boundary_width=0)[0]
    np.testing.assert_array_equal(label, values.astype(np.int64))


def test_mask_resize_is_nearest(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [], size=(37, 53))
    trimap = np.where(np.add.outer(np.arange(37), np.arange(53)) % 7 < 3, 1, 2).astype(np.uint8)
    save_mask(root / "annotations" / "trimaps" / "a.png", trimap)
    for size in [(16, 16), (19, 11), (64, 80)]:
        _, label = open_quietly(root, image_size=size)[0]
        assert label.shape == size
        assert set(np.unique(label)) == {0, 1}  # no boundary class appears out of 1/2 values


def test_mask_format_forced_and_unknown_values(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [])
    with pytest.raises(ValueError, match=r"a\.png.*\{1, 2, 3\}.*mask_format='binary'"):
        open_dataset(root, mask_format="binary")
    binary_root = make_oxford(tmp_path / "horses", ["b"], [], binary=True)
    with pytest.raises(ValueError, match=r"b\.png.*\{0, 255\}.*mask_format='trimap'"):
        open_dataset(binary_root, mask_format="trimap")

    bad = trimap_for(30, 40)
    bad[0, 0] = 7
    save_mask(root / "annotations" / "trimaps" / "a.png", bad)
    with pytest.raises(ValueError, match=r"annotations/trimaps/a\.png has values \{1, 2, 3, 7\}"):
        open_dataset(root)


def test_trimap_values_subset_and_palette_mask(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [], size=(6, 6))
    palette_mask = Image.fromarray(np.array([[1, 2, 3] * 2] * 6, dtype=np.uint8), mode="P")
    palette_mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    palette_mask.save(root / "annotations" / "trimaps" / "a.png")
    _, label = open_quietly(root, image_size=None)[0]
    np.testing.assert_array_equal(label[0], [1, 0, 2, 1, 0, 2])


def test_bilevel_and_grey_rgb_masks(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a", "b"], [], size=(8, 8))
    values = np.zeros((8, 8), dtype=np.uint8)
    values[2:6, 2:6] = 255
    Image.fromarray(values).convert("1").save(root / "annotations" / "trimaps" / "a.png")
    Image.fromarray(np.repeat(values[..., None], 3, axis=-1)).save(root / "annotations" / "trimaps" / "b.png")
    dataset = open_quietly(root, image_size=None, boundary_width=0)
    for index in range(2):
        np.testing.assert_array_equal(dataset[index][1], (values > 0).astype(np.int64))


def test_colour_mask_is_rejected(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [], size=(8, 8))
    colours = np.zeros((8, 8, 3), dtype=np.uint8)
    colours[2:6, 2:6] = (255, 0, 0)
    Image.fromarray(colours).save(root / "annotations" / "trimaps" / "a.png")
    with pytest.raises(ValueError, match=r"trimaps/a\.png is a colour image whose channels differ"):
        open_dataset(root)


def test_mask_of_wrong_size(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a", "b"], [], size=(30, 40))
    save_mask(root / "annotations" / "trimaps" / "b.png", trimap_for(31, 40))
    with pytest.raises(ValueError, match=r"b\.png is 40x31 \(width x height\).*images/b\.jpg is 40x30"):
        open_dataset(root)


def test_split_file_names_missing_image(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a", "b"], ["c"])
    (root / "images" / "b.jpg").unlink()
    with pytest.raises(ValueError, match=r"image 'b' listed in .*trainval\.txt not found"):
        open_dataset(root, "train")
    assert open_quietly(root, "test").names == ["c"]


def test_missing_trimap_is_an_error(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a", "b"], [])
    (root / "annotations" / "trimaps" / "a.png").unlink()
    with pytest.raises(ValueError, match=r"mask for image a\.jpg not found"):
        open_dataset(root)


def test_missing_split_file(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a", "b"], ["c"])
    (root / "annotations" / "test.txt").unlink()
    with pytest.raises(ValueError, match=r"test\.txt not found for split='test'.*split='all'"):
        open_dataset(root, "test")
    assert open_quietly(root, "all").names == ["a", "b"]

    (root / "annotations" / "trainval.txt").unlink()
    assert open_quietly(root, "all").names == ["a", "b", "c"]


def test_oxford_same_stem_prefers_image(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [])
    (root / "images" / "a.mat").write_bytes(b"MATLAB 5.0 MAT-file")
    (root / "annotations" / "trimaps" / "._a.png").write_bytes(b"\x00\x05\x16\x07 resource fork")
    dataset = open_quietly(root)
    assert dataset.names == ["a"]
    assert dataset.skipped == []


# --------------------------------------------------------------------------- unreadable and unusual images


def test_unreadable_images_are_skipped_and_listed(tmp_path):
    names = ["good", "truncated", "text", "empty", "disguised"]
    root = make_oxford(tmp_path / "pets", names, [])
    images = root / "images"
    noise = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    data = save_jpeg(images / "truncated.jpg", noise).read_bytes()
    (images / "truncated.jpg").write_bytes(data[: len(data) // 2])  # cut inside the entropy-coded data
    (images / "text.jpg").write_text("this is not an image\n")
    (images / "empty.jpg").write_bytes(b"")
    # A JPEG stored under a .png name: decoded by content.
    (images / "disguised.jpg").rename(images / "disguised.png")

    with pytest.warns(SkippedFilesWarning, match=r"skipped 3 unreadable file\(s\).*images/truncated\.jpg.*images/text\.jpg.*images/empty\.jpg"):
        dataset = open_dataset(root)
    assert dataset.names == ["good", "disguised"]
    skipped = dict(dataset.skipped)
    assert list(skipped) == ["images/truncated.jpg", "images/text.jpg", "images/empty.jpg"]
    assert "truncated" in skipped["images/truncated.jpg"]
    assert "cannot identify image file" in skipped["images/text.jpg"]
    assert skipped["images/empty.jpg"] == "empty file (0 bytes)"
    assert dataset[1][0].shape == (64, 64, 3)
    with pytest.warns(SkippedFilesWarning):
        native = open_dataset(root, image_size=None)
    expected = gradient_rgb(30, 40, seed=4).astype(np.float32) / 255
    np.testing.assert_allclose(native[1][0], expected, atol=0.05)


def test_unreadable_mask_is_skipped(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a", "b"], [])
    (root / "annotations" / "trimaps" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.warns(SkippedFilesWarning, match=r"annotations/trimaps/b\.png"):
        dataset = open_dataset(root)
    assert dataset.names == ["a"]
    assert dataset.skipped[0][0] == "annotations/trimaps/b.png"


def test_all_files_unreadable_raises(tmp_path):
    root = make_oxford(tmp_path / "pets", ["a"], [])
    (root / "images" / "a.jpg").write_text("not an image")
    with pytest.warns(SkippedFilesWarning), pytest.raises(ValueError, match=r"no readable image.*images/a\.jpg"):
        open_dataset(root)


def _write_mode_image(path: Path, mode: str) -> np.ndarray:
    """Save a 6x8 image in ``mode`` and return the RGB uint8 array expected after decoding."""
    height, width = 6, 8
    levels = np.linspace(0, 255, height * width).reshape(height, width).astype(np.uint8)
    if mode == "L":
        Image.fromarray(levels, mode="L").save(path, format="PNG")
        return np.repeat(levels[..., None], 3, axis=-1)
    if mode == "RGBA":
        rgba = np.stack([levels, 255 - levels, np.full_like(levels, 40), (levels // 2)], axis=-1)
        Image.fromarray(rgba, mode="RGBA").save(path, format="PNG")
        return rgba[..., :3]
    if mode == "P":
        indices = (np.arange(height * width).reshape(height, width) % 3).astype(np.uint8)
        palette = [10, 20, 30, 200, 100, 0, 0, 255, 255]
        image = Image.fromarray(indices, mode="P")
        image.putpalette(palette + [0] * (768 - len(palette)))
        image.save(path, format="PNG")
        return np.array(palette, dtype=np.uint8).reshape(3, 3)[indices]
    if mode == "CMYK":
        cmyk = np.zeros((height, width, 4), dtype=np.uint8)
        cmyk[..., 0] = 255  # full cyan -> RGB (0, 255, 255)
        Image.fromarray(cmyk, mode="CMYK").save(path, format="JPEG", quality=95)
        return np.broadcast_to(np.array([0, 255, 255], dtype=np.uint8), (height, width, 3))
    if mode == "I;16":
        values16 = (levels.astype(np.uint16) * 257).astype(np.uint16)
        Image.fromarray(values16).save(path, format="PNG")
        return np.repeat(levels[..., None], 3, axis=-1)
    raise AssertionError(mode)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_image_modes_decode_to_rgb(tmp_path, mode):
    path = tmp_path / "image.jpg"  # the extension is wrong for most: decoding sniffs the content
    expected = _write_mode_image(path, mode)
    with Image.open(path) as stored:
        assert stored.mode == mode
    image, label = open_quietly(path, image_size=None)[0]
    assert image.dtype == np.float32
    assert image.shape == (6, 8, 3)
    tolerance = 3 / 255 if mode == "CMYK" else 1e-6
    np.testing.assert_allclose(image, expected.astype(np.float32) / 255, atol=tolerance)
    assert (label == -1).all()


# --------------------------------------------------------------------------- folder layout


def make_folder(root: Path, names: list[str], size: tuple[int, int] = (20, 24)) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, name in enumerate(names):
        save_jpeg(root / "images" / f"{name}.jpeg", gradient_rgb(*size, seed=index))
        save_mask(root / "masks" / f"{name}.png", binary_for(*size))
    return root


def test_folder_layout_splits(tmp_path):
    root = make_folder(tmp_path / "folder", ["c", "a", "b", "d"])
    assert open_quietly(root, "all").names == ["a", "b", "c", "d"]
    assert open_quietly(root, "train").names == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match=r"test\.txt not found for split='test'"):
        open_dataset(root, "test")

    (root / "test.txt").write_text("# held out\nd\nb\n")
    assert open_quietly(root, "train").names == ["a", "c"]
    assert open_quietly(root, "test").names == ["d", "b"]

    (root / "train.txt").write_text("c\n\na\n")
    assert open_quietly(root, "train").names == ["c", "a"]


def test_folder_layout_labels_and_errors(tmp_path):
    root = make_folder(tmp_path / "folder", ["a", "b"], size=(20, 24))
    image, label = open_quietly(root, "all", image_size=(10, 12))[0]
    assert image.shape == (10, 12, 3)
    # Halving with nearest neighbour takes input pixel 2i + 1 for output pixel i (its center).
    np.testing.assert_array_equal(label, derive_boundary(binary_for(20, 24)[1::2, 1::2] > 0, 2))

    (root / "masks" / "b.png").unlink()
    with pytest.raises(ValueError, match=r"mask for image b\.jpeg not found: no file b\.\* in .*masks"):
        open_dataset(root, "all")

    (root / "train.txt").write_text("a\nzebra\n")
    with pytest.raises(ValueError, match=r"image 'zebra' listed in .*train\.txt not found"):
        open_dataset(root, "train")


# --------------------------------------------------------------------------- sources, single files and options


def test_unknown_sources(tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match=r"plain has no dataset layout.*annotations/trimaps.*masks/"):
        open_dataset(tmp_path / "plain")
    with pytest.raises(ValueError, match=r"nowhere not found"):
        open_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"split": "val"}, "split must be one of"),
        ({"image_size": (0, 4)}, "image_size"),
        ({"image_size": (4, 4, 4)}, "image_size"),
        ({"mask_format": "rgb"}, "mask_format"),
        ({"boundary_width": -2}, "boundary_width"),
        ({"num_synthetic": 0}, "num_synthetic"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        open_dataset("synthetic", **options)


def test_single_file_has_unknown_labels(tmp_path):
    path = save_jpeg(tmp_path / "photo.jpg", gradient_rgb(30, 50))
    dataset = open_quietly(path)
    assert len(dataset) == 1
    assert dataset.names == ["photo"]
    image, label = dataset[0]
    assert image.shape == (64, 64, 3)
    assert label.dtype == np.int64
    assert (label == -1).all()

    native = open_quietly(str(path), image_size=None)
    assert native[0][0].shape == (30, 50, 3)


def test_single_file_applies_exif_orientation(tmp_path):
    array = gradient_rgb(10, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    Image.fromarray(array).save(tmp_path / "rotated.jpg", format="JPEG", quality=95, exif=exif.tobytes())
    image, _ = open_quietly(tmp_path / "rotated.jpg", image_size=None)[0]
    assert image.shape == (20, 10, 3)


def test_file_list_and_masks(tmp_path):
    first = save_jpeg(tmp_path / "one.jpg", gradient_rgb(30, 40))
    second = tmp_path / "two.png"
    Image.fromarray(gradient_rgb(30, 40, seed=1)).save(second)
    dataset = open_quietly([first, second], image_size=(15, 20))
    assert dataset.names == ["one", "two"]
    assert all((dataset[i][1] == -1).all() for i in range(2))

    mask = save_mask(tmp_path / "one_mask.png", trimap_for(30, 40))
    labelled = load_images([first], [mask], image_size=None)
    np.testing.assert_array_equal(labelled[0][1], trimap_classes(trimap_for(30, 40)))

    with pytest.raises(ValueError, match="1 mask paths"):
        load_images([first, second], [mask])
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        load_images([tmp_path / "missing.jpg"])


def test_single_unreadable_file_raises(tmp_path):
    path = tmp_path / "broken.jpg"
    path.write_text("not an image")
    with pytest.warns(SkippedFilesWarning), pytest.raises(ValueError, match=r"no readable image in .*broken\.jpg"):
        open_dataset(path)


def test_dataset_indexing(tmp_path):
    dataset = open_dataset("synthetic", num_synthetic=3)
    np.testing.assert_array_equal(dataset[-1][0], dataset[2][0])
    assert len(list(dataset)) == 3
    with pytest.raises(IndexError, match="index 3 is out of range"):
        dataset[3]
    with pytest.raises(TypeError, match="integer"):
        dataset["0"]


# --------------------------------------------------------------------------- synthetic set


def test_synthetic_default_set():
    dataset = open_dataset(None)
    assert len(dataset) == 512
    assert dataset.names[17] == "synthetic-000017"
    assert dataset.image_size == (64, 64)
    assert dataset.skipped == []
    image, label = dataset[17]
    assert image.dtype == np.float32
    assert image.shape == (64, 64, 3)
    assert image.min() >= 0.0
    assert image.max() <= 1.0
    assert label.dtype == np.int64
    assert set(np.unique(label)) == {0, 1, 2}


def test_synthetic_is_deterministic():
    first = open_dataset("synthetic", seed=3, num_synthetic=8)
    second = open_dataset("synthetic", seed=3, num_synthetic=100)
    other_seed = open_dataset("synthetic", seed=4, num_synthetic=8)
    test_split = open_dataset("synthetic", "test", seed=3, num_synthetic=8)
    for index in range(8):
        np.testing.assert_array_equal(first[index][0], second[index][0])
        np.testing.assert_array_equal(first[index][1], second[index][1])
        assert not np.array_equal(first[index][0], other_seed[index][0])
        assert not np.array_equal(first[index][0], test_split[index][0])
    assert test_split.names[0] == "synthetic-test-000000"
    everything = open_dataset("synthetic", "all", seed=3, num_synthetic=8)
    assert len(everything) == 16
    np.testing.assert_array_equal(everything[8][0], test_split[0][0])


@pytest.mark.parametrize("size", [(31, 47), (64, 17), (9, 9), (1, 5)])
def test_synthetic_odd_sizes(size):
    dataset = open_dataset("synthetic", image_size=size, num_synthetic=4)
    for index in range(4):
        image, label = dataset[index]
        assert image.shape == (*size, 3)
        assert label.shape == size
        assert set(np.unique(label)) <= {0, 1, 2}
    assert open_dataset("synthetic", image_size=None, num_synthetic=1)[0][0].shape == (64, 64, 3)


def test_synthetic_objects_and_boundary_present():
    dataset = open_dataset("synthetic", num_synthetic=64)
    object_fractions = []
    for index in range(len(dataset)):
        _, label = dataset[index]
        assert (label == 1).any()
        assert (label == 2).any()
        object_fractions.append((label >= 1).mean())
    assert 0.15 < np.mean(object_fractions) < 0.5


def test_synthetic_colour_threshold_cannot_separate():
    """The best single-channel threshold over the whole set is close to chance."""
    dataset = open_dataset("synthetic", num_synthetic=96)
    images, labels = zip(*(dataset[i] for i in range(len(dataset))))
    pixels = np.stack(images).reshape(-1, 3)
    classes = np.stack(labels).reshape(-1)
    keep = classes != 2
    pixels, is_object = pixels[keep], classes[keep] == 1
    majority = max(is_object.mean(), 1 - is_object.mean())

    for channel in range(3):
        order = np.argsort(pixels[:, channel], kind="stable")
        sorted_object = is_object[order]
        objects_below = np.cumsum(sorted_object)
        background_below = np.cumsum(~sorted_object)
        total_objects = sorted_object.sum()
        total_background = len(sorted_object) - total_objects
        # Predict "object" above the threshold, or below it (the 1 - x terms).
        recall_object = (total_objects - objects_below) / total_objects
        recall_background = background_below / total_background
        balanced = (recall_object + recall_background) / 2
        accuracy = (background_below + total_objects - objects_below) / len(sorted_object)
        best_balanced = np.maximum(balanced, 1 - balanced).max()
        best_accuracy = np.maximum(accuracy, 1 - accuracy).max()
        assert best_balanced < 0.6, f"channel {channel}: balanced accuracy {best_balanced:.3f}"
        assert best_accuracy < 0.8, f"channel {channel}: accuracy {best_accuracy:.3f}"
        assert best_accuracy < majority + 0.02, f"channel {channel}: {best_accuracy:.3f} vs majority {majority:.3f}"


# --------------------------------------------------------------------------- augmentations


def coded_pair(height: int = 24, width: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """An image whose red channel is label / 2, with background on the border."""
    label = np.zeros((height, width), dtype=np.int64)
    label[4:14, 3:12] = 1
    label[14:20, 6:16] = 2
    image = np.random.default_rng(0).random((height, width, 3)).astype(np.float32)
    image[..., 0] = label / 2
    return image, label


def test_flip_twice_is_identity():
    image, label = coded_pair()
    flipped_image, flipped_label = flip_horizontal(image, label)
    assert flipped_image[3, 0, 1] == image[3, -1, 1]
    np.testing.assert_array_equal(flip_horizontal(flipped_image, flipped_label)[0], image)
    np.testing.assert_array_equal(flip_horizontal(flipped_image, flipped_label)[1], label)


def test_shift_moves_known_pixel():
    image, label = coded_pair()
    moved_image, moved_label = shift(image, label, 3, -2)
    assert moved_image[4 + 3, 3 - 2].tolist() == image[4, 3].tolist()
    assert moved_label[4 + 3, 3 - 2] == label[4, 3] == 1
    # Uncovered rows repeat the top row of the image; uncovered label pixels are background.
    np.testing.assert_array_equal(moved_image[0, 0], image[0, 2])
    np.testing.assert_array_equal(moved_image[:3, :-2], np.broadcast_to(image[0, 2:], (3, 18, 3)))
    assert (moved_label[:3] == 0).all()
    assert (moved_label[:, -2:] == 0).all()
    assert moved_image.dtype == image.dtype
    assert moved_label.dtype == label.dtype


def test_crop_and_resize_exact_upsampling():
    image, label = coded_pair(24, 20)
    new_image, new_label = crop_and_resize(image, label, 4, 6, 12, 10)
    # Scale 2: output pixels (2y, 2x) and (2y + 1, 2x + 1) take input (4 + y, 6 + x) by nearest.
    np.testing.assert_array_equal(new_label[::2, ::2], label[4:16, 6:16])
    np.testing.assert_array_equal(new_label[1::2, 1::2], label[4:16, 6:16])
    assert set(np.unique(new_label)) <= set(np.unique(label))
    # Output pixel (5, 5) has its center at input (4 + 2.25, 6 + 2.25): weights 0.75 and 0.25 per axis.
    source = image[4:16, 6:16]
    assert new_image.shape == image.shape
    np.testing.assert_allclose(new_image[5, 5], 0.5625 * source[2, 2] + 0.1875 * source[2, 3] + 0.1875 * source[3, 2] + 0.0625 * source[3, 3], rtol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        crop_and_resize(image, label, 20, 0, 10, 10)


def test_augment_keeps_alignment_without_crop():
    image, label = coded_pair()
    for seed in range(20):
        new_image, new_label = augment(image, label, np.random.default_rng(seed), crop_scale=None, max_shift=0.2)
        np.testing.assert_array_equal(new_image[..., 0] * 2, new_label.astype(np.float32))


def test_augment_keeps_alignment_with_crop():
    image, label = coded_pair(48, 40)
    for seed in range(20):
        new_image, new_label = augment(image, label, np.random.default_rng(seed), crop_scale=(0.6, 0.9))
        assert new_image.shape == image.shape
        assert new_image.dtype == np.float32
        assert new_label.dtype == np.int64
        assert set(np.unique(new_label)) <= {0, 1, 2}
        agreement = (np.rint(new_image[..., 0] * 2) == new_label).mean()
        assert agreement > 0.9, f"seed {seed}: {agreement:.3f}"


def test_augment_is_deterministic_and_varies():
    image, label = coded_pair()
    first = augment(image, label, np.random.default_rng(7))
    second = augment(image, label, np.random.default_rng(7))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    outputs = {augment(image, label, np.random.default_rng(seed))[1].tobytes() for seed in range(10)}
    assert len(outputs) > 5
    untouched = augment(image, label, np.random.default_rng(0), flip=False, crop_scale=None, max_shift=0)
    np.testing.assert_array_equal(untouched[0], image)
    np.testing.assert_array_equal(untouched[1], label)


def test_augment_rejects_bad_arguments():
    image, label = coded_pair()
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="crop_scale"):
        augment(image, label, rng, crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="max_shift"):
        augment(image, label, rng, max_shift=1.5)
    with pytest.raises(ValueError, match="same size"):
        augment(image, label[:-1], rng)


# --------------------------------------------------------------------------- real photos


@pytest.mark.realdata
def test_horse_photos(horse_dir):
    train = open_quietly(horse_dir, "train")
    test = open_quietly(horse_dir, "test")
    assert len(train) == 262
    assert len(test) == 66
    assert train.names[0] == "horse001"
    assert set(train.names).isdisjoint(test.names)
    classes = set()
    for index in range(0, len(train), 13):
        image, label = train[index]
        assert image.shape == (64, 64, 3)
        assert set(np.unique(label)) <= {0, 1, 2}
        classes |= set(np.unique(label).tolist())
    assert classes == {0, 1, 2}
    for index in range(len(test)):
        assert set(np.unique(test[index][1])) == {0, 1, 2}


@pytest.mark.realdata
def test_pet_photos(pet_dir):
    train = open_quietly(pet_dir, "train")
    test = open_quietly(pet_dir, "test", image_size=None)
    assert len(train) == 21
    assert len(test) == 5
    for dataset in (train, test):
        for index in range(len(dataset)):
            image, label = dataset[index]
            assert image.shape[:2] == label.shape
            assert set(np.unique(label)) <= {0, 1, 2}
    assert min(test[0][0].shape[:2]) == 128
    assert set(np.unique(train[0][1])) == {0, 1, 2}
