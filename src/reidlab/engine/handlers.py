"""Handlers every training mode attaches to its trainer: progress, TensorBoard, checkpoints,
learning-rate schedule and NaN guard."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import (
    Checkpoint,
    DiskSaver,
    ProgressBar,
    TensorboardLogger,
    TerminateOnNan,
    global_step_from_engine,
)
from ignite.handlers.tensorboard_logger import OptimizerParamsHandler, OutputHandler
from ignite.metrics import RunningAverage

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint"  # full training state, for resume
BEST_PREFIX = "best"  # model weights with the best `mean` on the first test set


def attach_progress(trainer: Engine, keys: list[str]) -> None:
    """Progress bar with running averages of the step outputs named in ``keys``."""
    for key in keys:
        RunningAverage(output_transform=lambda out, k=key: out[k]).attach(trainer, key)
    ProgressBar(persist=False).attach(trainer, metric_names=keys)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan(lambda out: out["loss"]))


def attach_lr_schedule(trainer: Engine, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
    """Step an epoch-wise scheduler after every epoch (its state travels in the checkpoint)."""
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: scheduler.step())


def attach_tensorboard(
    trainer: Engine,
    optimizer: torch.optim.Optimizer,
    log_dir: Path,
    log_period: int,
) -> TensorboardLogger:
    """Every step output (each loss term, accuracy) and the learning rate, every
    ``log_period`` iterations. Evaluation metrics are logged by :func:`log_metrics`."""
    tb = TensorboardLogger(log_dir=str(log_dir))
    tb.attach(
        trainer,
        OutputHandler(tag="train", output_transform=lambda out: out),
        Events.ITERATION_COMPLETED(every=log_period),
    )
    tb.attach(
        trainer,
        OptimizerParamsHandler(optimizer, param_name="lr", tag="train"),
        Events.ITERATION_COMPLETED(every=log_period),
    )
    return tb


def log_metrics(tb: TensorboardLogger, metrics: dict[str, dict[str, float]], epoch: int) -> None:
    for dataset, values in metrics.items():
        for name, value in values.items():
            tb.writer.add_scalar(f"eval/{dataset}/{name}", value, epoch)


def attach_checkpoints(
    trainer: Engine,
    to_save: dict,
    model: torch.nn.Module,
    dirname: Path,
    period: int,
    best_score: Callable[[], float],
) -> Checkpoint:
    """Save the full training state after every epoch (the last one kept, for resume) and the
    model weights every ``period`` epochs (all kept). Returns the handler that saves the best
    model by ``best_score()``; the caller fires it after each evaluation that improves it."""
    saver = DiskSaver(str(dirname), require_empty=False)
    step = global_step_from_engine(trainer)
    last = Checkpoint(to_save, saver, filename_prefix=CHECKPOINT_PREFIX, n_saved=1,
                      global_step_transform=step)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, last)
    periodic = Checkpoint({"model": model}, saver, filename_prefix="weights", n_saved=None,
                          global_step_transform=step)
    trainer.add_event_handler(Events.EPOCH_COMPLETED(every=period), periodic)
    return Checkpoint(
        {"model": model},
        saver,
        filename_prefix=BEST_PREFIX,
        score_function=lambda _: best_score(),
        score_name="mean",
        n_saved=1,
        global_step_transform=step,
    )


def latest_checkpoint(path: Path, prefix: str = CHECKPOINT_PREFIX) -> Path:
    """The newest ``prefix_*.pt`` in a run directory (or its ``checkpoints/``), or ``path``
    itself when it is a file."""
    if path.is_file():
        return path
    for folder in (path / "checkpoints", path):
        found = sorted(folder.glob(f"{prefix}_*.pt"), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1]
    raise FileNotFoundError(f"no {prefix}_*.pt checkpoint in {path} or {path / 'checkpoints'}")
