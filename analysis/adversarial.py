"""Adversarial inputs confined to a region: can a perturbation there make the automaton see an object?

The region is cut out of the image and filled with flat grey. A pixel perturbation
``delta``, multiplied by the region's mask so that it is exactly zero outside, is
optimized with Adam so that the automaton labels the region as the target class
after ``step`` steps. The adversarial image is ``clamp(grey + mask * delta, 0, 1)``.
The loss is the cross-entropy towards the target class over the region's pixels.
It is averaged over ``samples`` random initial states, fire masks and reset-gate
noises, drawn afresh at each iteration, so that the perturbation does not depend
on one draw of the randomness.

The result is judged on ``eval_samples`` held-out draws, the same draws for the grey
and the adversarial image, so that a prediction that differs between the two
differs because of the perturbation: the search succeeded when the mean fraction of
region pixels predicted as the target class reaches ``threshold``.

This module imports torch inside its functions, so that ``import analysis`` stays
free of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from nca_sim.rule import Rule, load_rule

IMAGE_KINDS = ("original", "grey", "adversarial")
# The search stops after this many consecutive iterations in which every training draw reached the
# threshold: one lucky batch of draws is not enough for held-out draws to reach it too.
STOP_STREAK = 10


def parse_region(spec: str, shape: tuple[int, int], *, label=None) -> np.ndarray:
    """Return the boolean region mask of shape ``(height, width)`` that ``spec`` describes.

    Parameters
    ----------
    spec
        ``box:y0,x0,y1,x1`` (pixel rows y0..y1-1 and columns x0..x1-1),
        ``mask:PATH`` (an image file whose nonzero pixels form the region, resized
        with nearest-neighbour sampling to ``shape``) or ``object`` (the object
        class of ``label``).
    shape
        ``(height, width)`` of the image.
    label
        ``(height, width)`` class labels, needed for ``object``.
    """
    height, width = shape
    if spec.startswith("box:"):
        try:
            y0, x0, y1, x1 = (int(part) for part in spec[4:].split(","))
        except ValueError:
            raise ValueError(f"invalid region {spec!r}: expected box:y0,x0,y1,x1 with four integers") from None
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(
                f"invalid region {spec!r}: the box must satisfy 0 <= y0 < y1 <= {height} and 0 <= x0 < x1 <= {width}"
            )
        region = np.zeros(shape, dtype=bool)
        region[y0:y1, x0:x1] = True
        return region
    if spec.startswith("mask:"):
        from PIL import Image

        path = Path(spec[5:])
        if not path.is_file():
            raise FileNotFoundError(f"region mask {str(path)!r} not found")
        with Image.open(path) as mask_image:
            mask_image = mask_image.convert("L").resize((width, height), Image.Resampling.NEAREST)
            region = np.asarray(mask_image) > 0
    elif spec == "object":
        if label is None:
            raise ValueError("region 'object' needs a label mask; pass --mask LABELS")
        region = np.asarray(label) == 1
        if region.shape != tuple(shape):
            raise ValueError(f"label mask has shape {region.shape}, but the image has shape {tuple(shape)}")
    else:
        raise ValueError(f"invalid region {spec!r}: expected box:y0,x0,y1,x1, mask:PATH or object")
    if not region.any():
        raise ValueError(f"region {spec!r} is empty; choose a region with at least one pixel")
    return region


def distance_to_region(points: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Return the Euclidean distance in pixels from each ``(y, x)`` point to the nearest region pixel."""
    region_points = np.argwhere(region).astype(np.float64)
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    distances = np.empty(points.shape[0])
    chunk = max(1, 2**22 // max(1, region_points.shape[0]))  # bounds the temporary (chunk, region) array
    for start in range(0, points.shape[0], chunk):
        block = points[start:start + chunk]
        squared = ((block[:, None, :] - region_points[None, :, :]) ** 2).sum(axis=-1)
        distances[start:start + chunk] = np.sqrt(squared.min(axis=1))
    return distances


def _final_logits(model, image, samples: int, steps: int, generator):
    """Run ``samples`` independent rollouts of ``steps`` steps on one image; return the last logits."""
    import torch

    def rollout(batch):
        cell_input = model.encode_image(image.expand(batch, -1, -1, -1))
        state = model.initial_state(batch, cell_input.shape[-2], cell_input.shape[-1], generator)
        for _ in range(steps):
            state, _ = model.step(state, cell_input, generator=generator)
        return model.logits(state)

    if model.arch.normalization == "batch":
        # Batch statistics would mix the samples; the simulator normalizes one colony at a time.
        return torch.cat([rollout(1) for _ in range(samples)])
    return rollout(samples)


def _predict(model, image, samples: int, steps: int, seed: int) -> np.ndarray:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        logits = _final_logits(model, image, samples, steps, generator)
    return logits.argmax(dim=1).numpy().astype(np.int8)


def adversarial_search(
    rule: Rule | str | Path,
    image: np.ndarray,
    region: np.ndarray,
    *,
    step: int = 40,
    target_class: str | int = "object",
    iterations: int = 200,
    learning_rate: float = 0.05,
    samples: int = 4,
    eval_samples: int = 8,
    threshold: float = 0.9,
    grey: float = 0.5,
    seed: int = 0,
) -> xr.Dataset:
    """Search for a perturbation inside ``region`` that makes the automaton predict ``target_class`` there.

    Parameters
    ----------
    rule
        A rule or the path of a rule file.
    image
        ``(height, width, 3)`` float image in [0, 1]. The high-resolution variant
        needs even height and width.
    region
        ``(height, width)`` boolean mask of the pixels that are greyed and perturbed.
    step
        The step after which the prediction counts.
    target_class
        Class name or index that the region should be predicted as.
    iterations, learning_rate
        Maximum Adam iterations, and Adam's step size in image intensity units.
        The search stops early once every training draw has reached
        ``threshold`` for ``STOP_STREAK`` iterations in a row.
    samples, eval_samples
        Random draws per iteration, and held-out draws for the verdict.
    threshold
        Fraction of region pixels predicted as the target that counts as success.
    grey
        Intensity that fills the region.
    seed
        Seed of the training draws; held-out draws use ``seed + 1``.

    Returns
    -------
    xarray.Dataset
        ``image`` over (``kind``, ``pixel_y``, ``pixel_x``, ``rgb``) for the kinds
        original, grey, adversarial; ``perturbation`` (adversarial minus grey,
        exactly 0 outside the region); ``prediction`` over (``kind``, ``sample``,
        ``pixel_y``, ``pixel_x``); ``region``; ``loss`` over ``iteration``.
        Attributes: ``succeeded``, ``target_fraction`` (mean over held-out draws),
        ``perturbation_l2``, ``perturbation_linf``, ``outside_changed_fraction``
        and ``max_changed_distance`` (pixels from the region; 0 when no outside
        pixel changed).
    """
    import torch
    import torch.nn.functional as F

    from nca_train.model import SegmentationNCA

    rule = load_rule(rule) if isinstance(rule, (str, Path)) else rule
    image = np.asarray(image, dtype=np.float32)
    region = np.asarray(region, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {image.shape}, expected (height, width, 3)")
    if region.shape != image.shape[:2]:
        raise ValueError(f"region has shape {region.shape}, but the image is {image.shape[:2]}")
    if not region.any():
        raise ValueError("region is empty; choose a region with at least one pixel")
    if not (np.all(image >= 0.0) and np.all(image <= 1.0)):
        raise ValueError("image values must lie in [0, 1]")
    class_names = list(rule.architecture.class_names)
    if isinstance(target_class, str):
        if target_class not in class_names:
            raise ValueError(f"target class {target_class!r} is not one of the rule's classes {class_names}")
        target = class_names.index(target_class)
    else:
        target = int(target_class)
        if not 0 <= target < len(class_names):
            raise ValueError(f"target class {target} is out of range for {len(class_names)} classes")
    if step < 1:
        raise ValueError(f"step={step} is invalid: expected at least 1")

    torch.manual_seed(seed)
    model = SegmentationNCA.from_rule(rule).eval()
    model.requires_grad_(False)
    original = torch.from_numpy(image).permute(2, 0, 1)[None]  # (1, 3, H, W)
    mask = torch.from_numpy(region.astype(np.float32))[None, None]
    grey_image = original * (1.0 - mask) + grey * mask
    delta = torch.zeros_like(original, requires_grad=True)
    optimizer = torch.optim.Adam([delta], lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    region_t = torch.from_numpy(region)
    losses = []
    streak = 0  # consecutive iterations in which every training draw reached the threshold
    for _ in range(iterations):
        adversarial = (grey_image + delta * mask).clamp(0.0, 1.0)
        logits = _final_logits(model, adversarial, samples, step, generator)
        region_logits = logits.permute(0, 2, 3, 1)[:, region_t]  # (samples, region pixels, classes)
        targets = torch.full(region_logits.shape[:2], target, dtype=torch.long)
        loss = F.cross_entropy(region_logits.reshape(-1, len(class_names)), targets.reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        reached = (region_logits.argmax(dim=-1) == target).float().mean(dim=1)
        streak = streak + 1 if bool((reached >= threshold).all()) else 0
        if streak >= STOP_STREAK:
            break

    with torch.no_grad():
        adversarial = (grey_image + delta * mask).clamp(0.0, 1.0)
    images = {"original": original, "grey": grey_image, "adversarial": adversarial}
    predictions = {kind: _predict(model, tensor, eval_samples, step, seed + 1) for kind, tensor in images.items()}
    images = {kind: tensor[0].permute(1, 2, 0).numpy() for kind, tensor in images.items()}
    perturbation = images["adversarial"] - images["grey"]

    target_fraction = float((predictions["adversarial"][:, region] == target).mean())
    changed = predictions["adversarial"] != predictions["grey"]
    outside_changed = changed[:, ~region]
    changed_points = np.argwhere(changed.any(axis=0) & ~region)
    max_distance = float(distance_to_region(changed_points, region).max()) if changed_points.size else 0.0

    result = xr.Dataset(
        {
            "image": (("kind", "pixel_y", "pixel_x", "rgb"), np.stack([images[k] for k in IMAGE_KINDS])),
            "perturbation": (("pixel_y", "pixel_x", "rgb"), perturbation),
            "prediction": (("kind", "sample", "pixel_y", "pixel_x"), np.stack([predictions[k] for k in IMAGE_KINDS])),
            "region": (("pixel_y", "pixel_x"), region),
            "loss": ("iteration", np.array(losses)),
        },
        coords={"kind": list(IMAGE_KINDS), "class": class_names},
    )
    result.attrs = {
        "analysis": "adversarial",
        "succeeded": bool(target_fraction >= threshold),
        "target_class": class_names[target],
        "target_fraction": target_fraction,
        "threshold": threshold,
        "step": step,
        "iterations_run": len(losses),
        "region_pixels": int(region.sum()),
        "perturbation_l2": float(np.sqrt(np.sum(perturbation.astype(np.float64) ** 2))),
        "perturbation_linf": float(np.max(np.abs(perturbation))),
        "outside_changed_fraction": float(outside_changed.mean()) if outside_changed.size else 0.0,
        "max_changed_distance": max_distance,
    }
    return result


def adversarial_rows(result: xr.Dataset) -> list[dict]:
    """Return the one verdict row of an adversarial search."""
    attrs = result.attrs
    return [{
        "succeeded": attrs["succeeded"],
        "target": attrs["target_class"],
        "fraction": attrs["target_fraction"],
        "threshold": attrs["threshold"],
        "step": attrs["step"],
        "iterations": attrs["iterations_run"],
        "l2": attrs["perturbation_l2"],
        "linf": attrs["perturbation_linf"],
        "outside_changed": attrs["outside_changed_fraction"],
        "max_distance_px": attrs["max_changed_distance"],
    }]


def write_adversarial_image(result: xr.Dataset, path) -> Path:
    """Write the adversarial image as an 8-bit PNG, an input for ``nca simulate``; return its path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.round(result["image"].sel(kind="adversarial").values * 255.0).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def class_colors(prediction: np.ndarray) -> np.ndarray:
    """Return an RGB float image of class indices in the fixed palette; -1 (no data) is grey."""
    from analysis.movie import PALETTE

    colors = np.asarray(PALETTE, dtype=np.float32) / 255.0
    rgb = np.full(prediction.shape + (3,), 0.5, dtype=np.float32)
    valid = (prediction >= 0) & (prediction < len(colors))
    rgb[valid] = colors[prediction[valid]]
    return rgb


def plot_adversarial(result: xr.Dataset, path) -> None:
    """Draw original, grey, adversarial and amplified-perturbation images above their predictions."""
    from analysis.plotting import new_figure, save_figure

    figure, axes = new_figure(2, 4, width=12.0, row_height=3.2)
    perturbation = result["perturbation"].values
    linf = result.attrs["perturbation_linf"]
    amplified = np.clip(0.5 + perturbation * (0.5 / linf if linf > 0 else 0.0), 0.0, 1.0)
    columns = [(kind, result["image"].sel(kind=kind).values) for kind in IMAGE_KINDS]
    columns.append((f"perturbation x{0.5 / linf:.3g}" if linf > 0 else "perturbation (zero)", amplified))
    for j, (title, picture) in enumerate(columns):
        axes[0, j].imshow(picture, interpolation="nearest")
        axes[0, j].set_title(title)
        axes[0, j].contour(result["region"].values, levels=[0.5], colors="yellow", linewidths=0.8)
    for j, kind in enumerate(IMAGE_KINDS):
        axes[1, j].imshow(class_colors(result["prediction"].sel(kind=kind).values[0]), interpolation="nearest")
        axes[1, j].set_title(f"prediction at step {result.attrs['step']}")
    changed = (result["prediction"].sel(kind="adversarial").values != result["prediction"].sel(kind="grey").values)
    axes[1, 3].imshow(changed.mean(axis=0), cmap="magma", vmin=0, vmax=1, interpolation="nearest")
    axes[1, 3].set_title("changed vs grey (fraction of draws)")
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    verdict = "succeeded" if result.attrs["succeeded"] else "failed"
    figure.suptitle(f"adversarial search {verdict}: {result.attrs['target_fraction']:.0%} of the region "
                    f"predicted {result.attrs['target_class']}")
    save_figure(figure, path)
