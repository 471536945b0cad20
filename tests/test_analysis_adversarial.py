"""Adversarial region search against a small rule trained in the test session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from analysis.adversarial import (  # noqa: E402
    adversarial_search,
    distance_to_region,
    parse_region,
    plot_adversarial,
    write_adversarial_image,
)
from nca_sim.rule import Architecture, save_rule  # noqa: E402
from nca_train.model import SegmentationNCA  # noqa: E402

SIZE = 16
STEPS = 20


def square_images(count, rng):
    """Dark images with one bright square object of side 4 to 7; labels 1 on the square."""
    images = np.full((count, SIZE, SIZE, 3), 0.1, np.float32)
    labels = np.zeros((count, SIZE, SIZE), np.int64)
    for i in range(count):
        side = int(rng.integers(4, 8))
        y, x = rng.integers(0, SIZE - side, 2)
        images[i, y:y + side, x:x + side] = 0.9
        labels[i, y:y + side, x:x + side] = 1
    images += rng.normal(0.0, 0.03, images.shape).astype(np.float32)
    return np.clip(images, 0.0, 1.0), labels


@pytest.fixture(scope="session")
def square_rule(tmp_path_factory):
    """A rule trained for 300 Adam steps to segment bright squares (about 6 s on one core)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = SegmentationNCA(Architecture(state_channels=8, hidden_channels=16, num_layers=2))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(300):
        images, labels = square_images(8, rng)
        steps = int(rng.integers(12, STEPS))
        _, logits = model.rollout(torch.from_numpy(images).permute(0, 3, 1, 2), steps, generator=generator,
                                  logit_steps={steps})
        loss = torch.nn.functional.cross_entropy(logits[steps], torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    path = tmp_path_factory.mktemp("rule") / "squares.npz"
    save_rule(model.to_rule(), path)
    return path


def scene():
    image = np.full((SIZE, SIZE, 3), 0.1, np.float32)
    image[2:8, 2:8] = 0.9
    region = np.zeros((SIZE, SIZE), bool)
    region[9:14, 9:14] = True
    return image, region


def test_search_succeeds_and_stays_in_region(square_rule, tmp_path):
    image, region = scene()
    result = adversarial_search(square_rule, image, region, step=STEPS, iterations=150, samples=2, eval_samples=4)
    assert result.attrs["succeeded"]
    assert result.attrs["target_fraction"] >= 0.9
    perturbation = result["perturbation"].values
    assert perturbation.dtype == np.float32
    assert np.all(perturbation[~region] == 0.0)
    adversarial = result["image"].sel(kind="adversarial").values
    assert np.array_equal(adversarial[~region], image[~region])
    assert adversarial.min() >= 0.0
    assert adversarial.max() <= 1.0
    assert result.attrs["perturbation_linf"] == pytest.approx(float(np.abs(perturbation).max()))
    assert result.attrs["perturbation_l2"] > 0.0
    assert 0.0 <= result.attrs["outside_changed_fraction"] <= 1.0
    assert result["prediction"].dims == ("kind", "sample", "pixel_y", "pixel_x")

    plot_adversarial(result, tmp_path / "adversarial.png")
    assert (tmp_path / "adversarial.png").stat().st_size > 1000
    written = write_adversarial_image(result, tmp_path / "adversarial-image.png")
    with Image.open(written) as picture:
        assert picture.size == (SIZE, SIZE)


def test_grey_region_is_filled(square_rule):
    image, region = scene()
    result = adversarial_search(square_rule, image, region, step=STEPS, iterations=1, samples=1, eval_samples=1,
                                grey=0.25)
    grey = result["image"].sel(kind="grey").values
    assert np.all(grey[region] == 0.25)
    assert np.array_equal(grey[~region], image[~region])
    assert result.sizes["iteration"] == 1


def test_bad_inputs_raise(square_rule):
    image, region = scene()
    with pytest.raises(ValueError, match="not one of the rule's classes"):
        adversarial_search(square_rule, image, region, target_class="horse", iterations=1)
    with pytest.raises(ValueError, match="region is empty"):
        adversarial_search(square_rule, image, np.zeros_like(region), iterations=1)
    with pytest.raises(ValueError, match="region has shape"):
        adversarial_search(square_rule, image, region[:8], iterations=1)


def test_parse_region_box():
    region = parse_region("box:1,2,4,7", (8, 9))
    assert region.shape == (8, 9)
    assert region.sum() == 3 * 5
    assert region[1, 2]
    assert region[3, 6]
    assert not region[4, 6]


@pytest.mark.parametrize("spec", ["box:0,0,9,2", "box:3,3,3,5", "box:1,2,3", "circle:3"])
def test_parse_region_invalid(spec):
    with pytest.raises(ValueError, match="invalid region"):
        parse_region(spec, (8, 8))


def test_parse_region_mask_file_and_object(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    mask[1:3, 1:3] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    region = parse_region(f"mask:{tmp_path / 'mask.png'}", (8, 8))
    assert region.sum() == 16
    assert region[2:6, 2:6].all()
    label = np.zeros((8, 8), np.int64)
    label[0, 0] = 1
    assert parse_region("object", (8, 8), label=label).sum() == 1
    with pytest.raises(ValueError, match="needs a label mask"):
        parse_region("object", (8, 8))


def test_distance_to_region_reference():
    region = np.zeros((5, 5), bool)
    region[0, 0] = True
    distances = distance_to_region(np.array([[3, 4], [0, 0], [0, 2]]), region)
    assert distances.tolist() == pytest.approx([5.0, 0.0, 2.0])
