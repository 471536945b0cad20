"""Write a simulation trajectory to a Zarr store while the simulation runs.

The store (Zarr format 3, consolidated metadata) is created with every array
preallocated to the requested number of steps, so shapes never change while a
run writes. The recorder buffers steps in memory and writes them in chunks. One
flush writes the buffered data, then the resume state, then the root attributes
``steps_done`` and ``resume_slot`` in a single atomic rewrite of the root
``zarr.json``. That rewrite is the commit, so a run killed at any moment leaves a
store that opens and whose ``steps_done`` covers only fully written data.

Resume state: the group ``resume`` contains two slots (arrays ``state`` and
``info``). Each flush writes the slot that the root attributes do not point to
and then switches ``resume_slot``, so a kill during a flush never damages the
resume state that ``steps_done`` refers to.

One writer at a time: the recorder holds an exclusive ``fcntl.flock`` on the file
``nca-writer.lock`` inside the store, which the kernel releases when the process
dies. A new store is built under a temporary name next to the target and renamed
into place once its first step is written, so a failed start never leaves a
half-made store at the target path and never replaces a good one.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import importlib.metadata
import json
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zarr

from nca_sim.rule import Rule
from nca_sim.schema import FILL_VALUES, SCHEMA_NAME, SCHEMA_VERSION, VARIABLES
from nca_sim.store import StoreError, check_store_attrs, read_root_attrs

LOCK_NAME = "nca-writer.lock"
RESUME_GROUP = "resume"
# Steps per chunk of the per-step series; a flush rewrites the chunk it touches.
SERIES_CHUNK = 4096
DEFAULT_BUFFER_STEPS = 64
# Snapshot data (class maps, full states) buffered before a flush is forced, so
# that --record-state with frequent snapshots cannot grow memory.
DEFAULT_MAX_BUFFER_BYTES = 64 * 2**20
DEFAULT_FLUSH_SECONDS = 30.0

SERIES_VARIABLES = tuple(name for name, variable in VARIABLES.items() if variable.dims[0] == "step")
SNAPSHOT_VARIABLES = ("classes", "state")


class StoreLockedError(StoreError):
    """Another process is writing the store."""


@dataclass(frozen=True)
class StoreLayout:
    """Shapes and optional parts of a store, fixed when it is created."""

    steps: int
    snapshot_every: int
    grid_shape: tuple[int, int]
    image_shape: tuple[int, int]
    state_channels: int
    class_names: tuple[str, ...]
    image_count: int
    labels: bool
    reset_gate: bool
    record_state: bool

    def __post_init__(self):
        if not isinstance(self.steps, (int, np.integer)) or self.steps < 0:
            raise ValueError(f"steps={self.steps!r} is invalid: expected an integer >= 0")
        if not isinstance(self.snapshot_every, (int, np.integer)) or self.snapshot_every < 1:
            raise ValueError(f"snapshot_every={self.snapshot_every!r} is invalid: expected an integer >= 1")

    @property
    def snapshot_count(self) -> int:
        """Snapshots at steps 0, k, 2k, ... up to ``steps``."""
        return self.steps // self.snapshot_every + 1

    def dim_sizes(self) -> dict[str, int]:
        height, width = self.grid_shape
        image_height, image_width = self.image_shape
        return {
            "step": self.steps + 1,
            "snapshot": self.snapshot_count,
            "y": height,
            "x": width,
            "pixel_y": image_height,
            "pixel_x": image_width,
            "channel": self.state_channels,
            "class": len(self.class_names),
            "image": self.image_count,
            "rgb": 3,
        }

    def variable_names(self) -> list[str]:
        """Return the schema variables this store has, in schema order."""
        skipped = set()
        if not self.labels:
            skipped |= {"iou", "mean_iou", "labels"}
        if not self.reset_gate:
            skipped.add("reset_gate_mean")
        if not self.record_state:
            skipped.add("state")
        return [name for name in VARIABLES if name not in skipped]

    def shape(self, name: str) -> tuple[int, ...]:
        sizes = self.dim_sizes()
        return tuple(sizes[dim] for dim in VARIABLES[name].dims)

    def chunks(self, name: str) -> tuple[int, ...]:
        shape = self.shape(name)
        if VARIABLES[name].dims[0] == "step":
            return (min(shape[0], SERIES_CHUNK),) + shape[1:]
        return (1,) + shape[1:]  # one snapshot or one image per chunk


class WriterLock:
    """An exclusive ``fcntl.flock`` on the lock file of a store, holding the owner's pid."""

    def __init__(self, store_path: Path):
        self.store_path = Path(store_path)
        lock_path = self.store_path / LOCK_NAME
        self._fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(self._fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(self._fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise StoreLockedError(
                    f"store {str(self.store_path)!r} is being written by process {holder}; "
                    "wait for it to finish or stop that process, then try again"
                ) from None
            raise
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def library_versions() -> dict[str, str]:
    """Return the versions of nca and the libraries that shape a trajectory."""
    versions = {}
    for package in ("nca", "numpy", "numba", "xarray", "zarr"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "unknown"
    return versions


def _encode_json(value):
    """Make NumPy values JSON-able; arrays become tagged objects that :func:`_decode_json` restores."""
    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.tolist(), "dtype": value.dtype.str, "shape": list(value.shape)}
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.bool_):
        return bool(value)
    raise TypeError(f"resume state value of type {type(value).__name__} is not JSON-serializable")


def _decode_json(obj):
    if "__ndarray__" in obj:
        return np.array(obj["__ndarray__"], dtype=np.dtype(obj["dtype"])).reshape(obj["shape"])
    return obj


def _is_trajectory_store(path: Path) -> bool:
    attrs = read_root_attrs(path)
    return attrs is not None and attrs.get("schema") == SCHEMA_NAME


class Recorder:
    """Buffers the steps of a run and writes them to a trajectory store in chunks.

    Create one with :meth:`create` (new store) or :meth:`open` (resume); use it as
    a context manager so that the lock is released. Per step call :meth:`append`,
    and :meth:`flush` whenever :attr:`needs_flush` is true and at the end.
    """

    def __init__(self, path: Path, group: zarr.Group, layout: StoreLayout, lock: WriterLock, *, published: bool,
                 buffer_steps: int, max_buffer_bytes: int, flush_seconds: float):
        if buffer_steps < 1:
            raise ValueError(f"buffer_steps={buffer_steps} is invalid: expected at least 1")
        self.path = path
        self.layout = layout
        self._group = group
        self._lock = lock
        self._published = published
        self._temp_path: Path | None = None
        self._replaced: tuple[Path, WriterLock] | None = None
        self.buffer_steps = int(buffer_steps)
        self.max_buffer_bytes = int(max_buffer_bytes)
        self.flush_seconds = float(flush_seconds)

        attrs = group.attrs
        self.steps_done = int(attrs["steps_done"])
        self._resume_slot = int(attrs["resume_slot"])
        self._next_step = self.steps_done + 1 if self._resume_slot >= 0 else 0
        self._series = [name for name in layout.variable_names() if name in SERIES_VARIABLES]
        self._buffers = {
            name: np.empty((self.buffer_steps,) + layout.shape(name)[1:], dtype=VARIABLES[name].dtype)
            for name in self._series
        }
        self._reset_buffers()

    # -- creating and opening ------------------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        layout: StoreLayout,
        *,
        rule: Rule,
        images: np.ndarray,
        labels: np.ndarray | None,
        attrs: dict,
        overwrite: bool = False,
        buffer_steps: int = DEFAULT_BUFFER_STEPS,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    ) -> "Recorder":
        """Create a store for a new run.

        The store is built under a temporary name in the target's folder; the first
        :meth:`flush` renames it to ``path`` (replacing an existing store only with
        ``overwrite``). Until then nothing exists at ``path``.

        Parameters
        ----------
        path
            Target directory, conventionally ``NAME.zarr``.
        layout
            Shapes and optional parts.
        rule
            The rule being simulated; its architecture and weight hash go into the
            root attributes.
        images, labels
            ``(image, pixel_y, pixel_x, 3)`` float32 and ``(image, pixel_y, pixel_x)``
            integer (-1 unknown, or None), stored once.
        attrs
            Run settings for the root attributes: schedule, seed, update_probability,
            threads, shift_every, change and the extra settings of
            :data:`nca_sim.schema.RECORDER_ATTRS`.
        overwrite
            Replace an existing trajectory store at ``path``.
        """
        path = Path(path)
        replaced = None
        if path.exists() or path.is_symlink():
            # Checked first, so that the message for a folder of other files does not
            # suggest --resume or --overwrite, neither of which can use it.
            if not path.is_dir() or not (_is_trajectory_store(path) or not any(path.iterdir())):
                raise StoreError(
                    f"{str(path)!r} exists and is not an nca trajectory store, so --overwrite will not delete it; "
                    "remove it yourself or choose another output path"
                )
            # An empty folder (made beforehand, say) is replaced like an absent store.
            if not overwrite and _is_trajectory_store(path):
                raise StoreError(
                    f"store {str(path)!r} already exists: continue it with --resume, replace it with "
                    "--overwrite, or choose another output path"
                )
            replaced = WriterLock(path)  # refuse to replace a store that another process writes

        path.parent.mkdir(parents=True, exist_ok=True)
        temp_path = path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            group = _build_store(temp_path, layout, rule=rule, images=images, labels=labels, attrs=attrs)
            lock = WriterLock(temp_path)
        except BaseException:
            shutil.rmtree(temp_path, ignore_errors=True)
            if replaced is not None:
                replaced.release()
            raise
        recorder = cls(temp_path, group, layout, lock, published=False, buffer_steps=buffer_steps,
                       max_buffer_bytes=max_buffer_bytes, flush_seconds=flush_seconds)
        recorder.path = path
        recorder._temp_path = temp_path
        if replaced is not None:
            recorder._replaced = (path, replaced)
        return recorder

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        buffer_steps: int = DEFAULT_BUFFER_STEPS,
        max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    ) -> "Recorder":
        """Open an existing store to continue its run; raise StoreError if it is locked, invalid or complete."""
        path = Path(path)
        if not (path / "zarr.json").is_file():
            raise StoreError(f"store {str(path)!r} not found (no zarr.json), so there is nothing to resume")
        lock = WriterLock(path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=zarr.errors.ZarrUserWarning)
                group = zarr.open_group(path, mode="r+", use_consolidated=True)
            attrs = group.attrs.asdict()
            check_store_attrs(attrs, path)
            if "resume_slot" not in attrs or RESUME_GROUP not in group:
                raise StoreError(f"store {str(path)!r} has no resume state, so it cannot be continued")
            layout = _layout_from_group(group, attrs)
            recorder = cls(path, group, layout, lock, published=True, buffer_steps=buffer_steps,
                           max_buffer_bytes=max_buffer_bytes, flush_seconds=flush_seconds)
        except BaseException:
            lock.release()
            raise
        return recorder

    # -- state ---------------------------------------------------------------------------

    @property
    def attrs(self) -> dict:
        """The root attributes as last written."""
        return self._group.attrs.asdict()

    @property
    def next_step(self) -> int:
        """The step that :meth:`append` expects next."""
        return self._next_step

    @property
    def complete(self) -> bool:
        return self.steps_done >= self.layout.steps and self._resume_slot >= 0

    @property
    def buffered_steps(self) -> int:
        return self._count

    @property
    def needs_flush(self) -> bool:
        """True when the buffer is full or the last flush is older than ``flush_seconds``."""
        if self._count == 0:
            return False
        return (
            self._count >= self.buffer_steps
            or self._pending_bytes >= self.max_buffer_bytes
            or time.monotonic() - self._last_flush >= self.flush_seconds
        )

    # -- writing -------------------------------------------------------------------------

    def append(self, step: int, values: dict, *, classes: np.ndarray | None = None,
               state: np.ndarray | None = None) -> None:
        """Buffer the record of one step.

        Parameters
        ----------
        step
            Must be :attr:`next_step`.
        values
            Per-step values keyed by schema variable name (``state_l1``, ``iou``, ...).
            Variables left out keep their fill value for this step.
        classes
            ``(pixel_y, pixel_x)`` predicted class map; required at snapshot steps
            (multiples of ``snapshot_every``), ignored otherwise.
        state
            ``(y, x, channel)`` state; required at snapshot steps when the store
            records states.
        """
        if step != self._next_step:
            raise ValueError(f"step {step} appended, but the recorder expects step {self._next_step}")
        if step > self.layout.steps:
            raise ValueError(f"step {step} is beyond the {self.layout.steps} steps this store was created for")
        if self._count >= self.buffer_steps:
            raise RuntimeError("the step buffer is full: call flush() before appending more steps")
        unknown = sorted(set(values) - set(self._series))
        if unknown:
            raise ValueError(f"values {unknown} are not per-step variables of this store; expected some of {self._series}")

        index = self._count
        for name, value in values.items():
            self._buffers[name][index] = value
        if step % self.layout.snapshot_every == 0:
            self._add_snapshot(step, classes, state)
        self._count += 1
        self._next_step += 1

    def _add_snapshot(self, step: int, classes, state) -> None:
        expected = self.layout.shape("classes")[1:]
        if classes is None or tuple(np.shape(classes)) != expected:
            raise ValueError(
                f"step {step} is a snapshot step: pass classes of shape {expected}, got "
                f"{None if classes is None else np.shape(classes)}"
            )
        snapshot = {"classes": np.array(classes, dtype=np.int8)}
        if self.layout.record_state:
            expected = self.layout.shape("state")[1:]
            if state is None or tuple(np.shape(state)) != expected:
                raise ValueError(
                    f"step {step} is a snapshot step of a store that records states: pass state of shape "
                    f"{expected}, got {None if state is None else np.shape(state)}"
                )
            snapshot["state"] = np.array(state, dtype=np.float32)
        self._snapshots.append((step // self.layout.snapshot_every, snapshot))
        self._pending_bytes += sum(array.nbytes for array in snapshot.values())

    def flush(self, resume_state: dict) -> None:
        """Write the buffered steps and ``resume_state``, then commit ``steps_done``.

        Parameters
        ----------
        resume_state
            The simulator's state after the last appended step, as
            ``Simulator.get_resume_state()`` returns it: a JSON-able dict (NumPy
            scalars and arrays allowed) with the state array under ``"state"``.
        """
        if self._count == 0 and self._resume_slot >= 0:
            return
        if self._count == 0:
            raise RuntimeError("nothing to flush: append step 0 before the first flush")
        first = self._next_step - self._count
        last = self._next_step - 1
        for name in self._series:
            self._group[name][first : last + 1] = self._buffers[name][: self._count]
        for index, snapshot in self._snapshots:
            for name, array in snapshot.items():
                self._group[name][index] = array

        slot = 1 - self._resume_slot if self._resume_slot >= 0 else 0
        self._write_resume_slot(slot, last, resume_state)
        # One metadata write: zarr's attrs.update would write zarr.json once per key, and a
        # kill between those writes left steps_done pointing at the other resume slot.
        self._group.update_attributes(
            {"steps_done": last, "resume_slot": slot, "complete": last >= self.layout.steps}
        )
        self.steps_done = last
        self._resume_slot = slot
        self._reset_buffers()
        if not self._published:
            self._publish()

    def _write_resume_slot(self, slot: int, step: int, resume_state: dict) -> None:
        info = {key: value for key, value in resume_state.items() if key != "state"}
        state = np.asarray(resume_state["state"], dtype=np.float32)
        resume = self._group[RESUME_GROUP]
        expected = tuple(resume["state"].shape[1:])
        if state.shape != expected:
            raise ValueError(f"resume state has shape {state.shape}; this store expects {expected}")
        resume["state"][slot] = state
        resume["info"][slot] = json.dumps({"step": step, "simulator": info}, default=_encode_json)

    def _publish(self) -> None:
        """Rename the temporary store to its target path, replacing the old store if asked to."""
        temp_path, target = self._temp_path, self.path
        if self._replaced is not None:
            old_path = target.parent / f".{target.name}.replaced-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            os.rename(target, old_path)
            os.rename(temp_path, target)
            self._replaced[1].release()
            self._replaced = None
            shutil.rmtree(old_path, ignore_errors=True)
        else:
            try:
                os.rename(temp_path, target)
            except OSError as error:
                raise StoreError(
                    f"cannot move the new store into place at {str(target)!r}: {error}; "
                    f"its data is kept at {str(temp_path)!r}"
                ) from error
        self._published = True
        self._temp_path = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=zarr.errors.ZarrUserWarning)
            self._group = zarr.open_group(target, mode="r+", use_consolidated=True)

    def _reset_buffers(self) -> None:
        for name, buffer in self._buffers.items():
            buffer[...] = FILL_VALUES[VARIABLES[name].dtype]
        self._count = 0
        self._snapshots: list[tuple[int, dict]] = []
        self._pending_bytes = 0
        self._last_flush = time.monotonic()

    # -- reading back --------------------------------------------------------------------

    def read_resume_state(self) -> dict:
        """Return the committed resume state: ``{"step": int, "simulator": dict}`` with ``simulator["state"]``."""
        if self._resume_slot < 0:
            raise StoreError(f"store {str(self.path)!r} has no committed step to resume from")
        resume = self._group[RESUME_GROUP]
        info = json.loads(str(resume["info"][self._resume_slot]), object_hook=_decode_json)
        if info["step"] != self.steps_done:
            raise StoreError(
                f"store {str(self.path)!r}: resume state is for step {info['step']} but steps_done is "
                f"{self.steps_done}; the store is damaged"
            )
        info["simulator"]["state"] = np.asarray(resume["state"][self._resume_slot])
        return info

    def read_inputs(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Return the stored images and labels (None when the store has no labels)."""
        images = np.asarray(self._group["images"][...])
        labels = np.asarray(self._group["labels"][...]) if "labels" in self._group else None
        return images, labels

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the lock; a store that was never flushed is removed."""
        if self._temp_path is not None:
            shutil.rmtree(self._temp_path, ignore_errors=True)
            self._temp_path = None
        if self._replaced is not None:
            self._replaced[1].release()
            self._replaced = None
        self._lock.release()

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _build_store(path: Path, layout: StoreLayout, *, rule: Rule, images, labels, attrs: dict) -> zarr.Group:
    """Create every array of an empty store at ``path``; write coordinates, images and labels."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape != layout.shape("images"):
        raise ValueError(f"images have shape {images.shape}; the layout expects {layout.shape('images')}")
    if layout.labels != (labels is not None):
        raise ValueError("labels must be given exactly when the layout has labels")

    root_attrs = {
        "schema": SCHEMA_NAME,
        "schema_version": SCHEMA_VERSION,
        "steps_requested": int(layout.steps),
        "steps_done": 0,
        "complete": False,
        "resume_slot": -1,
        "snapshot_every": int(layout.snapshot_every),
        "rule_architecture": rule.architecture.to_dict(),
        "rule_sha256": rule.weights_sha256(),
        "class_names": list(layout.class_names),
        "versions": library_versions(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    root_attrs.update(attrs)
    group = zarr.open_group(path, mode="w-", zarr_format=3, attributes=root_attrs)

    sizes = layout.dim_sizes()
    step = group.create_array("step", shape=(sizes["step"],), dtype="int64", chunks=(min(sizes["step"], SERIES_CHUNK),),
                              dimension_names=("step",), attributes={"units": "steps", "long_name": "simulation step"})
    step[...] = np.arange(sizes["step"])
    snapshot_step = group.create_array(
        "snapshot_step", shape=(sizes["snapshot"],), dtype="int64", chunks=(sizes["snapshot"],),
        dimension_names=("snapshot",), attributes={"units": "steps", "long_name": "step of the snapshot"},
    )
    snapshot_step[...] = np.arange(sizes["snapshot"]) * layout.snapshot_every
    class_names = group.create_array("class", shape=(sizes["class"],), dtype=str, chunks=(sizes["class"],),
                                     dimension_names=("class",), attributes={"long_name": "class name"})
    class_names[...] = np.array(layout.class_names, dtype=object)

    for name in layout.variable_names():
        variable = VARIABLES[name]
        array_attrs = {"units": variable.units, "long_name": variable.long_name}
        if variable.dims[0] == "snapshot":
            array_attrs["coordinates"] = "snapshot_step"  # CF: xarray shows it as a coordinate
        group.create_array(
            name, shape=layout.shape(name), dtype=variable.dtype, chunks=layout.chunks(name),
            fill_value=FILL_VALUES[variable.dtype], dimension_names=variable.dims, attributes=array_attrs,
        )
    group["images"][...] = images
    if labels is not None:
        group["labels"][...] = np.asarray(labels).astype(np.int8)

    resume = group.create_group(RESUME_GROUP, attributes={
        "long_name": "resume state, two slots; the root attribute resume_slot names the valid one"})
    state_shape = (sizes["y"], sizes["x"], sizes["channel"])
    resume.create_array("state", shape=(2,) + state_shape, dtype="float32", chunks=(1,) + state_shape,
                        fill_value=float("nan"), dimension_names=("resume_slot", "y", "x", "channel"),
                        attributes={"units": "state value", "long_name": "state after step resume info.step"})
    resume.create_array("info", shape=(2,), dtype=str, chunks=(1,), dimension_names=("resume_slot",),
                        attributes={"long_name": "JSON: step and simulator random state"})

    with warnings.catch_warnings():
        # zarr 3.1 warns that consolidated metadata is not yet in the format 3 spec;
        # xarray reads it, and without it every open_zarr warns instead.
        warnings.simplefilter("ignore", category=zarr.errors.ZarrUserWarning)
        zarr.consolidate_metadata(path)
        return zarr.open_group(path, mode="r+", use_consolidated=True)


def _layout_from_group(group: zarr.Group, attrs: dict) -> StoreLayout:
    images = group["images"]
    resume_state = group[RESUME_GROUP]["state"]
    return StoreLayout(
        steps=int(attrs["steps_requested"]),
        snapshot_every=int(attrs["snapshot_every"]),
        grid_shape=tuple(resume_state.shape[1:3]),
        image_shape=tuple(images.shape[1:3]),
        state_channels=int(resume_state.shape[3]),
        class_names=tuple(attrs["class_names"]),
        image_count=int(images.shape[0]),
        labels="labels" in group,
        reset_gate="reset_gate_mean" in group,
        record_state="state" in group,
    )
