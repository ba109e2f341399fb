"""The one training step and the one ``fit`` loop that every training mode uses.

``fit`` trains a :class:`~reidlab.engine.task.ReIDTask` for some epochs in one stage of a
run directory: progress bar, TensorBoard, learning-rate schedule at each epoch's start,
validation every ``eval_period`` epochs and at the end (notebook block, history, best
model as an ignite ``Checkpoint`` on the validation score), then the full training state
(after the validation, so that a crash during it loses neither), resume from that state.

With several processes (:class:`~reidlab.engine.context.RunContext`'s ``world_size``) the
step runs :func:`~reidlab.engine.distributed.distribute`'s wrapper of the task (global
batch norm as ``model.sync_bn`` says, the loss on the gathered global batch, DDP), every
rank validates its share of the test sets, only rank 0 writes files, and a stop signal
seen by any rank stops every rank after the same iteration.
"""

from __future__ import annotations

import logging
import math
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
from reidlab.engine.checkpoint import CheckpointError, atomic_save, keep_newest, load_newest
from reidlab.engine.collectives import agree_max
from reidlab.engine.compute import amp_settings, prepare_model, to_memory_format
from reidlab.engine.context import RunContext
from reidlab.engine.distributed import distribute
from reidlab.engine.handlers import attach_progress, attach_tensorboard, log_metrics
from reidlab.engine.interrupt import RunInterrupted, StopRequest
from reidlab.engine.rundir import (
    BEST_PREFIX,
    CHECKPOINT_PREFIX,
    STATUS_FINISHED,
    STATUS_RUNNING,
    WEIGHTS_PREFIX,
    RunDir,
    checkpoint_step,
    write_json,
)
from reidlab.engine.state import full_state, load_full_state, samples_per_batch
from reidlab.engine.task import Batch, OptimizerSlot, ReIDTask
from reidlab.engine.validator import Validation, Validator

log = logging.getLogger("reidlab")


def make_train_step(
    task: ReIDTask,
    slots: Sequence[OptimizerSlot],
    device: torch.device,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
):
    """The ignite process function of one iteration: forward, loss, backward (native AMP
    when ``amp``, in ``amp_dtype``: the device's default when None), then each
    optimiser's step with its own gradient scale. ``channels_last`` puts each input batch
    in NHWC order (:mod:`reidlab.engine.compute`).

    Returns a function ``(engine, batch) -> dict`` with ``loss``, each term and the task's
    logged scalars (``acc``, learned weights).
    """
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)

    def step(engine: Engine | None, raw: Batch | Sequence[torch.Tensor]) -> dict[str, float]:
        task.train()
        batch = Batch.from_loader(raw).to(device)
        batch.images = to_memory_format(batch.images, channels_last)
        for slot in slots:
            slot.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
            out = task(batch)
        if not torch.isfinite(out.loss.detach()).all():  # before any weight moves
            raise NonFiniteLoss(engine.state.epoch if engine else 0,
                                engine.state.iteration if engine else 0,
                                {k: float(v.detach().float()) for k, v in out.terms.items()},
                                float(out.loss.detach().float()))
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


class NonFiniteLoss(FloatingPointError):
    """The loss of a step is NaN or infinite; names the iteration and the terms."""

    def __init__(self, epoch: int, iteration: int, terms: dict[str, float], loss: float,
                 where: str = "") -> None:
        self.epoch, self.iteration, self.terms, self.loss = epoch, iteration, terms, loss
        bad = [k for k, v in terms.items() if not math.isfinite(v)]
        culprit = (f"term{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))} "
                   f"{'are' if len(bad) > 1 else 'is'} "
                   f"{', '.join(str(terms[k]) for k in bad)}" if bad
                   else f"the weighted sum is {loss} (every term is finite)")
        values = ", ".join(f"{k} {v:.4g}" for k, v in terms.items())
        super().__init__(
            f"the loss is not finite at epoch {epoch}, iteration {iteration}: {culprit} "
            f"({values}); training stopped before that step changed any weight{where}")


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
    compute = amp_settings(solver, device)
    amp = ctx.amp and compute.enabled
    scaler = torch.amp.GradScaler(device.type, enabled=amp and compute.scaled)
    prepare_model(task.model, solver)
    stepped = task if ctx.world_size == 1 else distribute(task, device, ctx.cfg.model.sync_bn)
    trainer = Engine(make_train_step(stepped, slots, device, scaler, amp, compute.dtype,
                                     solver.channels_last))
    # ignite logs an exception it re-raises; reidlab reports it once, in its own words
    trainer.logger.addHandler(logging.NullHandler())
    trainer.logger.propagate = False
    # ignite's saver makes its folder and files on rank 0 only (save_on_rank)
    saver = DiskSaver(str(stage.checkpoints), require_empty=False)
    step = global_step_from_engine(trainer)
    rule = validator.rule if validator is not None else "none"
    best = Checkpoint({"model": task.model}, saver, filename_prefix=BEST_PREFIX,
                      score_function=lambda _: result.last.score if result.last else 0.0,
                      score_name="save_best", n_saved=1, global_step_transform=step)
    periodic = Checkpoint({"model": task.model}, saver, filename_prefix=WEIGHTS_PREFIX,
                          n_saved=None, global_step_transform=step)
    result = FitResult()
    stop = StopRequest()
    saved: list[Path] = []

    def save_state(engine: Engine) -> None:
        path = stage.checkpoints / f"{CHECKPOINT_PREFIX}_{engine.state.iteration}.pt"
        if not ctx.writes:
            saved.append(path)  # the file rank 0 writes at this step
            return
        atomic_save(full_state(task, slots, scaler, engine, best, data), path)
        saved.append(path)
        keep_newest(stage.checkpoint_files(CHECKPOINT_PREFIX), solver.keep_checkpoints)
        stage.update_status(status=STATUS_RUNNING, epoch=engine.state.epoch,
                            epochs=solver.epochs, iteration=engine.state.iteration,
                            state=str(path))

    def stop_signal() -> int:
        """The signal that stops the run after this iteration (0: none), the same on
        every rank, so that all of them save (rank 0) and stop at the same step."""
        return agree_max(stop.signum or 0) if ctx.world_size > 1 else stop.signum or 0

    def halt(engine: Engine, signum: int) -> None:
        raise RunInterrupted(signum, ctx.run.path, engine.state.epoch,
                             engine.state.iteration, saved[-1] if saved else None)

    @trainer.on(Events.EPOCH_STARTED)
    def _start_epoch(engine: Engine) -> None:
        epoch_length = engine.state.epoch_length or len(data.loader)  # type: ignore[arg-type]
        done = engine.state.iteration - (engine.state.epoch - 1) * epoch_length
        data.sampler.set_epoch(engine.state.epoch - 1, start=done * samples_per_batch(data))
        for slot in slots:
            slot.set_epoch(engine.state.epoch)

    @trainer.on(Events.ITERATION_COMPLETED)
    def _after_iteration(engine: Engine) -> None:
        epoch_end = engine.state.iteration % (engine.state.epoch_length or 1) == 0
        if epoch_end:  # the epoch's state is saved after its validation
            return
        every = solver.checkpoint_every_iters
        signum = stop_signal()
        if signum or (every and engine.state.iteration % every == 0):
            save_state(engine)
        if signum:
            halt(engine, signum)

    attach_progress(trainer, task.log_keys(), bar=ctx.writes)
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
        if ctx.writes and epoch % solver.checkpoint_period == 0:
            periodic(engine)
        save_state(engine)  # after the validation: a crash during it keeps the previous state
        signum = stop_signal()
        if signum:
            halt(engine, signum)

    if resume:
        source = _resume(resume, task, slots, scaler, trainer, best, data)
        # A validation whose epoch's state was never saved (a crash between the two) is
        # redone, not kept twice; so are the weight files written after that state.
        result.history = [h for h in stage.read_history() if h["epoch"] <= trainer.state.epoch]
        if ctx.writes:
            _forget_after(stage, best, trainer.state.epoch)
        log.info("resumed from %s at epoch %d, iteration %d", source, trainer.state.epoch,
                 trainer.state.iteration)

    started = time.time()
    try:
        with stop:
            trainer.run(data.loader, max_epochs=solver.epochs)
    except NonFiniteLoss as err:
        last = f"; the last good state is {saved[-1]}" if saved else (
            "; no state was saved yet")
        raise NonFiniteLoss(err.epoch, err.iteration, err.terms, err.loss, last) from None
    finally:
        if tb is not None:
            tb.close()
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


def _resume(resume: str | Path, task: ReIDTask, slots: Sequence[OptimizerSlot],
            scaler: torch.amp.GradScaler, trainer: Engine, best: Checkpoint,
            data: TrainData) -> Path:
    """Load the newest full state of ``resume`` (a run directory or a state file) that
    loads and fits this run; says which damaged or foreign ones it skipped."""
    source = Path(resume)
    if source.is_file():
        candidates = [source]
    elif source.is_dir():
        rd = RunDir(source)
        candidates = rd.checkpoint_files(CHECKPOINT_PREFIX) or sorted(
            source.glob(f"{CHECKPOINT_PREFIX}_*.pt"))
    else:
        raise FileNotFoundError(f"resume={resume}: no such run directory or state file")

    def apply(state: dict[str, Any]) -> None:
        load_full_state(state, task, slots, scaler, trainer, best, data)

    try:
        path, _ = load_newest(candidates, apply)
    except CheckpointError as err:
        raise CheckpointError(f"resume={resume}: {err}") from None
    return path


def _forget_after(stage: RunDir, best: Checkpoint, epoch: int) -> None:
    """Delete weight files of epochs after the resumed state (they are made again), and
    best-model files the resumed state does not know."""
    known = {item.filename for item in best._saved}  # noqa: SLF001 - ignite keeps no API
    for path in stage.checkpoint_files(BEST_PREFIX):
        if path.name not in known:
            path.unlink(missing_ok=True)
    for path in stage.checkpoint_files(WEIGHTS_PREFIX):
        if checkpoint_step(path) > epoch:
            path.unlink(missing_ok=True)
