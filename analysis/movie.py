"""An animation of a run's snapshots: the input image, the predicted classes and the state.

Each frame shows, side by side, the image in effect at the snapshot's step (with
its shift applied) and the predicted classes in :data:`PALETTE`. When the run
recorded the full state, a third panel shows the state projected to RGB by its
first three principal components. The components come from all recorded snapshots together, so colours
compare across frames. A header shows the step number.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import xarray as xr

from analysis.store import open_store, require, run_label
from nca_sim.files import atomic_output
from nca_sim.inputs import shift_image

# RGB of background, object, boundary; further classes cycle through the extra colours.
PALETTE = ((25, 25, 70), (235, 165, 40), (245, 245, 245), (60, 170, 90), (200, 60, 60))
NO_DATA_COLOR = (128, 128, 128)
GAP = 4  # pixels between panels
HEADER = 16  # pixels above the panels for the step number
FORMATS = ("gif", "mp4")
MIN_PANEL_SIZE = 128  # pixels; the default scale enlarges small images to this


def _fit_pca(state: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return mean, the first three principal axes (channel, 3) and their standard deviations.

    Sums over snapshots one at a time, so that a long run's state never sits in
    memory at once. Non-finite cells are left out.
    """
    channels = state.sizes["channel"]
    total = np.zeros(channels)
    outer = np.zeros((channels, channels))
    count = 0
    for i in range(state.sizes["snapshot"]):
        cells = state[i].values.reshape(-1, channels).astype(np.float64)
        cells = cells[np.all(np.isfinite(cells), axis=1)]
        total += cells.sum(axis=0)
        outer += cells.T @ cells
        count += cells.shape[0]
    if count < 2:
        return np.zeros(channels), np.eye(channels, 3), np.ones(3)
    mean = total / count
    covariance = outer / count - np.outer(mean, mean)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1][:3]
    axes = np.zeros((channels, 3))
    scales = np.ones(3)
    axes[:, : order.size] = eigenvectors[:, order]
    scales[: order.size] = np.sqrt(np.maximum(eigenvalues[order], 1e-12))
    return mean, axes, scales


def _state_rgb(cells: np.ndarray, mean, axes, scales) -> np.ndarray:
    """Project ``(y, x, channel)`` state to uint8 RGB; +-2.5 standard deviations span the colour range."""
    projected = (cells.astype(np.float64) - mean) @ axes / scales
    rgb = np.clip(0.5 + projected / 5.0, 0.0, 1.0)
    rgb[~np.all(np.isfinite(cells), axis=-1)] = 0.0
    return (rgb * 255).astype(np.uint8)


def class_rgb(classes: np.ndarray) -> np.ndarray:
    """Return uint8 RGB of class indices in :data:`PALETTE`; -1 (not written) is grey."""
    palette = np.array(PALETTE, dtype=np.uint8)
    rgb = np.empty(classes.shape + (3,), dtype=np.uint8)
    rgb[...] = NO_DATA_COLOR
    valid = classes >= 0
    rgb[valid] = palette[classes[valid] % len(palette)]
    return rgb


def _upscale(panel: np.ndarray, height: int, width: int, scale: int) -> np.ndarray:
    """Repeat pixels so that ``panel`` becomes ``(height * scale, width * scale)``."""
    factor_y, factor_x = height // panel.shape[0], width // panel.shape[1]
    return np.repeat(np.repeat(panel, factor_y * scale, axis=0), factor_x * scale, axis=1)


def _compose(panels: list[np.ndarray], text: str) -> np.ndarray:
    from PIL import Image, ImageDraw

    height = panels[0].shape[0]
    width = sum(panel.shape[1] for panel in panels) + GAP * (len(panels) - 1)
    frame = np.zeros((HEADER + height, width, 3), dtype=np.uint8)
    x = 0
    for panel in panels:
        frame[HEADER:, x:x + panel.shape[1]] = panel
        x += panel.shape[1] + GAP
    picture = Image.fromarray(frame)
    ImageDraw.Draw(picture).text((2, 2), text, fill=(255, 255, 255))
    return np.asarray(picture)


def frame_size(pixel_height: int, pixel_width: int, panels: int, scale: int) -> tuple[int, int]:
    """Return ``(height, width)`` of a movie frame."""
    return HEADER + pixel_height * scale, panels * pixel_width * scale + GAP * (panels - 1)


def render_movie(store, *, scale: int | None = None, max_frames: int | None = None) -> xr.Dataset:
    """Render one frame per recorded snapshot.

    Parameters
    ----------
    store
        Path of a trajectory store.
    scale
        Screen pixels per image pixel; when None, the smallest that makes a panel
        at least :data:`MIN_PANEL_SIZE` pixels wide and high.
    max_frames
        Keep at most this many snapshots, evenly spaced; all when None.

    Returns
    -------
    xarray.Dataset
        ``frames`` uint8 over (``frame``, ``height``, ``width``, ``rgb``) with
        coordinate ``snapshot_step``; attributes ``panels`` (panel titles) and
        ``notes`` (for example that the state was not recorded).
    """
    if scale is not None and scale < 1:
        raise ValueError(f"scale={scale} is invalid: expected a positive integer")
    dataset, check = open_store(store)
    require(dataset, check, ["classes"], analysis="the movie", hint="predicted classes are not in the store")
    notes = list(check.notes)
    snapshots = np.arange(dataset.sizes["snapshot"])
    if snapshots.size == 0:
        raise ValueError(f"{check.path} has no snapshot up to step {check.steps_done}; nothing to animate")
    if max_frames is not None and snapshots.size > max_frames:
        snapshots = np.unique(np.linspace(0, snapshots.size - 1, max_frames).round().astype(int))
    snapshot_steps = dataset["snapshot_step"].values[snapshots]
    pixel_height, pixel_width = dataset.sizes["pixel_y"], dataset.sizes["pixel_x"]
    if scale is None:
        scale = max(1, math.ceil(MIN_PANEL_SIZE / min(pixel_height, pixel_width)))

    has_images = all(name in dataset.variables for name in ("images", "image_index", "shift_y", "shift_x"))
    if not has_images:
        notes.append("the input images or their indices were not recorded, so the image panel is left out")
    has_state = "state" in dataset.variables
    if not has_state:
        notes.append("the full state was not recorded (run `nca simulate` with --record-state), "
                     "so the state panel is left out")
    else:
        mean, axes, scales = _fit_pca(dataset["state"].isel(snapshot=snapshots))

    if has_images:
        # The simulator records the colour of the pixels that a shift vacates; older stores did not (black).
        fill_color = tuple(dataset.attrs.get("shift_fill_color") or (0.0, 0.0, 0.0))
        step_values = dataset["step"].values
        images = dataset["images"].values
        index_of = {int(step): i for i, step in enumerate(step_values)}
    frames = []
    for snapshot, step in zip(snapshots, snapshot_steps):
        panels = []
        if has_images:
            i = index_of[int(step)]
            image = images[int(dataset["image_index"].values[i])]
            shifted, _ = shift_image(image, None, int(dataset["shift_y"].values[i]), int(dataset["shift_x"].values[i]),
                                     fill_color=fill_color)
            panels.append(_upscale((np.clip(shifted, 0, 1) * 255).astype(np.uint8), pixel_height, pixel_width, scale))
        panels.append(_upscale(class_rgb(dataset["classes"][int(snapshot)].values), pixel_height, pixel_width, scale))
        if has_state:
            cells = dataset["state"][int(snapshot)].values
            panels.append(_upscale(_state_rgb(cells, mean, axes, scales), pixel_height, pixel_width, scale))
        frames.append(_compose(panels, f"step {int(step)}"))

    titles = ["classes"]
    if has_images:
        titles.insert(0, "image")
    if has_state:
        titles.append("state PCA")
    result = xr.Dataset(
        {"frames": (("frame", "height", "width", "rgb"), np.stack(frames))},
        coords={"snapshot_step": ("frame", snapshot_steps)},
    )
    result.attrs = {"analysis": "movie", "store": str(check.path), "run": run_label(dataset, check),
                    "panels": titles, "notes": notes}
    return result


def write_movie(result: xr.Dataset, path, *, fps: float = 10.0, format: str | None = None) -> Path:
    """Write the frames as a GIF (Pillow) or MP4 (ffmpeg on PATH); replace ``path`` only when done.

    ``format`` defaults to the file suffix of ``path``.
    """
    path = Path(path)
    format = (format or path.suffix.lstrip(".") or "gif").lower()
    if format not in FORMATS:
        raise ValueError(f"movie format {format!r} is not supported: expected one of {', '.join(FORMATS)}")
    if fps <= 0:
        raise ValueError(f"fps={fps} is invalid: expected a positive number")
    frames = result["frames"].values
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, suffix=f".{format}") as temporary:
        if format == "gif":
            from PIL import Image

            pictures = [Image.fromarray(frame) for frame in frames]
            pictures[0].save(temporary, format="GIF", save_all=True, append_images=pictures[1:],
                             duration=int(round(1000 / fps)), loop=0)
        else:
            _write_mp4(frames, str(temporary), fps)
    return path


def _write_mp4(frames: np.ndarray, path: str, fps: float) -> None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError("ffmpeg was not found on PATH; install it for MP4, or write a GIF with --format gif")
    height, width = frames.shape[1:3]
    command = [
        ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-r", str(fps), "-i", "-", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-pix_fmt", "yuv420p",
        "-f", "mp4", path,
    ]
    completed = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if completed.returncode != 0:
        raise RuntimeError(f"ffmpeg failed with exit status {completed.returncode}: {completed.stderr.decode()[-500:]}")
