"""Supervised training and testing runs, assembled from the shared engine pieces.

Joint training is the same run with several train datasets (pids offset per dataset) and
one evaluation per test dataset.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint, ProgressBar
from torch import nn

from reidlab.config import Config, save_config
from reidlab.data.pipeline import TestSet, build_test_sets, build_train_data, load_named
from reidlab.engine.evaluator import Features, build_evaluator, raw_pixel_metrics
from reidlab.engine.handlers import (
    BEST_PREFIX,
    attach_checkpoints,
    attach_lr_schedule,
    attach_progress,
    attach_tensorboard,
    latest_checkpoint,
    log_metrics,
)
from reidlab.engine.optim import build_optimizer, build_scheduler
from reidlab.engine.trainer import make_train_step
from reidlab.losses.objective import build_objective, uses_arcface
from reidlab.models.build import build_model
from reidlab.models.reid import ReIDModel

log = logging.getLogger("reidlab")


@dataclass
class RunDir:
    """The files of one run."""

    path: Path

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @classmethod
    def create(cls, output_dir: str | None, prefix: str = "") -> RunDir:
        if output_dir is None:
            stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            output_dir = str(Path("runs") / f"{prefix}{stamp}")
        path = Path(output_dir)
        path.mkdir(parents=True, exist_ok=True)
        return cls(path)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, dict[str, float]]
    history: list[dict[str, Any]] = field(default_factory=list)
    features: dict[str, Features] = field(default_factory=dict)
    cmc: dict[str, np.ndarray] = field(default_factory=dict)
    test_sets: list[TestSet] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device=cuda was asked for, but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def setup_logging(run_dir: Path) -> None:
    """Log to ``run_dir/train.log`` (and the console) until the next call."""
    root = logging.getLogger("reidlab")
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        if getattr(handler, "_reidlab_run", False):
            root.removeHandler(handler)
            handler.close()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    file_handler = logging.FileHandler(run_dir / "train.log")
    file_handler.setFormatter(fmt)
    file_handler._reidlab_run = True  # type: ignore[attr-defined]
    root.addHandler(file_handler)
    if not any(getattr(h, "_reidlab_console", False) for h in root.handlers):
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(message)s"))
        console._reidlab_console = True  # type: ignore[attr-defined]
        root.addHandler(console)


def load_model_weights(model: nn.Module, path: str) -> None:
    """Load reidlab model weights from a checkpoint file or a run directory (its best model,
    else its last training checkpoint); read with ``weights_only=True``."""
    source = Path(path)
    if source.is_dir():
        try:
            source = latest_checkpoint(source, BEST_PREFIX)
        except FileNotFoundError:
            source = latest_checkpoint(source)
    if not source.is_file():
        raise FileNotFoundError(f"model.weights: {path} is neither a checkpoint nor a run dir")
    state = torch.load(source, map_location="cpu", weights_only=True)
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    classifier_only = all(k.startswith("classifier.") for k in missing + unexpected)
    if (missing or unexpected) and not classifier_only:
        raise RuntimeError(
            f"{source} does not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    log.info("loaded model weights from %s", source)


def evaluate_sets(
    model: ReIDModel, test_sets: list[TestSet], cfg: Config, device: torch.device, amp: bool,
    keep_features: bool = False,
) -> tuple[dict[str, dict[str, float]], dict[str, Features], dict[str, np.ndarray]]:
    """One evaluation per test set: ``{name: {mAP, rank1, rank5, rank10, mINP, mean}}``,
    the features (when asked) and the CMC curves."""
    metrics, features, cmc = {}, {}, {}
    for ts in test_sets:
        engine, metric = build_evaluator(model, ts.num_query, cfg.test, device, amp)
        ProgressBar(persist=False, desc=f"eval {ts.name}").attach(engine)
        engine.run(ts.loader)
        metrics[ts.name] = engine.state.metrics["reid"]
        cmc[ts.name] = np.asarray(metric.last_result.cmc)
        if keep_features:
            features[ts.name] = metric.features()
    return metrics, features, cmc


def format_table(metrics: dict[str, dict[str, float]]) -> str:
    """A plain text table of the metrics, in percent."""
    cols = ["mAP", "rank1", "rank5", "rank10", "mINP", "mean"]
    width = max([len("dataset")] + [len(n) for n in metrics])
    lines = [f"{'dataset':<{width}}  " + "  ".join(f"{c:>6}" for c in cols)]
    for name, values in metrics.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{100 * values[c]:6.2f}" for c in cols))
    return "\n".join(lines)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically, so a crash never leaves half a file."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    tmp.replace(path)


def train(cfg: Config) -> RunResult:
    """Train a ReID model as ``cfg`` says and evaluate it on every test set."""
    output_dir = cfg.output_dir
    if output_dir is None and cfg.resume and Path(cfg.resume).is_dir():
        output_dir = cfg.resume
    run = RunDir.create(output_dir)
    setup_logging(run.path)
    save_config(cfg, run.path / "config.yaml")
    log.info("run directory: %s", run.path)
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    amp = cfg.solver.amp and device.type == "cuda"

    train_sets = [load_named(cfg.data, name) for name in cfg.data.train]
    test_names = cfg.data.test or cfg.data.train
    test_sets = build_test_sets(cfg, [load_named(cfg.data, n) for n in test_names])
    data = build_train_data(cfg, train_sets)
    log.info("training on %s: %d ids, %d images; %d iterations per epoch",
             "+".join(cfg.data.train), data.num_classes, len(data.records), len(data.loader))

    model = build_model(cfg.model, data.num_classes, arcface=uses_arcface(cfg.loss.name),
                        loss=cfg.loss).to(device)
    if cfg.model.weights:
        load_model_weights(model, cfg.model.weights)
    objective = build_objective(cfg.loss, data.num_classes, model.feat_dim).to(device)
    optimizer = build_optimizer(model.named_parameters(), cfg.solver)
    if objective.weighting is not None:  # learned loss weights: no weight decay
        optimizer.add_param_group({"params": list(objective.weighting.parameters()),
                                   "lr": cfg.solver.lr, "weight_decay": 0.0})
    centers = [p for m in objective.center_modules() for p in m.parameters()]
    center_optimizer = torch.optim.SGD(centers, lr=cfg.loss.center_lr) if centers else None
    scheduler = build_scheduler(optimizer, cfg.solver)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)

    trainer = Engine(make_train_step(model, objective, optimizer, device, center_optimizer,
                                     cfg.loss.center_weight, scaler, amp))
    best = {"mean": float("-inf")}  # best `mean` on the first test set so far
    to_save: dict[str, Any] = {"model": model, "objective": objective, "optimizer": optimizer,
                               "scheduler": scheduler, "scaler": scaler, "trainer": trainer}
    if center_optimizer is not None:
        to_save["center_optimizer"] = center_optimizer

    keys = ["loss", *[t.name for t in objective.terms]]
    if not cfg.loss.name == "triplet":
        keys.append("acc")
    attach_progress(trainer, keys)
    attach_lr_schedule(trainer, scheduler)
    tb = attach_tensorboard(trainer, optimizer, run.path, cfg.solver.log_period)
    save_best = attach_checkpoints(trainer, to_save, model, run.checkpoints,
                                   cfg.solver.checkpoint_period, lambda: best["mean"])

    @trainer.on(Events.EPOCH_STARTED)
    def _seed_epoch(engine: Engine) -> None:
        data.sampler.set_epoch(engine.state.epoch - 1)

    history: list[dict[str, Any]] = []
    if cfg.resume:
        source = latest_checkpoint(Path(cfg.resume))
        state = torch.load(source, map_location="cpu", weights_only=True)
        Checkpoint.load_objects(to_load=to_save, checkpoint=state)
        if run.history.exists():
            history = json.loads(run.history.read_text())["epochs"]
        best["mean"] = max(
            [h["metrics"][test_sets[0].name]["mean"] for h in history], default=float("-inf")
        )
        log.info("resumed from %s at epoch %d", source, trainer.state.epoch)

    started = time.time()

    def run_eval(engine: Engine) -> None:
        metrics, _, _ = evaluate_sets(model, test_sets, cfg, device, amp)
        epoch = engine.state.epoch
        log_metrics(tb, metrics, epoch)
        history.append({"epoch": epoch, "metrics": metrics})
        score = metrics[test_sets[0].name]["mean"]
        log.info("epoch %d\n%s", epoch, format_table(metrics))
        if score > best["mean"]:
            best["mean"] = score
            save_best(engine)
        write_json(run.metrics, metrics)
        write_json(run.history, {"epochs": history})

    def maybe_eval(engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch % cfg.solver.eval_period == 0 or epoch == cfg.solver.epochs:
            run_eval(engine)

    trainer.add_event_handler(Events.EPOCH_COMPLETED, maybe_eval)
    trainer.add_event_handler(
        Events.EPOCH_COMPLETED,
        lambda e: log.info("epoch %d done, lr %.2e, %s", e.state.epoch,
                           optimizer.param_groups[0]["lr"],
                           ", ".join(f"{k} {v:.4f}" for k, v in e.state.metrics.items())),
    )
    try:
        trainer.run(data.loader, max_epochs=cfg.solver.epochs)
    finally:
        tb.close()
    if not history or history[-1]["epoch"] != cfg.solver.epochs:
        run_eval(trainer)
    final = dict(history[-1]["metrics"])
    if cfg.test.raw_pixel_baseline:
        for ts in test_sets:
            final[f"{ts.name} (raw pixels)"] = raw_pixel_metrics(ts.query, ts.gallery, cfg.test)
        write_json(run.metrics, final)
    elapsed = time.time() - started
    write_json(run.history, {"epochs": history, "seconds": elapsed})
    return RunResult(run.path, final, history)


def test(cfg: Config, keep_features: bool = False) -> RunResult:
    """Evaluate ``cfg.model.weights`` on every test set (``data.test``, else ``data.train``)."""
    if not cfg.model.weights:
        raise ValueError("reidlab test needs model.weights=RUN_DIR or a checkpoint file")
    run = RunDir.create(cfg.output_dir, prefix="test-")
    setup_logging(run.path)
    save_config(cfg, run.path / "config.yaml")
    device = resolve_device(cfg.device)
    amp = cfg.solver.amp and device.type == "cuda"
    test_sets = build_test_sets(cfg, [load_named(cfg.data, n)
                                      for n in (cfg.data.test or cfg.data.train)])
    model = build_model(cfg.model, 0, arcface=False, loss=cfg.loss).to(device)
    load_model_weights(model, cfg.model.weights)
    metrics, features, cmc = evaluate_sets(model, test_sets, cfg, device, amp, keep_features)
    write_json(run.metrics, metrics)
    return RunResult(run.path, metrics, features=features, cmc=cmc, test_sets=test_sets)
