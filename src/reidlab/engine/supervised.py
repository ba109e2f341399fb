"""The supervised mode: one model on the union of ``data.train`` (joint training when there
are several: pids and cameras offset per dataset, PK sampling over the union), each
dataset of ``data.test`` validated on its own, the best model by ``test.best_by``."""

from __future__ import annotations

import logging

from reidlab.data.check import skipped_record
from reidlab.data.pipeline import build_train_data, load_named
from reidlab.engine.context import RunContext
from reidlab.engine.evaluator import raw_pixel_metrics
from reidlab.engine.modes import RunResult, test_sets_of
from reidlab.engine.rundir import write_json
from reidlab.engine.task import build_optimizers, build_task
from reidlab.engine.trainer import fit
from reidlab.engine.validator import Validator
from reidlab.registry import MODES

log = logging.getLogger("reidlab")


@MODES.register("supervised")
def supervised(ctx: RunContext) -> RunResult:
    """Train as ``ctx.cfg`` says, validating on every test set; ``resume`` continues."""
    cfg = ctx.cfg
    train_sets = [load_named(cfg.data, n) for n in cfg.data.train]
    data = build_train_data(cfg, train_sets)
    test_sets = test_sets_of(cfg)
    log.info("training on %s: %d ids, %d images; %d iterations per epoch",
             "+".join(cfg.data.train), data.num_classes, len(data.records), len(data.loader))
    task = build_task(cfg, data.num_classes).to(ctx.device)
    slots = build_optimizers(cfg, task)
    validator = Validator(test_sets, cfg.test, ctx.device, ctx.amp)
    result = fit(ctx, task, slots, data, validator, cfg.solver, ctx.run, resume=cfg.resume)
    assert result.last is not None
    final = result.last.record()
    if cfg.data.skip_bad_images:
        skipped = [s for d in train_sets for s in d.skipped]
        final.update(skipped_record(skipped + [s for ts in test_sets for s in ts.skipped]))
    if cfg.test.raw_pixel_baseline:
        for ts in test_sets:
            final[f"{ts.name} (raw pixels)"] = raw_pixel_metrics(ts.query, ts.gallery, cfg.test)
    if cfg.test.raw_pixel_baseline or cfg.data.skip_bad_images:
        if ctx.writes:
            write_json(ctx.run.metrics, final)
    return RunResult(ctx.run.path, final, result.history)
