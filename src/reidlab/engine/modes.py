"""Training modes, keyed by the config's ``mode``, and evaluation of a trained model.

A mode is a plain function ``fn(ctx: RunContext) -> RunResult`` registered in
:data:`reidlab.registry.MODES`; it assembles the shared pieces (task, optimisers, data,
validator, :func:`~reidlab.engine.trainer.fit`) in its own arrangement. ``supervised``
(which covers joint training) lives in :mod:`reidlab.engine.supervised`; continual
learning and domain adaptation register theirs the same way.

Under ``torchrun`` :func:`run` and :func:`test` join the process group first; rank 0 alone
takes the pre-flight checks (which probe the output folder and may generate the synthetic
data and the image-check caches) and sends the run folder to the others. Every mode then
runs distributed through the shared pieces: the train loader's share of each global batch
(:func:`~reidlab.data.pipeline.build_train_data`), the DDP step in ``fit``, the sharded
evaluation of the :class:`~reidlab.engine.validator.Validator`, and the files written by
rank 0 only (:class:`~reidlab.engine.context.RunContext`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reidlab.config import Config
from reidlab.data.check import skipped_record
from reidlab.data.dali import check_backend
from reidlab.data.pipeline import TestSet, build_test_sets, load_named
from reidlab.engine.collectives import init_from_env, on_rank_zero, world
from reidlab.engine.context import RunContext, resolve_device, setup_logging
from reidlab.engine.evaluator import Features
from reidlab.engine.interrupt import RunInterrupted
from reidlab.engine.preflight import plan_test, plan_train
from reidlab.engine.rundir import (
    STATUS_FAILED,
    STATUS_FINISHED,
    STATUS_STOPPED,
    process_fields,
    write_json,
)
from reidlab.engine.task import load_model_weights
from reidlab.engine.validator import Validator
from reidlab.models.build import build_model
from reidlab.registry import MODES


@dataclass
class RunResult:
    """What a run gives back: its directory, the final metrics per test set (with
    ``save_best``), every validation, and for ``test`` the features, CMC curves and sets."""

    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, Features] = field(default_factory=dict)
    cmc: dict[str, np.ndarray] = field(default_factory=dict)
    test_sets: list[TestSet] = field(default_factory=list)


def format_table(metrics: dict[str, Any]) -> str:
    """A plain text table of the per-dataset metrics, in percent (``save_best`` below)."""
    cols = ["mAP", "rank1", "rank5", "rank10", "mINP", "mean"]
    rows = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    width = max([len("dataset")] + [len(n) for n in rows])
    lines = [f"{'dataset':<{width}}  " + "  ".join(f"{c:>6}" for c in cols)]
    for name, values in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{100 * values[c]:6.2f}" for c in cols))
    if "save_best" in metrics and sum(not n.endswith(" (raw pixels)") for n in rows) > 1:
        lines.append(f"save best (score): {metrics['save_best']:.4f}")
    return "\n".join(lines)


def test_sets_of(cfg: Config) -> list[TestSet]:
    """The test sets of ``data.test`` (else of ``data.train``), each evaluated on its own."""
    return build_test_sets(cfg, [load_named(cfg.data, n)
                                 for n in (cfg.data.test or cfg.data.train)])


def _dataset_names(cfg: Config, train: bool) -> list[str]:
    """Every dataset that a run of ``cfg`` (a training run of its mode, or a test) reads."""
    d = cfg.data
    if not train:
        return list(d.test or d.train)
    if cfg.mode == "continual" and cfg.continual is not None:
        names = [*cfg.continual.tasks, *d.test]
    elif cfg.mode == "adapt" and cfg.adapt is not None:
        names = [*([] if cfg.model.weights else d.train), *d.test, cfg.adapt.target]
    else:
        names = [*d.train, *d.test]
    return list(dict.fromkeys(names))


def _planned(cfg: Config, plan: Callable[[Config], Path], train: bool = True) -> Path:
    """``plan(cfg)`` (every check that needs no run folder, before it is touched) on rank 0
    only, which then, in a process group, also parses every dataset once (generating the
    synthetic ones and the image-check caches) before the others read them. Every rank
    gets the folder."""

    def first() -> Path:
        if train:
            check_backend(cfg.data, resolve_device(cfg.device))
        path = plan(cfg)
        if world()[1] > 1:
            for name in _dataset_names(cfg, train):
                load_named(cfg.data, name)
        return path

    return on_rank_zero(first)


def run(cfg: Config) -> RunResult:
    """Run ``cfg`` by its mode; ``run.json`` says whether it finished, failed or stopped.
    Under ``torchrun``, one process of a distributed run (module docstring)."""
    from reidlab.adapt import ssg  # noqa: F401 (registers the adapt mode)
    from reidlab.continual import mode as _continual  # noqa: F401 (registers it)
    from reidlab.engine import supervised  # noqa: F401 (registers the mode)

    mode = MODES.get(cfg.mode)
    init_from_env(resolve_device(cfg.device).type)
    ctx = RunContext.create(cfg, path=_planned(cfg, plan_train))
    ctx.run.update_status(mode=cfg.mode, status="running", started=time.time(),
                          error=None, **process_fields())
    try:
        result = mode(ctx)
    except (KeyboardInterrupt, RunInterrupted) as err:
        ctx.run.update_status(status=STATUS_STOPPED, error=str(err) or "KeyboardInterrupt")
        raise
    except BaseException as err:
        ctx.run.update_status(status=STATUS_FAILED, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        setup_logging(None)  # a later run in this process must not log into this one
    ctx.run.update_status(status=STATUS_FINISHED)
    return result


def test(cfg: Config, keep_features: bool = False) -> RunResult:
    """Evaluate ``cfg.model.weights`` on every test set (``data.test``, else ``data.train``)."""
    init_from_env(resolve_device(cfg.device).type)
    path = _planned(cfg, plan_test, train=False)
    test_sets = test_sets_of(cfg)  # datasets and weights checked before the folder is made
    model = build_model(cfg.model, 0, arcface=False, loss=cfg.loss)
    assert cfg.model.weights is not None  # plan_test refuses a test without weights
    source = load_model_weights(model, cfg.model.weights)
    ctx = RunContext.create(cfg, path=path)
    ctx.run.update_status(mode="test", status="running", started=time.time(),
                          **process_fields())
    model.to(ctx.device)
    validation = Validator(test_sets, cfg.test, ctx.device, ctx.amp)(
        model, keep_features=keep_features)
    record = validation.record()
    if cfg.data.skip_bad_images:
        record.update(skipped_record([s for ts in test_sets for s in ts.skipped]))
    if ctx.writes:
        write_json(ctx.run.metrics, record)
    ctx.run.update_status(status=STATUS_FINISHED, weights=str(source))
    setup_logging(None)
    return RunResult(ctx.run.path, record, features=validation.features,
                     cmc=validation.cmc, test_sets=test_sets)
