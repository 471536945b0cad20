"""Turn analysis results into verdict rows, terminal tables and JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr


def plain(value):
    """Convert a NumPy scalar to a JSON-ready Python value; NaN and infinity become None."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return value.decode()
    return value


def rows_along(result: xr.Dataset, dim: str) -> list[dict]:
    """Return one dict per entry of ``dim``: its coordinate and every variable that has only that dimension."""
    names = [name for name, variable in result.data_vars.items() if variable.dims == (dim,)]
    rows = []
    for i, label in enumerate(result[dim].values):
        row = {dim: plain(label)}
        for name in names:
            row[name] = plain(result[name].values[i])
        rows.append(row)
    return rows


def _format_cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict], columns: list[str] | None = None) -> str:
    """Format rows as a plain-text table with a header line, aligned for a terminal."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[_format_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    lines = ["  ".join(column.ljust(width) for column, width in zip(columns, widths))]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def to_json(analysis: str, rows: list[dict], *, notes=(), plot=None, **extra) -> str:
    """Return the JSON document that ``nca analyze ... --json`` prints."""
    document = {"analysis": analysis, **{key: plain(value) for key, value in extra.items()}}
    document["notes"] = list(notes)
    document["rows"] = [{key: plain(value) for key, value in row.items()} for row in rows]
    document["plot"] = str(plot) if plot is not None else None
    return json.dumps(document, indent=2)


def default_plot_path(store_path, analysis: str, suffix: str = ".png") -> Path:
    """Return ``RUN.<analysis>.png`` next to the store ``RUN.zarr``."""
    store_path = Path(store_path)
    name = store_path.name[: -len(".zarr")] if store_path.name.endswith(".zarr") else store_path.name
    return store_path.parent / f"{name}.{analysis}{suffix}"
