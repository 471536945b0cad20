"""Training configuration: dataclasses, TOML loading, command-line overrides and validation.

A config file has three tables, ``[model]``, ``[data]`` and ``[training]``, whose keys
are the fields of :class:`ModelConfig`, :class:`DataConfig` and :class:`TrainingConfig`.
Every key is optional, and an unknown table or key is an error. The run directory gets
the resolved config as ``config.toml``, which :func:`load_config` reads back.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from nca_sim.rule import NORMALIZATIONS, PADDINGS, PERCEPTIONS, Architecture
from nca_train.lr_schedule import LR_SCHEDULES


class ConfigError(ValueError):
    """A config value or file that is invalid."""


@dataclass
class ModelConfig:
    """The architecture to train (see :class:`nca_sim.rule.Architecture`) and what stays frozen."""

    state_channels: int = 48
    hidden_channels: int = 64
    num_layers: int = 4
    perception: str = "full"
    residual: bool = True
    reset_gate: bool = False
    normalization: str = "none"
    padding: str = "zero"
    update_probability: float = 0.5
    highres_encoder_channels: int = 0
    # Keep the 3x3 spatial filter (model.spatial_filter) at its random initialization.
    freeze_spatial: bool = False

    def architecture(self) -> Architecture:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "freeze_spatial"}
        return Architecture(**fields)


@dataclass
class DataConfig:
    """Source and size of the training images."""

    # A dataset folder, or "" for the built-in synthetic dataset.
    source: str = ""
    # Side of the square state grid in cells; images are read at size * upscale pixels.
    size: int = 64
    # Width in pixels of the boundary band derived around binary masks.
    boundary_width: int = 2
    # Images in the synthetic dataset.
    num_synthetic: int = 512
    # Random flips and the reader's other augmentations on every sampled training image.
    augment: bool = True


@dataclass
class TrainingConfig:
    """Optimization, pools and run control."""

    # Optimizer steps (iterations). One iteration is one mini-unroll of unroll_steps steps.
    # The default keeps a run with the default model and batch under 5 minutes on 2 CPU cores
    # (2.7 s per iteration with PyTorch 2.13 on idle cores, about 6 s on shared ones). It checks the
    # pipeline only: a useful model needs thousands of iterations (docs/training.md).
    iterations: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-4
    # How the learning rate changes over the iterations: constant, cosine or step
    # (nca_train/lr_schedule.py). A cosine schedule spans training.iterations.
    lr_schedule: str = "constant"
    # Where the cosine schedule ends, at the last iteration.
    min_learning_rate: float = 0.0
    # Iterations of linear warmup from near 0 to learning_rate, before any schedule.
    warmup_iterations: int = 0
    # The step schedule multiplies the learning rate by lr_step_factor every lr_step_every iterations.
    lr_step_every: int = 0
    lr_step_factor: float = 0.1
    # T: the rollout length the model is trained for.
    target_steps: int = 40
    # K: steps back-propagated per iteration (the mini-unroll).
    unroll_steps: int = 10
    # Back-propagate through all target_steps from fresh states every iteration, without pools.
    full_unroll: bool = False
    # Fractions of images (p_i) and of states (p_s) that survive target_steps without a reset.
    image_survival: float = 0.5
    state_survival: float = 0.5
    # Maximum gradient norm; 0 disables clipping.
    grad_clip: float = 0.0
    seed: int = 0
    # Write checkpoint.pt every this many iterations (and always at the end).
    checkpoint_every: int = 100
    # Wall-clock budget in minutes; training stops cleanly with a checkpoint when it is spent. 0: no limit.
    time_limit: float = 0.0
    # torch.set_num_threads; 0 uses every core.
    threads: int = 0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "config") -> "TrainConfig":
        config = cls()
        apply_overrides(config, data, origin)
        return config


SECTIONS = {"model": ModelConfig, "data": DataConfig, "training": TrainingConfig}


def _coerce(section: str, key: str, value, expected_type, origin: str):
    """Return ``value`` as ``expected_type``, or raise ConfigError naming the key."""
    name = f"{section}.{key}"
    if expected_type is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{origin}: {name}={value!r} is invalid: expected true or false")
    if expected_type is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{origin}: {name}={value!r} is invalid: expected an integer")
    if expected_type is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{origin}: {name}={value!r} is invalid: expected a number")
    if expected_type is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{origin}: {name}={value!r} is invalid: expected a string")
    raise TypeError(f"unsupported config type {expected_type!r}")


def apply_overrides(config: TrainConfig, data: dict, origin: str) -> TrainConfig:
    """Set the values of a nested ``{section: {key: value}}`` mapping on ``config`` in place.

    Raises ConfigError naming any unknown section or key, or a value of the wrong type.
    """
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(
                f"{origin}: unknown table [{section}]; expected one of {', '.join(f'[{s}]' for s in SECTIONS)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(f"{origin}: {section!r} must be a table such as [{section}], got {values!r}")
        target = getattr(config, section)
        types = {f.name: f.type for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in types:
                raise ConfigError(
                    f"{origin}: unknown key {key!r} in [{section}]; valid keys are {', '.join(sorted(types))}"
                )
            expected_type = {"int": int, "float": float, "bool": bool, "str": str}[types[key]]
            setattr(target, key, _coerce(section, key, value, expected_type, origin))
    return config


def load_config(
    path: str | Path | None, overrides: dict | None = None, base: TrainConfig | None = None
) -> TrainConfig:
    """Build a validated config from ``base`` (defaults when None), then the TOML file at ``path``, then ``overrides``.

    ``overrides`` is a nested ``{section: {key: value}}`` mapping, such as the options
    given on the command line; its values win over the file's.
    """
    config = copy.deepcopy(base) if base is not None else TrainConfig()
    if path is not None:
        path = Path(path)
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except FileNotFoundError:
            raise ConfigError(f"config file {str(path)!r} not found; check the path given to --config") from None
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {error}") from error
        except UnicodeDecodeError:
            # TOML is UTF-8 text; this is usually an image or another binary file.
            raise ConfigError(
                f"config file {str(path)!r} is not UTF-8 text; give a TOML file with [model], [data] and [training] tables"
            ) from None
        apply_overrides(config, data, origin=str(path))
    if overrides:
        apply_overrides(config, overrides, origin="command line")
    validate(config)
    return config


def survival_to_reset_probability(survival: float, unroll_steps: int, target_steps: int) -> float:
    """Return the per-mini-unroll reset probability q that leaves ``survival`` of samples unreset at age T.

    A sample passes n = T / K mini-unrolls on its way to age T and survives each with
    probability 1 - q, so (1 - q) ** n = p and q = 1 - p ** (K / T).
    """
    return 1.0 - survival ** (unroll_steps / target_steps)


def validate(config: TrainConfig) -> None:
    """Raise ConfigError naming the first invalid value and how to fix it."""
    m, d, t = config.model, config.data, config.training

    if m.perception not in PERCEPTIONS:
        raise ConfigError(f"model.perception={m.perception!r} is not supported: use one of {', '.join(PERCEPTIONS)}")
    if m.normalization not in NORMALIZATIONS:
        raise ConfigError(
            f"model.normalization={m.normalization!r} is not supported: use one of {', '.join(NORMALIZATIONS)}"
        )
    if m.padding not in PADDINGS:
        raise ConfigError(f"model.padding={m.padding!r} is not supported: use one of {', '.join(PADDINGS)}")
    for name, value, minimum in (
        ("model.state_channels", m.state_channels, 1),
        ("model.hidden_channels", m.hidden_channels, 1),
        ("model.num_layers", m.num_layers, 2),
        ("model.highres_encoder_channels", m.highres_encoder_channels, 0),
        ("data.size", d.size, 3),
        ("data.boundary_width", d.boundary_width, 0),
        ("data.num_synthetic", d.num_synthetic, 1),
        ("training.iterations", t.iterations, 0),
        ("training.batch_size", t.batch_size, 1),
        ("training.target_steps", t.target_steps, 1),
        ("training.unroll_steps", t.unroll_steps, 1),
        ("training.checkpoint_every", t.checkpoint_every, 1),
        ("training.threads", t.threads, 0),
        ("training.warmup_iterations", t.warmup_iterations, 0),
        ("training.lr_step_every", t.lr_step_every, 0),
    ):
        if value < minimum:
            raise ConfigError(f"{name}={value} is invalid: expected an integer >= {minimum}")

    if not 0.0 < m.update_probability <= 1.0:
        raise ConfigError(f"model.update_probability={m.update_probability} is invalid: expected 0 < p <= 1")
    if not t.full_unroll and t.unroll_steps > t.target_steps:
        raise ConfigError(
            f"training.unroll_steps={t.unroll_steps} is larger than training.target_steps={t.target_steps}: "
            "choose K <= T, or pass --full-unroll to back-propagate all T steps"
        )

    for name, value in (("training.image_survival", t.image_survival), ("training.state_survival", t.state_survival)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name}={value} is out of range: expected a fraction in [0, 1]")
    for name, value in (
        ("training.learning_rate", t.learning_rate),
        ("training.grad_clip", t.grad_clip),
        ("training.time_limit", t.time_limit),
    ):
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"{name}={value} is invalid: expected a finite number >= 0")
    if t.learning_rate == 0:
        raise ConfigError("training.learning_rate=0 is invalid: expected a positive learning rate such as 3e-4")
    if t.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(
            f"training.lr_schedule={t.lr_schedule!r} is not supported: use one of {', '.join(LR_SCHEDULES)}"
        )
    if not math.isfinite(t.min_learning_rate) or not 0 <= t.min_learning_rate <= t.learning_rate:
        raise ConfigError(
            f"training.min_learning_rate={t.min_learning_rate} is invalid: "
            f"expected a number from 0 to training.learning_rate={t.learning_rate}"
        )
    if t.lr_schedule == "step" and t.lr_step_every == 0:
        raise ConfigError(
            "training.lr_schedule='step' needs training.lr_step_every >= 1, the iterations between decays "
            "(--lr-step-every)"
        )
    if not math.isfinite(t.lr_step_factor) or not 0 < t.lr_step_factor <= 1:
        raise ConfigError(f"training.lr_step_factor={t.lr_step_factor} is invalid: expected 0 < factor <= 1")

    if d.source and not Path(d.source).is_dir():
        raise ConfigError(
            f"data.source={d.source!r} is not a readable folder; give a dataset folder, or leave it empty for the synthetic dataset"
        )


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} to TOML")


def to_toml(config: TrainConfig) -> str:
    """Return ``config`` as a TOML document that :func:`load_config` reads back unchanged."""
    lines = []
    for section, values in config.to_dict().items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)
