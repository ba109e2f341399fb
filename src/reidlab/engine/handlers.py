"""Handlers every training mode attaches to its trainer: progress bar with running averages,
NaN guard, TensorBoard. Checkpoints and the schedule are attached by
:func:`reidlab.engine.trainer.fit`."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import (
    ProgressBar,
    TensorboardLogger,
    TerminateOnNan,
)
from ignite.handlers.tensorboard_logger import OptimizerParamsHandler, OutputHandler
from ignite.metrics import RunningAverage

log = logging.getLogger(__name__)

def attach_progress(trainer: Engine, keys: list[str], bar: bool = True) -> None:
    """Running averages of the step outputs named in ``keys``, shown in a progress bar
    when ``bar`` (rank 0 of a distributed run only)."""
    for key in keys:
        RunningAverage(output_transform=lambda out, k=key: out[k]).attach(trainer, key)
    if bar:
        ProgressBar(persist=False).attach(trainer, metric_names=keys)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, TerminateOnNan(lambda out: out["loss"]))


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
