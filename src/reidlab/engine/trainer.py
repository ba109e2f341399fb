"""The one training step and the one ``fit`` loop that every training mode uses.

``fit`` trains a :class:`~reidlab.engine.task.ReIDTask` for some epochs in one stage of a
run directory: progress bar, TensorBoard, learning-rate schedule at each epoch's start,
validation every ``eval_period`` epochs and at the end (notebook block, history, best
model as an ignite ``Checkpoint`` on the validation score), then the full training state
(after the validation, so that a crash during it loses neither), resume from that state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, DiskSaver, global_step_from_engine

from reidlab.config import SolverConfig
from reidlab.data.pipeline import TrainData
from reidlab.engine.context import RunContext
from reidlab.engine.handlers import attach_progress, attach_tensorboard, log_metrics
from reidlab.engine.rundir import (
    BEST_PREFIX,
    CHECKPOINT_PREFIX,
    STATUS_FINISHED,
    STATUS_RUNNING,
    WEIGHTS_PREFIX,
    RunDir,
    resolve_checkpoint,
    write_json,
)
from reidlab.engine.task import Batch, OptimizerSlot, ReIDTask
from reidlab.engine.validator import Validation, Validator

log = logging.getLogger("reidlab")


def make_train_step(
    task: ReIDTask,
    slots: Sequence[OptimizerSlot],
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
):
    """The ignite process function of one iteration: forward, loss, backward (native AMP
    when ``amp``), then each optimiser's step with its own gradient scale.

    Returns a function ``(engine, batch) -> dict`` with ``loss``, each term and the task's
    logged scalars (``acc``, learned weights).
    """
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)

    def step(engine: Engine | None, raw: Batch | Sequence[torch.Tensor]) -> dict[str, float]:
        task.train()
        batch = Batch.from_loader(raw).to(device)
        for slot in slots:
            slot.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            out = task(batch)
        scaler.scale(out.loss).backward()
        for slot in slots:
            if slot.grad_scale != 1.0:
                scaler.unscale_(slot.optimizer)
                for group in slot.optimizer.param_groups:
                    for p in group["params"]:
                        if p.grad is not None:
                            p.grad.mul_(slot.grad_scale)
            scaler.step(slot.optimizer)
        scaler.update()
        return {"loss": out.loss.item(), **{k: v.item() for k, v in out.terms.items()},
                **out.logs}

    return step


@dataclass
class FitResult:
    """What a fit leaves: every validation, the last one, the best score and the time."""

    history: list[dict[str, Any]] = field(default_factory=list)
    last: Validation | None = None
    best_score: float | None = None
    seconds: float = 0.0


def _due(epoch: int, solver: SolverConfig) -> bool:
    return epoch % solver.eval_period == 0 or epoch == solver.epochs


def fit(
    ctx: RunContext,
    task: ReIDTask,
    slots: Sequence[OptimizerSlot],
    data: TrainData,
    validator: Validator | None,
    solver: SolverConfig,
    stage: RunDir,
    resume: str | Path | None = None,
) -> FitResult:
    """Train ``task`` for ``solver.epochs`` epochs into ``stage`` (see the module docstring).

    Args:
        ctx: where and how the run runs.
        task: what is trained; already on ``ctx.device``.
        slots: its optimisers (:func:`~reidlab.engine.task.build_optimizers`).
        data: the training loader and its epoch-seeded sampler.
        validator: evaluates the test sets; ``None`` trains without validation.
        solver: epochs, periods (a continual task may bring its own).
        stage: the run directory (or stage of it) that receives history and checkpoints.
        resume: a checkpoint file or run directory whose latest full state to continue.

    Raises:
        FloatingPointError: the loss became NaN or infinite (the last saved state stays).
    """
    device = ctx.device
    scaler = torch.amp.GradScaler(device.type, enabled=ctx.amp)
    trainer = Engine(make_train_step(task, slots, device, scaler, ctx.amp))
    saver = DiskSaver(str(stage.checkpoints), require_empty=False)
    step = global_step_from_engine(trainer)
    rule = validator.rule if validator is not None else "none"
    best = Checkpoint({"model": task.model}, saver, filename_prefix=BEST_PREFIX,
                      score_function=lambda _: result.last.score if result.last else 0.0,
                      score_name="save_best", n_saved=1, global_step_transform=step)
    to_save: dict[str, Any] = {"model": task.model, "objective": task.objective,
                               "scaler": scaler, "trainer": trainer, "best": best}
    to_save.update({f"optimizer_{s.name}": s.optimizer for s in slots})
    last = Checkpoint(to_save, saver, filename_prefix=CHECKPOINT_PREFIX, n_saved=1,
                      global_step_transform=step,
                      filename_pattern="{filename_prefix}_{global_step}.{ext}")
    periodic = Checkpoint({"model": task.model}, saver, filename_prefix=WEIGHTS_PREFIX,
                          n_saved=None, global_step_transform=step)
    result = FitResult()

    @trainer.on(Events.EPOCH_STARTED)
    def _start_epoch(engine: Engine) -> None:
        data.sampler.set_epoch(engine.state.epoch - 1)
        for slot in slots:
            slot.set_epoch(engine.state.epoch)

    attach_progress(trainer, task.log_keys())
    tb = attach_tensorboard(trainer, slots[0].optimizer, stage.path,
                            solver.log_period) if ctx.writes else None

    def validate(engine: Engine) -> None:
        assert validator is not None
        epoch = engine.state.epoch
        v = validator(task.model, epoch)
        result.last = v
        result.history.append({"epoch": epoch, "metrics": v.metrics, "score": v.score})
        log.info("\n%s", v.block())
        if not ctx.writes:
            return
        if tb is not None:
            log_metrics(tb, {**v.metrics, "score": {rule: v.score}}, epoch)
        write_json(stage.metrics, v.record())
        write_json(stage.history, {"epochs": result.history})
        before = best.last_checkpoint
        best(engine)
        if best.last_checkpoint is not None and best.last_checkpoint != before:
            stage.update_status(best={"epoch": epoch, "score": v.score, "rule": rule,
                                      "file": str(best.last_checkpoint)})

    @trainer.on(Events.EPOCH_COMPLETED)
    def _end_epoch(engine: Engine) -> None:
        epoch = engine.state.epoch
        log.info("epoch %d done, lr %.2e, %s", epoch, slots[0].optimizer.param_groups[0]["lr"],
                 ", ".join(f"{k} {v:.4f}" for k, v in engine.state.metrics.items()))
        if validator is not None and _due(epoch, solver):
            validate(engine)
        if ctx.writes:  # after the validation: a crash during it keeps the previous state
            last(engine)
            _prune_older(stage, CHECKPOINT_PREFIX, keep=str(last.last_checkpoint))
            if epoch % solver.checkpoint_period == 0:
                periodic(engine)
            stage.update_status(status=STATUS_RUNNING, epoch=epoch, epochs=solver.epochs)

    diverged: list[int] = []
    trainer.add_event_handler(Events.TERMINATE, lambda e: diverged.append(e.state.iteration))

    if resume:
        source = resolve_checkpoint(resume)
        Checkpoint.load_objects(to_load=to_save,
                                checkpoint=torch.load(source, map_location="cpu",
                                                      weights_only=True))
        # A validation whose epoch's state was never saved (a crash between the two) is
        # redone, not kept twice.
        result.history = [h for h in stage.read_history() if h["epoch"] <= trainer.state.epoch]
        log.info("resumed from %s at epoch %d", source, trainer.state.epoch)

    started = time.time()
    try:
        trainer.run(data.loader, max_epochs=solver.epochs)
    finally:
        if tb is not None:
            tb.close()
    if diverged:
        raise FloatingPointError(
            f"the loss is not finite at iteration {diverged[0]}; training stopped, the last "
            f"saved state is in {stage.checkpoints}")
    if validator is not None and (not result.history
                                  or result.history[-1]["epoch"] != solver.epochs):
        validate(trainer)  # a resumed run that had finished, or one without validation due
    result.seconds = time.time() - started
    scores = [h["score"] for h in result.history]
    result.best_score = max(scores) if scores else None
    if ctx.writes:
        write_json(stage.history, {"epochs": result.history, "seconds": result.seconds})
        stage.update_status(status=STATUS_FINISHED, epoch=trainer.state.epoch)
    return result


def _prune_older(stage: RunDir, prefix: str, keep: str) -> None:
    """Delete full states of other epochs: after a resume, ``Checkpoint`` does not know the
    file of the run it continues."""
    for path in stage.checkpoint_files(prefix):
        if path.name != Path(keep).name:
            path.unlink(missing_ok=True)
