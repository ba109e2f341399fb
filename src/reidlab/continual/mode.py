"""The continual mode: ``continual.tasks`` trained in order by the shared engine.

Each task is a stage of the run directory (``task1/``, ``task2/``, ...; ``joint/`` for the
joint baseline) trained by :func:`~reidlab.engine.trainer.fit` with its own checkpoints,
validated on the datasets seen so far (the best model by ``test.best_by`` over them, as the
notebook's code chose it over Market-1501 and DukeMTMC-reID). After each task the final
model is evaluated on every task's test set (and any extra ``data.test`` set), giving one
row of the accuracy matrix (:mod:`reidlab.continual.matrix`). From task 2 on the previous
task's final model starts the student (classifier replaced or grown) and, for ``lwf``, a
frozen copy of it is the teacher of the distillation terms (:mod:`reidlab.losses.distill`).
With ``resume=RUN`` finished tasks are read back and a stopped task continues from its
stage's last full state.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch

from reidlab.config import Config, ContinualConfig, SolverConfig
from reidlab.continual.classifier import make_teacher, start_student
from reidlab.continual.record import build_record, format_record, log_tensorboard, write_record
from reidlab.data.pipeline import TestSet, build_test_sets, build_train_data, load_named
from reidlab.data.records import ImageRecord, ReIDDataset
from reidlab.engine.context import RunContext, seed_everything
from reidlab.engine.modes import RunResult
from reidlab.engine.rundir import read_json, write_json
from reidlab.engine.task import ReIDTask, build_optimizers, build_task
from reidlab.engine.trainer import fit
from reidlab.engine.validator import Validator, score
from reidlab.losses.distill import distill_terms
from reidlab.models.reid import ReIDModel
from reidlab.registry import MODES

log = logging.getLogger("reidlab")

ROW_JSON = "continual_row.json"  # a stage's row of the matrix, written when it is done


def task_solver(cfg: Config, index: int) -> SolverConfig:
    """The solver of task ``index`` (0-based): the top-level one for the first task,
    with ``continual.task_solver`` applied for the later ones."""
    assert cfg.continual is not None
    if index == 0 or not cfg.continual.task_solver:
        return cfg.solver
    return SolverConfig.model_validate({**cfg.solver.model_dump(), **cfg.continual.task_solver})


def stages_of(c: ContinualConfig) -> list[tuple[str, list[str]]]:
    """``(stage name, datasets trained)`` in order; joint is one stage on every task."""
    if c.method == "joint":
        return [("joint", list(c.tasks))]
    return [(f"task{i + 1}", [name]) for i, name in enumerate(c.tasks)]


def shift_pids(dataset: ReIDDataset, offset: int) -> ReIDDataset:
    """``dataset`` with its train pids moved by ``offset``: a grown classifier's new rows
    come after the old ones."""
    train = [ImageRecord(r.path, r.pid + offset, r.camid, r.domain) for r in dataset.train]
    return dataclasses.replace(dataset, train=train)


def _evaluate(model: ReIDModel, sets: list[TestSet], ctx: RunContext) -> dict:
    if not sets:
        return {}
    return Validator(sets, ctx.cfg.test, ctx.device, ctx.amp)(model).metrics


@MODES.register("continual")
def continual(ctx: RunContext) -> RunResult:
    """Train the task sequence of ``ctx.cfg.continual`` (module docstring)."""
    cfg = ctx.cfg
    c = cfg.continual
    assert c is not None
    names = list(dict.fromkeys([*c.tasks, *cfg.data.test]))
    datasets = {n: load_named(cfg.data, n) for n in names}
    test_sets = build_test_sets(cfg, [datasets[n] for n in names])
    by_name = dict(zip(names, test_sets, strict=True))
    columns = [ts.name for ts in test_sets]
    stages = stages_of(c)
    rows: list[dict[str, dict[str, float]]] = []
    seconds: list[float] = []
    previous: ReIDModel | None = None
    offset = 0
    for index, (stage_name, trained) in enumerate(stages):
        stage = ctx.run.stage(stage_name)
        solver = task_solver(cfg, index)
        weights = cfg.model.weights if index == 0 else None
        cfg_t = cfg.model_copy(update={
            "solver": solver, "model": cfg.model.model_copy(update={"weights": weights})})
        grow = c.classifier == "grow" and previous is not None
        train_sets = [shift_pids(datasets[n], offset) if grow else datasets[n] for n in trained]
        data = build_train_data(cfg_t, train_sets)
        num_classes = offset + data.num_classes if grow else data.num_classes
        seed_everything(cfg.seed + index)  # a task's start does not depend on what ran before
        task = build_task(cfg_t, num_classes)
        if previous is not None:
            start_student(task.model, previous, c.classifier)
            teacher = None
            if c.method == "lwf":
                teacher = make_teacher(previous, c.classifier)
                for term in distill_terms(cfg.loss.ce_dist, cfg.loss.tr_dist,
                                          cfg.loss.logit_dist, cfg.loss.distill_temperature,
                                          cfg.loss.triplet_margin, cfg.loss.ce_dist_form):
                    task.objective.add_term(term)
            task = ReIDTask(task.model, task.objective, teacher)
        task.to(ctx.device)
        seen_names = c.tasks if c.method == "joint" else c.tasks[: index + 1]
        seen = [by_name[n] for n in seen_names]
        unseen = [ts for ts in test_sets if all(ts is not s for s in seen)]
        log.info("continual %s (%s, %s): training on %s, %d ids (classifier %d), %d "
                 "iterations per epoch", stage_name, c.method, c.classifier, "+".join(trained),
                 data.num_classes, num_classes, len(data.loader))
        done = stage.is_finished() and (stage.path / ROW_JSON).is_file() \
            and stage.final_model.is_file()
        started = time.time()
        if done:
            state = torch.load(stage.final_model, map_location="cpu", weights_only=True)
            task.model.load_state_dict(state["model"])
            saved = read_json(stage.path / ROW_JSON)
            row, took = saved["metrics"], saved["seconds"]
            log.info("continual %s: finished before, read from %s", stage_name, stage.path)
        else:
            if index == 0 and not c.train_first:
                row = _evaluate(task.model, test_sets, ctx)  # the given task-1 model
                stage.update_status(status="finished", epoch=0, weights=cfg.model.weights)
                if ctx.writes:
                    write_json(stage.metrics, {**row, "save_best": score(row)})
            else:
                resume = stage.path if cfg.resume and stage.has_state() else None
                slots = build_optimizers(cfg_t, task)
                validator = Validator(seen, cfg.test, ctx.device, ctx.amp)
                result = fit(ctx, task, slots, data, validator, solver, stage, resume=resume)
                last = result.last.metrics if result.last is not None else _evaluate(
                    task.model, seen, ctx)
                row = {**last, **_evaluate(task.model, unseen, ctx)}
            took = time.time() - started
            if ctx.writes:
                write_json(stage.path / ROW_JSON, {"metrics": row, "seconds": took})
                stage.finish_stage(task.model.state_dict())  # the next task starts from it
        rows.append({n: row[n] for n in columns})
        seconds.append(took)
        labels = ["+".join(t) if c.method == "joint" else t[0] for _, t in stages]
        seen_counts = [len(c.tasks)] if c.method == "joint" else None
        record = build_record(c.method, c.classifier, labels, columns, rows, seconds,
                              seen_counts)
        if ctx.writes:
            write_record(ctx.run.path, record)
            if not done:  # a resumed run logged the finished tasks before
                log_tensorboard(ctx.run.path, record)
        log.info("continual after %s:\n%s", stage_name, format_record(record))
        previous = task.model
        offset = num_classes if c.classifier == "grow" else 0
    final = {**rows[-1], "save_best": score(rows[-1])}
    if ctx.writes:
        write_json(ctx.run.metrics, final)
    return RunResult(ctx.run.path, final, [{"task": s, "metrics": r, "score": score(r)}
                                            for (s, _), r in zip(stages, rows, strict=True)])

