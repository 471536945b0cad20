"""Matplotlib helpers shared by the analyses: a headless backend and PNG output."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the analyses run on servers without a display

import matplotlib.pyplot as plt  # noqa: E402


def new_figure(rows: int = 1, columns: int = 1, *, width: float = 8.0, row_height: float = 3.2, **kwargs):
    """Return a figure and an array of axes (always 2-D)."""
    return plt.subplots(rows, columns, figsize=(width, row_height * rows), squeeze=False, **kwargs)


def save_figure(figure, path) -> Path:
    """Write the figure as a PNG to ``path`` (parents created) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110, format="png")
    plt.close(figure)
    return path


def mark_steps(axis, steps, *, color="0.5", label=None) -> None:
    """Draw a dashed vertical line at each step, labelled once in the legend."""
    for i, step in enumerate(steps):
        axis.axvline(step, color=color, linestyle="--", linewidth=0.8, label=label if i == 0 else None)
