"""The training loop: mini-unrolls over sample pools, or full unrolls, with checkpoints and a metrics log.

One iteration is one optimizer step:

1. pools mode (default): draw which pool slots get a new image and which a new state
   (:class:`~nca_train.pools.SamplePool`), fill them, run K = ``unroll_steps`` steps from
   the kept states and back-propagate through those K steps only;
   full-unroll mode: fresh images and states for the whole batch, T = ``target_steps``
   steps, back-propagated through all of them;
2. the loss is the pixel-wise cross-entropy (labels of -1 ignored), averaged over the
   (sample, step) pairs whose age is at least T / 3, so the model is judged only after
   it has had time to segment;
3. Adam step at the learning rate of the schedule (:mod:`nca_train.lr_schedule`),
   optional gradient-norm clipping, then the metrics line.

The run directory contains ``config.toml``, ``metrics.jsonl``, ``checkpoint.pt`` and, at
the end of a run, ``rule.npz``.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nca_sim.files import atomic_output

from nca_train.allocator import keep_freed_memory
from nca_train.checkpoint import capture_rng_states, load_checkpoint, restore_rng_states, save_checkpoint
from nca_train.config import ConfigError, TrainConfig, survival_to_reset_probability, to_toml
from nca_train.export import export_rule
from nca_train.lr_schedule import learning_rate_at
from nca_train.metrics import batch_iou
from nca_train.model import SegmentationNCA, count_parameters
from nca_train.pools import SamplePool

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"
CONFIG_NAME = "config.toml"
RULE_NAME = "rule.npz"


class TrainingDivergedError(RuntimeError):
    """The loss, a state or a weight became NaN or infinite."""


class RunDirectoryError(ValueError):
    """A run directory that cannot be used as requested (exists without resume, or has no checkpoint)."""


@dataclass
class TrainResult:
    run_dir: Path
    iterations: int
    last_loss: float | None
    stopped_by_time_limit: bool
    elapsed_seconds: float


class ImageSampler:
    """Draw augmented training images and labels from a dataset, decoding each item once.

    Images come out as ``(n, 3, H, W)`` float32 tensors and labels as ``(n, H, W)``
    int64 tensors.
    """

    def __init__(self, dataset, augment: bool):
        if len(dataset) == 0:
            raise ConfigError("the training dataset is empty; check data.source and the split files in it")
        self.dataset = dataset
        self.augment = augment
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if index not in self._cache:
            self._cache[index] = self.dataset[index]
        return self._cache[index]

    def sample(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        from nca_train.data import augment

        images, labels = [], []
        for index in rng.integers(len(self.dataset), size=count):
            image, label = self._item(int(index))
            if self.augment:
                image, label = augment(image, label, rng)
            images.append(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
            labels.append(np.ascontiguousarray(label, dtype=np.int64))
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))


def open_training_data(config: TrainConfig, upscale: int, split: str = "train"):
    """Open the dataset of ``config.data`` at the image size the model needs: ``size * upscale`` pixels."""
    from nca_train.data import open_dataset

    side = config.data.size * upscale
    return open_dataset(
        config.data.source or None,
        split=split,
        image_size=(side, side),
        boundary_width=config.data.boundary_width,
        num_synthetic=config.data.num_synthetic,
        seed=config.training.seed,
    )


def unroll_loss(
    model: SegmentationNCA,
    state: torch.Tensor,
    cell_input: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: np.ndarray,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, float]:
    """Run ``len(loss_mask)`` steps and return the loss, the final state, the last logits and the mean reset gate.

    ``loss_mask[k, i]`` is True when step ``k + 1`` of sample ``i`` enters the loss.
    The loss is the mean of the per-sample, per-step cross-entropies (each a mean over
    the sample's labelled pixels) over the marked pairs; it is None when no pair is marked.
    """
    steps = loss_mask.shape[0]
    weights = torch.from_numpy(loss_mask.astype(np.float32))
    valid_pixels = (labels != -1).sum(dim=(1, 2)).clamp(min=1).to(torch.float32)
    total = state.new_zeros(())
    reset_sum = 0.0
    logits = None
    for k in range(steps):
        state, reset_mean = model.step(state, cell_input)
        reset_sum += float(reset_mean.detach())
        if weights[k].any() or k == steps - 1:
            logits = model.logits(state)
        if weights[k].any():
            pixel_loss = F.cross_entropy(logits, labels, ignore_index=-1, reduction="none")
            sample_loss = pixel_loss.sum(dim=(1, 2)) / valid_pixels
            total = total + (sample_loss * weights[k]).sum()
    count = float(weights.sum())
    loss = total / count if count > 0 else None
    return loss, state, logits, reset_sum / steps


def fresh_batch(model, sampler: ImageSampler, batch: int, side: int, target_steps: int, rng: np.random.Generator):
    """Return new images, labels and N(0, 1) states, the loss mask of a full unroll and its case counts.

    The loss mask marks the steps whose age is at least ``target_steps / 3``, as in pool mode.
    """
    images, labels = sampler.sample(batch, rng)
    states = model.initial_state(batch, side, side)
    ages = np.arange(1, target_steps + 1)[:, None].repeat(batch, axis=1)
    loss_mask = ages >= target_steps / 3
    everything = np.ones(batch, dtype=bool)
    return images, labels, states, loss_mask, SamplePool.count_cases(everything, everything)


def pool_batch(model, sampler: ImageSampler, pool: SamplePool, contents, side: int, unroll_steps: int,
               target_steps: int, rng: np.random.Generator):
    """Draw the pool's resets and return its images, labels and states, the loss mask and the case counts.

    ``contents`` is the ``(images, labels, states)`` of the previous iteration, or
    Nones before the first one. The returned tensors are new; ``contents`` is unchanged.
    """
    new_image, new_state = pool.draw_resets(rng)
    cases = SamplePool.count_cases(new_image, new_state)
    images, labels, states = contents
    if images is None:
        images, labels = sampler.sample(pool.size, rng)
        states = model.initial_state(pool.size, side, side)
    else:
        images, labels, states = images.clone(), labels.clone(), states.clone()
        if new_image.any():
            slots = torch.from_numpy(np.flatnonzero(new_image))
            images[slots], labels[slots] = sampler.sample(len(slots), rng)
        if new_state.any():
            slots = torch.from_numpy(np.flatnonzero(new_state))
            states[slots] = model.initial_state(len(slots), side, side)
    loss_mask = pool.loss_mask(unroll_steps, target_steps / 3)
    return images, labels, states, loss_mask, cases


def describe_schedule(settings) -> str:
    """Return the learning-rate schedule of ``settings`` (a TrainingConfig) in words."""
    if settings.lr_schedule == "cosine":
        text = (f"cosine from {settings.learning_rate:g} to {settings.min_learning_rate:g} "
                f"at iteration {settings.iterations}")
    elif settings.lr_schedule == "step":
        text = (f"{settings.learning_rate:g}, multiplied by {settings.lr_step_factor:g} "
                f"every {settings.lr_step_every} iterations")
    else:
        text = f"{settings.learning_rate:g}, constant"
    if settings.warmup_iterations:
        plural = "s" if settings.warmup_iterations > 1 else ""
        text += f", after a linear warmup of {settings.warmup_iterations} iteration{plural}"
    return text


def _all_finite(tensors) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in tensors)


def _write_text_atomic(path: Path, text: str) -> None:
    with atomic_output(path) as temporary:
        temporary.write_text(text)


def _truncate_metrics(path: Path, last_iteration: int) -> None:
    """Drop metrics lines past ``last_iteration``, logged after the checkpoint that a resume starts from."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["iteration"] <= last_iteration]
    _write_text_atomic(path, "".join(line + "\n" for line in kept))


def prepare_run_directory(run_dir: Path, resume: bool) -> None:
    """Check that ``run_dir`` suits a new run (absent or empty) or a resumed one (has a checkpoint)."""
    if resume:
        if not (run_dir / CHECKPOINT_NAME).is_file():
            raise RunDirectoryError(
                f"cannot resume: {str(run_dir / CHECKPOINT_NAME)!r} not found; start a new run without --resume"
            )
        return
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunDirectoryError(
            f"run directory {str(run_dir)!r} already exists; pass --resume to continue it or choose another --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)


def check_resume_config(saved: TrainConfig, config: TrainConfig) -> None:
    """Raise ConfigError when ``config`` changes what a resumed run must keep: the model, batch size and mode."""
    if saved.model != config.model or saved.training.batch_size != config.training.batch_size:
        raise ConfigError(
            "the model options and batch size cannot change on resume; "
            "drop those options or start a new run with another --out"
        )
    if saved.training.full_unroll != config.training.full_unroll:
        raise ConfigError("full_unroll cannot change on resume; start a new run with another --out")


def build_model(config: TrainConfig) -> SegmentationNCA:
    model = SegmentationNCA(config.model.architecture())
    if config.model.freeze_spatial:
        model.spatial_filter.requires_grad_(False)
    return model


def train(
    config: TrainConfig,
    run_dir: str | os.PathLike,
    *,
    resume: bool = False,
    log=print,
    progress: bool | None = None,
) -> TrainResult:
    """Train a segmentation NCA with the settings of ``config``, writing checkpoints, metrics and a rule file to ``run_dir``.

    Parameters
    ----------
    config
        A validated config (see :func:`nca_train.config.load_config`). On resume it
        must keep the checkpoint's model options and batch size; ``training.iterations``
        is the total count, including the iterations already done.
    run_dir
        Directory of the run; a new run needs it absent or empty.
    resume
        Continue from ``run_dir/checkpoint.pt`` with the saved model, optimizer,
        pools and random generator states.
    log
        Callable that receives progress messages.
    progress
        Show a tqdm progress bar; None shows one only when stderr is a terminal.

    Raises
    ------
    RunDirectoryError
        When ``run_dir`` is not empty on a new run, or has no checkpoint on resume.
    ConfigError
        When a resume changes the model options, batch size or full-unroll mode.
    TrainingDivergedError
        When the loss, a state or a weight is not finite. The message names the
        iteration, and the last checkpoint written before it is kept unchanged.
    """
    run_dir = Path(run_dir)
    prepare_run_directory(run_dir, resume)
    checkpoint_path = run_dir / CHECKPOINT_NAME
    metrics_path = run_dir / METRICS_NAME
    payload = None
    if resume:
        payload = load_checkpoint(checkpoint_path)
        check_resume_config(TrainConfig.from_dict(payload["config"], origin=str(checkpoint_path)), config)
    settings = config.training
    torch.set_num_threads(settings.threads or os.cpu_count() or 1)
    keep_freed_memory()

    # -- random generators, model, optimizer -------------------------------------------
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = build_model(config)
    arch = model.arch
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trainable, lr=settings.learning_rate)
    log(
        f"model: {count_parameters(model)} parameters, {count_parameters(model, trainable_only=True)} trainable "
        f"(d={arch.state_channels}, hidden={arch.hidden_channels}, layers={arch.num_layers}, {arch.perception})"
    )

    # -- data and pools ------------------------------------------------------------------
    dataset = open_training_data(config, arch.upscale)
    sampler = ImageSampler(dataset, augment=config.data.augment)
    log(f"data: {len(dataset)} training images from {config.data.source or 'the synthetic dataset'}")
    side = config.data.size
    batch = settings.batch_size
    T, K = settings.target_steps, settings.unroll_steps
    pool = None
    images = labels = states = None
    if not settings.full_unroll:
        q_image = survival_to_reset_probability(settings.image_survival, K, T)
        q_state = survival_to_reset_probability(settings.state_survival, K, T)
        pool = SamplePool(batch, q_image, q_state)
        log(f"pools: reset probability per mini-unroll {q_image:.3f} (image), {q_state:.3f} (state)")
    log(f"learning rate: {describe_schedule(settings)}")

    # -- resume ----------------------------------------------------------------------------
    start_iteration = 0
    elapsed_before = 0.0
    if payload is not None:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
        if pool is not None and payload["pool"] is not None:
            saved_pool = payload["pool"]
            pool.load_state_dict({
                "state_age": saved_pool["state_age"].numpy(),
                "image_age": saved_pool["image_age"].numpy(),
                "filled": saved_pool["filled"],
            })
            images, labels, states = saved_pool["images"], saved_pool["labels"], saved_pool["states"]
        restore_rng_states(payload["rng"], rng)
        start_iteration = int(payload["iteration"])
        elapsed_before = float(payload["elapsed_seconds"])
        _truncate_metrics(metrics_path, start_iteration)
        log(f"resumed from {checkpoint_path} at iteration {start_iteration}")
    _write_text_atomic(run_dir / CONFIG_NAME, to_toml(config))

    def write_checkpoint(iteration: int, elapsed: float) -> None:
        pool_data = None
        if pool is not None and images is not None:
            pool_data = {
                "images": images, "labels": labels, "states": states,
                "state_age": torch.from_numpy(pool.state_age.copy()),
                "image_age": torch.from_numpy(pool.image_age.copy()),
                "filled": pool.filled,
            }
        save_checkpoint(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "iteration": iteration,
                "elapsed_seconds": elapsed,
                "config": config.to_dict(),
                "architecture": arch.to_dict(),
                "pool": pool_data,
                "rng": capture_rng_states(rng),
            },
            checkpoint_path,
        )

    # -- the loop --------------------------------------------------------------------------
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=settings.iterations, initial=start_iteration, disable=not progress, unit="it")
    start_time = time.monotonic()
    last_loss = None
    stopped_by_time_limit = False
    iteration = start_iteration

    def scheduled_learning_rate(number: int) -> float:
        return learning_rate_at(
            number,
            schedule=settings.lr_schedule,
            learning_rate=settings.learning_rate,
            iterations=settings.iterations,
            min_learning_rate=settings.min_learning_rate,
            warmup_iterations=settings.warmup_iterations,
            step_every=settings.lr_step_every,
            step_factor=settings.lr_step_factor,
        )

    with open(metrics_path, "a") as metrics_file:
        while iteration < settings.iterations:
            learning_rate = scheduled_learning_rate(iteration + 1)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            if pool is None:
                images, labels, states, loss_mask, cases = fresh_batch(model, sampler, batch, side, T, rng)
            else:
                images, labels, states, loss_mask, cases = pool_batch(
                    model, sampler, pool, (images, labels, states), side, K, T, rng
                )

            cell_input = model.encode_image(images)
            loss, final_state, logits, reset_mean = unroll_loss(model, states, cell_input, labels, loss_mask)
            iteration += 1
            loss_value = None if loss is None else float(loss.detach())
            if (loss_value is not None and not math.isfinite(loss_value)) or not _all_finite([final_state]):
                raise TrainingDivergedError(
                    f"training diverged at iteration {iteration}: the loss is {loss_value} or the state is not finite; "
                    f"the checkpoint in {str(run_dir)!r} from before it is kept. "
                    "Lower --lr, set --grad-clip, or resume from that checkpoint"
                )
            if loss is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if settings.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
                optimizer.step()
                if not _all_finite(trainable):
                    raise TrainingDivergedError(
                        f"training diverged at iteration {iteration}: a weight became NaN or infinite; "
                        f"the checkpoint in {str(run_dir)!r} from before it is kept. Lower --lr or set --grad-clip"
                    )
                last_loss = loss_value
            if pool is not None:
                states = final_state.detach()
                pool.advance(K)

            elapsed = elapsed_before + time.monotonic() - start_time
            prediction = logits.detach().argmax(dim=1)
            record = {
                "iteration": iteration,
                "loss": loss_value,
                "learning_rate": learning_rate,
                "iou": batch_iou(prediction, labels, arch.class_names)["per_class"],
                "reset_gate_mean": reset_mean,
                "cases": cases,
                "wall_time": round(elapsed, 3),
            }
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()
            bar.update(1)
            if loss_value is not None:
                bar.set_postfix(loss=f"{loss_value:.4f}")

            out_of_time = settings.time_limit > 0 and time.monotonic() - start_time >= settings.time_limit * 60
            if iteration % settings.checkpoint_every == 0 or iteration == settings.iterations or out_of_time:
                write_checkpoint(iteration, elapsed)
            if out_of_time:
                stopped_by_time_limit = True
                log(f"time limit of {settings.time_limit} minutes reached at iteration {iteration}")
                break
    bar.close()

    if iteration == start_iteration:
        # No iteration ran (already complete): keep the checkpoint as it is.
        elapsed = elapsed_before
        if not checkpoint_path.exists():
            write_checkpoint(iteration, elapsed)
    metadata = {"iteration": iteration, "boundary_width": config.data.boundary_width}
    export_rule(model, run_dir / RULE_NAME, metadata=metadata, force=True)
    log(f"wrote {checkpoint_path}, {metrics_path} and {run_dir / RULE_NAME} after {iteration} iterations")
    return TrainResult(run_dir, iteration, last_loss, stopped_by_time_limit, elapsed)
