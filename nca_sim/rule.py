"""Rule files: the learned update rule of a cellular automaton, as NumPy arrays.

A rule file is the contract between the trainer and the simulator. It is a NumPy
``.npz`` archive, readable with ``numpy.load(path, allow_pickle=False)``, holding

- ``architecture``: a UTF-8 JSON document in a 1-D ``uint8`` array, the fields of
  :class:`Architecture` plus ``format`` and ``format_version``;
- one float32 array per weight, named and shaped as :func:`weight_shapes` lists.

Weights keep PyTorch's layouts: a convolution is ``(out, in, kh, kw)`` and a 1x1
convolution is stored squeezed as ``(out, in)``. The transposed convolution of the
high-resolution decoder is ``(in, out, kh, kw)``. docs/rule-file.md describes the
format for readers outside Python.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nca_sim.files import atomic_output

FORMAT_NAME = "nca-rule"
FORMAT_VERSION = 1

PERCEPTIONS = ("full", "depthwise")
NORMALIZATIONS = ("none", "batch", "instance", "pixel")
PADDINGS = ("zero", "replicate", "circular")
DEFAULT_CLASS_NAMES = ("background", "object", "boundary")

# The decoder of the high-resolution variant: a transposed convolution with this
# kernel, stride 2 and padding 1 maps an (h, w) state grid to (2h, 2w) pixels.
DECODER_KERNEL = 4


class RuleFileError(ValueError):
    """A rule file or architecture that is invalid, unsupported or inconsistent."""


@dataclass(frozen=True)
class Architecture:
    """Every choice that defines the cellular automaton, except its weights.

    Parameters
    ----------
    state_channels
        Channels of a cell's state, ``d``.
    hidden_channels
        Width of the hidden 1x1 layers of the update network.
    num_layers
        Layers of the update network: the 3x3 perception layer, ``num_layers - 2``
        hidden 1x1 layers with ReLU, and the final 1x1 layer that gives the update.
        At least 2.
    perception
        ``"full"``: a 3x3 convolution over state and image channels.
        ``"depthwise"``: a 1x1 convolution followed by a depthwise 3x3 convolution.
    residual
        True for ``S(s) = s + U(s)``, False for ``S(s) = U(s)``.
    reset_gate
        Add the gate ``r = sigmoid(W_R h + b_R)`` on the last hidden activation
        ``h``; the new state is ``r * z + (1 - r) * S(s)`` with ``z ~ N(0, 1)``.
    normalization
        Statistics applied to the state before the update network reads it:
        ``"none"``; ``"batch"`` (per channel over batch, height and width, live
        statistics also at evaluation); ``"instance"`` (per sample and channel over
        height and width); ``"pixel"`` (per cell, ``s / sqrt(mean_c s^2 + eps)``).
        None of them has learned parameters.
    norm_eps
        The epsilon added to the variance in every normalization.
    padding
        How the 3x3 layers see beyond the grid border: ``"zero"``, ``"replicate"``
        or ``"circular"``. The simulator uses the same.
    update_probability
        Probability that a cell applies its update at a step.
    class_names
        Output classes in logit order.
    highres_encoder_channels
        0 for the plain model, where the cell reads the image's RGB at its own
        pixel. Positive for the high-resolution variant: the image has twice the
        state grid's height and width, a stride-2 3x3 convolution with ReLU
        encodes it to this many channels per cell, and a stride-2 transposed
        convolution decodes the state to logits at the image's resolution.
    """

    state_channels: int = 48
    hidden_channels: int = 64
    num_layers: int = 4
    perception: str = "full"
    residual: bool = True
    reset_gate: bool = False
    normalization: str = "none"
    norm_eps: float = 1e-5
    padding: str = "zero"
    update_probability: float = 0.5
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES
    highres_encoder_channels: int = 0

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(self.class_names))
        self.validate()

    @property
    def highres(self) -> bool:
        return self.highres_encoder_channels > 0

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_channels(self) -> int:
        """Image channels that each cell reads besides its state."""
        return self.highres_encoder_channels if self.highres else 3

    @property
    def upscale(self) -> int:
        """Image pixels per state cell along each axis."""
        return 2 if self.highres else 1

    def validate(self) -> None:
        """Raise RuleFileError naming the first invalid field."""
        def positive_int(name, minimum=1):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
                raise RuleFileError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")

        positive_int("state_channels")
        positive_int("hidden_channels")
        positive_int("num_layers", minimum=2)
        if not isinstance(self.highres_encoder_channels, (int, np.integer)) or self.highres_encoder_channels < 0:
            raise RuleFileError(
                f"highres_encoder_channels={self.highres_encoder_channels!r} is invalid: "
                "expected 0 (plain model) or a positive integer"
            )
        for name, allowed in (
            ("perception", PERCEPTIONS),
            ("normalization", NORMALIZATIONS),
            ("padding", PADDINGS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise RuleFileError(f"{name}={value!r} is not supported: expected one of {', '.join(allowed)}")
        if not 0.0 < float(self.update_probability) <= 1.0:
            raise RuleFileError(
                f"update_probability={self.update_probability!r} is invalid: expected 0 < p <= 1"
            )
        if not float(self.norm_eps) > 0.0:
            raise RuleFileError(f"norm_eps={self.norm_eps!r} is invalid: expected a positive number")
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise RuleFileError(
                f"class_names={list(self.class_names)!r} is invalid: expected at least 2 distinct names"
            )

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RuleFileError(
                f"unknown architecture fields {unknown}: the file was written by a newer nca; upgrade nca to read it"
            )
        return cls(**data)

    def replace(self, **changes) -> "Architecture":
        return dataclasses.replace(self, **changes)


def weight_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """Return the name and shape of every weight array that a rule with ``arch`` holds."""
    d, hidden, cin = arch.state_channels, arch.hidden_channels, arch.input_channels
    shapes: dict[str, tuple[int, ...]] = {}
    if arch.perception == "full":
        shapes["perceive.weight"] = (hidden, d + cin, 3, 3)
        shapes["perceive.bias"] = (hidden,)
    else:
        shapes["pointwise.weight"] = (hidden, d + cin)
        shapes["pointwise.bias"] = (hidden,)
        shapes["depthwise.weight"] = (hidden, 3, 3)
        shapes["depthwise.bias"] = (hidden,)
    for i in range(arch.num_layers - 2):
        shapes[f"hidden.{i}.weight"] = (hidden, hidden)
        shapes[f"hidden.{i}.bias"] = (hidden,)
    shapes["update.weight"] = (d, hidden)
    shapes["update.bias"] = (d,)
    if arch.reset_gate:
        shapes["reset.weight"] = (d, hidden)
        shapes["reset.bias"] = (d,)
    if arch.highres:
        shapes["encoder.weight"] = (arch.highres_encoder_channels, 3, 3, 3)
        shapes["encoder.bias"] = (arch.highres_encoder_channels,)
        shapes["decoder.weight"] = (d, arch.num_classes, DECODER_KERNEL, DECODER_KERNEL)
        shapes["decoder.bias"] = (arch.num_classes,)
    else:
        shapes["classifier.weight"] = (arch.num_classes, d)
        shapes["classifier.bias"] = (arch.num_classes,)
    return shapes


def multiply_adds_per_cell(arch: Architecture) -> int:
    """Count the multiply-adds of one cell update (biases, encoder and readout excluded)."""
    d, hidden, cin = arch.state_channels, arch.hidden_channels, arch.input_channels
    if arch.perception == "full":
        count = (d + cin) * 9 * hidden
    else:
        count = (d + cin) * hidden + 9 * hidden
    count += (arch.num_layers - 2) * hidden * hidden + hidden * d
    if arch.reset_gate:
        count += hidden * d
    return count


@dataclass
class Rule:
    """A learned rule: its architecture, float32 weights and free-form metadata."""

    architecture: Architecture
    weights: dict[str, np.ndarray]
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        self.weights = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in self.weights.items()}
        validate_weights(self.architecture, self.weights)

    @property
    def parameter_count(self) -> int:
        return int(sum(w.size for w in self.weights.values()))

    def weights_sha256(self) -> str:
        """Return a hash of the weights, stable across files and platforms."""
        digest = hashlib.sha256()
        for name in sorted(self.weights):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.weights[name], dtype="<f4").tobytes())
        return digest.hexdigest()


def validate_weights(arch: Architecture, weights: dict[str, np.ndarray]) -> None:
    """Raise RuleFileError unless ``weights`` has exactly the finite arrays ``arch`` needs."""
    expected = weight_shapes(arch)
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise RuleFileError(f"missing weights {missing} for this architecture")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise RuleFileError(f"unexpected weights {extra}: they do not belong to this architecture")
    for name, shape in expected.items():
        array = weights[name]
        if tuple(array.shape) != shape:
            raise RuleFileError(f"weight {name!r} has shape {tuple(array.shape)}, expected {shape}")
        if not np.all(np.isfinite(array)):
            raise RuleFileError(f"weight {name!r} contains NaN or infinity; export a checkpoint from before the divergence")


def save_rule(rule: Rule, path: str | os.PathLike) -> Path:
    """Write ``rule`` to ``path`` atomically: an existing file is replaced only by a complete one."""
    path = Path(path)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **rule.architecture.to_dict()}
    header["metadata"] = rule.metadata
    arrays = {"architecture": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)}
    arrays.update(rule.weights)
    with atomic_output(path) as temporary, open(temporary, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_rule(path: str | os.PathLike) -> Rule:
    """Read and validate a rule file; raise RuleFileError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise RuleFileError(f"rule file {str(path)!r} not found; write one with `nca export CHECKPOINT -o RULE`")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        # NumPy's own message for a non-archive talks about pickles and allow_pickle,
        # which would mislead: a rule file is never a pickle.
        raise RuleFileError(
            f"{str(path)!r} is not a rule file (not an .npz archive); write one with `nca export CHECKPOINT -o RULE`"
        ) from error
    with archive:
        if "architecture" not in archive.files:
            raise RuleFileError(
                f"{str(path)!r} has no 'architecture' entry, so it is not an nca rule file; "
                "write one with `nca export CHECKPOINT -o RULE`"
            )
        try:
            header = json.loads(archive["architecture"].tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RuleFileError(f"{str(path)!r}: the architecture entry is not valid JSON: {error}") from error
        if header.pop("format", None) != FORMAT_NAME:
            raise RuleFileError(f"{str(path)!r} is not an nca rule file (format field is not {FORMAT_NAME!r})")
        version = header.pop("format_version", None)
        if version != FORMAT_VERSION:
            raise RuleFileError(
                f"{str(path)!r} has rule format version {version!r}; this nca reads version {FORMAT_VERSION}"
            )
        metadata = header.pop("metadata", {})
        try:
            arch = Architecture.from_dict(header)
        except TypeError as error:
            raise RuleFileError(f"{str(path)!r}: invalid architecture: {error}") from error
        weights = {name: archive[name] for name in archive.files if name != "architecture"}
    for name, array in weights.items():
        if array.dtype != np.float32:
            raise RuleFileError(f"{str(path)!r}: weight {name!r} has dtype {array.dtype}, expected float32")
    try:
        return Rule(arch, weights, metadata)
    except RuleFileError as error:
        raise RuleFileError(f"{str(path)!r}: {error}") from error
