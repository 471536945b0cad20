"""Open a trajectory store for analysis and list what it lacks.

:func:`open_store` reads a store written by ``nca simulate`` (schema in
:mod:`nca_sim.schema`), checks it against the schema, and returns the dataset cut
to the steps that hold data, together with notes that say what is incomplete,
missing or from another schema version. Analyses call :func:`require` for the
variables they need, which raises :class:`MissingDataError` with a message that
names what was not recorded.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from nca_sim.schema import REQUIRED_ATTRS, SCHEMA_NAME, SCHEMA_VERSION, VARIABLES


class StoreError(ValueError):
    """A path that is not a readable trajectory store."""


class MissingDataError(ValueError):
    """An analysis needs a variable that the store does not hold."""


@dataclass
class StoreCheck:
    """Findings of :func:`open_store`: progress, schema version and the gaps of a store."""

    path: Path
    schema_version: object
    steps_requested: int | None
    steps_done: int
    complete: bool
    missing_variables: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The run's name: the store's file name without ``.zarr``."""
        name = self.path.name
        return name[: -len(".zarr")] if name.endswith(".zarr") else name


def open_store(path) -> tuple[xr.Dataset, StoreCheck]:
    """Open a trajectory store and cut it to the steps that hold data.

    Parameters
    ----------
    path
        A Zarr store written by ``nca simulate``.

    Returns
    -------
    dataset, check
        ``dataset`` holds only steps ``0 .. steps_done`` (dimension ``step``) and
        the snapshots taken up to ``steps_done`` (dimension ``snapshot``); arrays
        stay lazy. ``check.notes`` lists, in plain sentences, an incomplete run,
        another schema version and every variable that is missing or has
        unexpected dimensions.

    Raises
    ------
    StoreError
        When ``path`` does not exist or is not a Zarr store.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"store {str(path)!r} not found; write one with `nca simulate --rule RULE.npz -o RUN.zarr`")
    try:
        with warnings.catch_warnings():
            # A store without consolidated metadata opens fine, but xarray warns about it.
            warnings.simplefilter("ignore", RuntimeWarning)
            dataset = xr.open_zarr(path, consolidated=None)
    except (OSError, ValueError, KeyError) as error:
        raise StoreError(
            f"{str(path)!r} is not a readable Zarr store ({error}); "
            "give a trajectory store written by `nca simulate -o RUN.zarr`"
        ) from error

    attrs = dataset.attrs
    notes = []
    if attrs.get("schema") != SCHEMA_NAME:
        notes.append(
            f"root attribute schema is {attrs.get('schema')!r}, not {SCHEMA_NAME!r}: "
            "this may not be a store written by `nca simulate`"
        )
    version = attrs.get("schema_version")
    if version != SCHEMA_VERSION:
        notes.append(
            f"schema version {version!r}, but this nca reads version {SCHEMA_VERSION}: "
            "analyses run on the variables that match"
        )
    missing_attrs = [name for name in REQUIRED_ATTRS if name not in attrs]
    if missing_attrs:
        notes.append(f"missing root attributes: {', '.join(missing_attrs)}")

    missing, mismatched = [], []
    for name, spec in VARIABLES.items():
        if name not in dataset.variables:
            missing.append(name)
        elif tuple(dataset[name].dims) != spec.dims:
            mismatched.append(f"{name} has dimensions {tuple(dataset[name].dims)}, expected {spec.dims}")
    required_missing = [name for name in missing if not VARIABLES[name].optional]
    if required_missing:
        notes.append(f"missing variables: {', '.join(required_missing)}")
    notes.extend(mismatched)
    # A variable with unexpected dimensions is treated as missing, so that no analysis misreads it.
    dataset = dataset.drop_vars([m.split(" ", 1)[0] for m in mismatched])
    missing += [m.split(" ", 1)[0] for m in mismatched]

    steps_total = dataset.sizes.get("step", 0) - 1
    steps_requested = attrs.get("steps_requested", steps_total if steps_total >= 0 else None)
    steps_done = attrs.get("steps_done")
    if steps_done is None:
        steps_done = max(steps_total, 0)
        notes.append(f"root attribute steps_done is missing; assuming all {steps_done} steps hold data")
    steps_done = int(steps_done)
    complete = bool(attrs.get("complete", False))
    if not complete or (steps_requested is not None and steps_done < steps_requested):
        notes.append(
            f"the run is incomplete: {steps_done} of {steps_requested} steps done; "
            f"analysing steps 0 to {steps_done}"
        )

    if "step" in dataset.dims:
        step_values = dataset["step"].values if "step" in dataset.coords else np.arange(dataset.sizes["step"])
        dataset = dataset.isel(step=np.flatnonzero(step_values <= steps_done))
    if "snapshot" in dataset.dims and "snapshot_step" in dataset.coords:
        dataset = dataset.isel(snapshot=np.flatnonzero(dataset["snapshot_step"].values <= steps_done))

    check = StoreCheck(path, version, steps_requested, steps_done, complete, missing, notes)
    return dataset, check


def require(dataset: xr.Dataset, check: StoreCheck, names, *, analysis: str, hint: str = "") -> None:
    """Raise MissingDataError unless ``dataset`` contains every variable in ``names``."""
    absent = [name for name in names if name not in dataset.variables]
    if absent:
        message = f"{analysis} needs {', '.join(absent)}, which {check.path} does not hold"
        if hint:
            message += f": {hint}"
        raise MissingDataError(message)


def rule_has_reset_gate(dataset: xr.Dataset) -> bool | None:
    """Return whether the store's rule has a reset gate, or None when the store does not say."""
    architecture = dataset.attrs.get("rule_architecture")
    if not isinstance(architecture, dict) or "reset_gate" not in architecture:
        return None
    return bool(architecture["reset_gate"])


def axis_label(dataset: xr.Dataset, name: str) -> str:
    """Return ``long_name [units]`` of a variable, for plot axes."""
    attrs = dataset[name].attrs if name in dataset.variables else {}
    spec = VARIABLES.get(name)
    long_name = attrs.get("long_name", spec.long_name if spec else name)
    units = attrs.get("units", spec.units if spec else "")
    return f"{long_name} [{units}]" if units else long_name


def run_label(dataset: xr.Dataset, check: StoreCheck) -> str:
    """Return ``name (schedule)``, the label of a run in legends and tables."""
    schedule = dataset.attrs.get("schedule")
    return f"{check.name} ({schedule})" if schedule else check.name
