"""Read trajectory stores: open one as an xarray Dataset and check its schema.

A store is preallocated to the requested number of steps. The root attribute
``steps_done`` is the last step whose data is written. :func:`open_run`
trims the dataset to that step, so callers never see fill values of steps a run
has not reached.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from nca_sim.schema import REQUIRED_ATTRS, SCHEMA_NAME, SCHEMA_VERSION, VARIABLES


class StoreError(ValueError):
    """A trajectory store that is missing, invalid, of another schema, or in use."""


def check_store_attrs(attrs: dict, path: str | os.PathLike) -> None:
    """Raise StoreError unless ``attrs`` are the root attributes of a readable nca store."""
    if attrs.get("schema") != SCHEMA_NAME:
        raise StoreError(
            f"{str(path)!r} is not an nca trajectory store (root attribute schema={attrs.get('schema')!r}, "
            f"expected {SCHEMA_NAME!r})"
        )
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"{str(path)!r} has store schema version {version!r}; this nca reads version {SCHEMA_VERSION}"
        )
    missing = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing:
        raise StoreError(f"{str(path)!r} lacks the root attributes {missing}; the store is damaged or incomplete")


def open_run(path: str | os.PathLike, *, trim: bool = True) -> xr.Dataset:
    """Open a trajectory store written by ``nca simulate``.

    Parameters
    ----------
    path
        The store directory (``RUN.zarr``).
    trim
        Keep only the steps ``0..steps_done`` and the snapshots taken up to
        ``steps_done``. With False the preallocated arrays are returned whole,
        holding fill values (NaN, -1) beyond ``steps_done``, or data of a flush that
        a killed run did not finish.

    Returns
    -------
    xarray.Dataset
        Lazily loaded variables with dims and attributes as listed in
        :mod:`nca_sim.schema`.
    """
    path = Path(path)
    if not (path / "zarr.json").is_file():
        raise StoreError(f"trajectory store {str(path)!r} not found (no zarr.json); record one with `nca simulate -o`")
    dataset = xr.open_zarr(path, consolidated=True)
    check_store_attrs(dataset.attrs, path)
    if not trim:
        return dataset
    steps_done = int(dataset.attrs["steps_done"])
    dataset = dataset.isel(step=slice(0, steps_done + 1))
    if "snapshot" in dataset.dims:
        snapshots_written = np.flatnonzero(dataset["snapshot_step"].values <= steps_done)
        dataset = dataset.isel(snapshot=snapshots_written)
    return dataset


def read_root_attrs(path: str | os.PathLike) -> dict | None:
    """Return the root attributes of the store at ``path``, or None when there is no readable store.

    Reads only the root ``zarr.json``, so it is cheap enough for progress reports.
    """
    try:
        metadata = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    attributes = metadata.get("attributes")
    return attributes if isinstance(attributes, dict) else None


def missing_variables(dataset: xr.Dataset) -> list[str]:
    """Return the required (not optional) schema variables that ``dataset`` lacks."""
    return [name for name, variable in VARIABLES.items() if not variable.optional and name not in dataset]
