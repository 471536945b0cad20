"""Movies of the snapshots, read back with Pillow."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from analysis_helpers import write_store
from PIL import Image

from analysis.movie import HEADER, PALETTE, class_rgb, frame_size, render_movie, write_movie


def test_gif_frame_count_and_size(tmp_path):
    path = write_store(tmp_path / "run.zarr", steps=30, snapshot_every=5, height=9, width=7)
    result = render_movie(path, scale=3)
    gif = write_movie(result, tmp_path / "run.gif", fps=5)
    assert result.attrs["panels"] == ["image", "classes", "state PCA"]
    assert result["snapshot_step"].values.tolist() == [0, 5, 10, 15, 20, 25, 30]
    with Image.open(gif) as movie:
        assert movie.n_frames == 7
        assert movie.size == (3 * 7 * 3 + 2 * 4, HEADER + 9 * 3)
    assert frame_size(9, 7, 3, 3) == (HEADER + 27, 3 * 21 + 8)


def test_movie_without_state_has_two_panels(tmp_path):
    path = write_store(tmp_path / "run.zarr", steps=20, snapshot_every=10, record_state=False, height=6, width=6)
    result = render_movie(path, scale=1)
    assert result.attrs["panels"] == ["image", "classes"]
    assert any("full state was not recorded (run `nca simulate` with --record-state)" in note for note in result.attrs["notes"])
    assert result["frames"].shape == (3, HEADER + 6, 2 * 6 + 4, 3)


def test_movie_of_incomplete_run_and_max_frames(tmp_path):
    path = write_store(tmp_path / "run.zarr", steps=100, snapshot_every=5, steps_done=52)
    result = render_movie(path, max_frames=4)
    assert result["snapshot_step"].values.tolist() == [0, 15, 35, 50]


def test_classes_panel_shows_shifted_image_and_palette(tmp_path):
    classes = np.zeros((2, 4, 4), dtype=np.int8)
    classes[1, 1:3, 1:3] = 1
    images = np.zeros((1, 4, 4, 3))
    images[0, 0, 0] = 1.0
    path = write_store(tmp_path / "run.zarr", steps=10, snapshot_every=10, height=4, width=4, num_images=1,
                       series={"classes": classes, "images": images, "shift_y": np.ones(11), "shift_x": np.ones(11)},
                       record_state=False)
    frame = render_movie(path, scale=1)["frames"].values[1]
    image_panel, class_panel = frame[HEADER:, :4], frame[HEADER:, 8:12]
    assert image_panel[1, 1].tolist() == [255, 255, 255]  # the white pixel moved by (1, 1)
    assert image_panel[0, 0].tolist() == [0, 0, 0]
    assert class_panel[1, 1].tolist() == list(PALETTE[1])
    assert class_panel[0, 0].tolist() == list(PALETTE[0])


def test_class_rgb_marks_unwritten_pixels_grey():
    rgb = class_rgb(np.array([[-1, 2]], dtype=np.int8))
    assert rgb[0, 0].tolist() == [128, 128, 128]
    assert rgb[0, 1].tolist() == list(PALETTE[2])


@pytest.mark.skipif(shutil.which("ffmpeg") is not None, reason="ffmpeg is installed")
def test_mp4_without_ffmpeg_says_so(tmp_path):
    result = render_movie(write_store(tmp_path / "run.zarr", steps=10))
    with pytest.raises(RuntimeError, match="ffmpeg was not found"):
        write_movie(result, tmp_path / "run.mp4")
    assert not (tmp_path / "run.mp4").exists()


def test_invalid_format_raises(tmp_path):
    result = render_movie(write_store(tmp_path / "run.zarr", steps=10))
    with pytest.raises(ValueError, match="not supported"):
        write_movie(result, tmp_path / "run.avi")
