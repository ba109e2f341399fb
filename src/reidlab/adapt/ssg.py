"""The ``adapt`` mode: unsupervised domain adaptation by self-similarity grouping.

Fu, Wei, Wang, Zhou, Shi and Huang, "Self-similarity Grouping: A Simple Unsupervised Cross
Domain Adaptation Approach for Person Re-identification", ICCV 2019. Step 0 trains on the
labelled source (stage ``source/``, the supervised recipe) or loads ``model.weights``; its
model on the target test split is the direct-transfer row. Each round (stage ``roundN/``):

1. features of the target train images, per part (:mod:`reidlab.adapt.parts`);
2. per part, the k-reciprocal Jaccard distance (:func:`reidlab.evaluation.jaccard_distance`,
   sparse) and DBSCAN (``min_samples`` 4; ``eps`` the mean of the smallest 1.6e-3 of the
   pairwise distances, fixed at the first round), or DEC (``adapt.cluster: dec``);
3. images the global clustering leaves out are dropped; clusters renumbered;
4. training from the previous round's weights with the shared ``fit``: ``adapt.loss`` on the
   global feature with the global labels, a triplet term on each part with its own labels
   (an image a part's clustering left out skips that term only).

PK batches are drawn on the global (whole-body) pseudo identities, as SSG does: its
mini-batches are P whole-body clusters x K images, and the part triplet terms mine
positives and negatives inside that batch by their own labels.

The notebook's variant (ArronHZG/reid-baseline ``engine/uda.py``, commit ca6f472) is
``adapt.parts: [global]``, ``adapt.lambda_value: 0.3`` (its re-ranked distance, k1 20, k2
6), ``adapt.loss: softmax_triplet_center`` with a new classifier per round. Two differences
remain: its code re-ranked the feature set against itself (each image twice in the
neighbour lists) and extracted with the train transforms; here each image is once in the
set and read with the test transform.

The target's true identities are read only to score each clustering (purity, NMI) and the
target test split; a stage's ``best_*.pt`` is chosen on those test labels, so it is a
report, never what the next round starts from (that is the last epoch's model, which a
finished stage keeps as ``checkpoints/final_model.pt`` in place of its full training
states, as continual tasks do). ``rounds.json`` (written after the direct transfer and
after each round) and TensorBoard scalars (``adapt/*``) hold each round. With
``resume=RUN`` finished stages are read back and a stopped one continues from its last
full state; a round stopped while training clusters the same features again (the previous
stage's final model, ``eps`` as saved) and so trains on the same pseudo labels.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from reidlab.adapt.cluster import (
    PseudoLabels,
    dbscan_eps,
    dbscan_labels,
    nmi,
    purity,
    renumber,
    target_distance,
)
from reidlab.adapt.parts import PartTask, extract_part_features
from reidlab.config import AdaptConfig, Config, SolverConfig
from reidlab.data.loader import ImageDataset
from reidlab.data.pipeline import build_test_sets, build_train_data, load_named
from reidlab.data.records import ImageRecord, ReIDDataset
from reidlab.data.transforms import build_transforms
from reidlab.engine.context import RunContext
from reidlab.engine.modes import RunResult
from reidlab.engine.rundir import RunDir, read_json, write_json
from reidlab.engine.task import ReIDTask, build_optimizers, build_task, load_model_weights
from reidlab.engine.trainer import fit
from reidlab.engine.validator import Validator, dataset_key
from reidlab.losses.objective import build_objective, loss_tokens, uses_arcface
from reidlab.losses.triplet import TripletLoss
from reidlab.models.build import build_model
from reidlab.models.reid import ReIDModel
from reidlab.registry import MODES

log = logging.getLogger("reidlab")
ROUNDS_FILE = "rounds.json"


def cluster_parts(feats: dict[str, torch.Tensor], a: AdaptConfig, eps: dict[str, float],
                  seed: int = 0) -> dict[str, PseudoLabels]:
    """Pseudo labels of each part's (N, D) features; ``eps`` (per part) is filled at the
    first call and reused after, as SSG keeps it."""
    out = {}
    for part, f in feats.items():
        if a.cluster == "dec":
            from reidlab.adapt.dec import dec_pseudo_labels

            assert a.num_clusters is not None
            raw = dec_pseudo_labels(f, a.num_clusters, seed)
        else:
            dist = target_distance(f, a.k1, a.k2, a.lambda_value)
            far = 1.0 - a.lambda_value  # the least distance of a pair not stored
            if part not in eps:
                eps[part] = dbscan_eps(dist, a.rho, absent=far)
            raw = dbscan_labels(dist, eps[part], a.min_samples, far=far)
        out[part] = renumber(raw)
    return out


def cluster_stats(labels: dict[str, PseudoLabels], true: np.ndarray) -> dict[str, Any]:
    """Per part: clusters, kept fraction, and purity / NMI of the kept images against the
    true identities (evaluation only)."""
    stats: dict[str, Any] = {}
    for part, pl in labels.items():
        kept = pl.keep
        stats[part] = {"clusters": pl.num_clusters, "kept": pl.kept_fraction,
                       "purity": purity(pl.labels[kept], true[kept]) if kept.any() else 0.0,
                       "nmi": nmi(pl.labels[kept], true[kept]) if kept.any() else 0.0}
    return stats


def round_config(cfg: Config) -> Config:
    """The config a round trains with (a copy): ``adapt.loss`` and the round solver; no
    ImageNet or checkpoint loading, since the previous round's weights are carried over."""
    assert cfg.adapt is not None
    solver = SolverConfig.model_validate({**cfg.solver.model_dump(), **cfg.adapt.round_solver})
    return cfg.model_copy(update={
        "loss": cfg.loss.model_copy(update={"name": cfg.adapt.loss}),
        "solver": solver,
        "model": cfg.model.model_copy(update={"weights": None, "pretrained": None}),
    })


def round_task(cfg: Config, previous: ReIDModel, num_clusters: int,
               part_labels: dict[str, torch.Tensor]) -> ReIDTask:
    """A task for ``num_clusters`` pseudo identities, with ``previous``'s weights (a new
    classifier when the loss has an ID term)."""
    loss = cfg.loss
    classes = num_clusters if "softmax" in loss_tokens(loss.name) else 0
    model = build_model(cfg.model, classes, arcface=uses_arcface(loss.name), loss=loss)
    state = {k: v for k, v in previous.state_dict().items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise RuntimeError(f"round model does not fit the previous one: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}")
    objective = build_objective(loss, max(num_clusters, 1), model.feat_dim)
    if not part_labels:
        return ReIDTask(model, objective)
    triplet = TripletLoss(margin=loss.triplet_margin, soft_margin=loss.soft_margin,
                          variant=loss.triplet_variant,  # type: ignore[arg-type]
                          normalize_feature=loss.triplet_normalize)
    assert cfg.adapt is not None
    return PartTask(model, objective, part_labels, triplet, cfg.adapt.part_weight)


def _stage_model(cfg: Config, stage: RunDir, writes: bool) -> ReIDModel:
    """The last model of the finished ``stage``: its final model, or its newest full state
    (a stage that ended before writing one), which is then kept as its final model."""
    model = build_model(cfg.model.model_copy(update={"pretrained": None}), 0, loss=cfg.loss)
    final = stage.final_model
    load_model_weights(model, final if final.is_file() else stage.latest_checkpoint())
    if writes and stage.has_state():
        stage.finish_stage(model.state_dict())
    return model


def source_model(ctx: RunContext, validator: Validator) -> tuple[ReIDModel, dict | None]:
    """Step 0: ``model.weights``, or the supervised fit on ``data.train`` (stage
    ``source/``; skipped when that stage finished). Returns the model and, when it was just
    trained, its last validation record."""
    cfg = ctx.cfg
    if cfg.model.weights:
        model = build_model(cfg.model.model_copy(update={"pretrained": None}), 0, loss=cfg.loss)
        load_model_weights(model, cfg.model.weights)
        return model.to(ctx.device), None
    stage = ctx.run.stage("source")
    if stage.is_finished():
        log.info("source model: the finished stage %s", stage.path)
        return _stage_model(cfg, stage, ctx.writes).to(ctx.device), None
    data = build_train_data(cfg, [load_named(cfg.data, n) for n in cfg.data.train])
    log.info("step 0, source training on %s: %d ids, %d images",
             "+".join(cfg.data.train), data.num_classes, len(data.records))
    task = build_task(cfg, data.num_classes).to(ctx.device)
    result = fit(ctx, task, build_optimizers(cfg, task), data, validator, cfg.solver, stage,
                 resume=stage.path if stage.has_state() else None)
    if ctx.writes:
        stage.finish_stage(task.model.state_dict())  # the rounds start from it
    return task.model, result.last.record() if result.last else None


def _target_row(record: dict, key: str) -> dict[str, float]:
    m = record[key]
    return {"mAP": m["mAP"], "rank1": m["rank1"], "rank5": m["rank5"]}


def _too_few_clusters(r: int, num_clusters: int, cfg: Config) -> str | None:
    """Why round ``r`` cannot train (fewer clusters than the ids of a PK batch), or None."""
    p_per_batch = cfg.data.batch_size // cfg.data.num_instances
    if num_clusters >= p_per_batch:
        return None
    return (f"round {r}: the global clustering found {num_clusters} clusters, fewer than "
            f"the {p_per_batch} identities a batch of {cfg.data.batch_size} / "
            f"{cfg.data.num_instances} needs; the adaptation stops with the previous model "
            "(a larger adapt.rho or a smaller data.batch_size finds or needs fewer clusters)")


def _add_round_scalars(tb: Any, r: int, stats: dict[str, Any],
                       target: dict[str, float]) -> None:
    """Round ``r``'s clustering figures per part and target metrics, as ``adapt/*``."""
    for part, s in stats.items():
        for name in ("clusters", "kept", "purity", "nmi"):
            tb.add_scalar(f"adapt/{part}/{name}", s[name], r)
    for name, value in target.items():
        tb.add_scalar(f"adapt/target/{name}", value, r)


@MODES.register("adapt")
def adapt(ctx: RunContext) -> RunResult:
    """Step 0, then ``adapt.rounds`` rounds (see the module docstring)."""
    from torch.utils.tensorboard import SummaryWriter

    cfg = ctx.cfg
    a = cfg.adapt
    if a is None:
        raise ValueError("mode adapt needs an 'adapt' section")
    target = load_named(cfg.data, a.target)
    test_sets = build_test_sets(cfg, [load_named(cfg.data, n)
                                      for n in (cfg.data.test or [a.target])])
    key = dataset_key(target.name)
    if key not in [t.name for t in test_sets]:
        raise ValueError(f"adapt.target {a.target!r} must be one of data.test "
                         f"{cfg.data.test} (its test split scores each round)")
    validator = Validator(test_sets, cfg.test, ctx.device, ctx.amp)
    saved = read_json(ctx.run.path / ROUNDS_FILE) if (ctx.run.path / ROUNDS_FILE).is_file() \
        else {}
    rows: list[dict[str, Any]] = saved.get("rounds", [])
    eps: dict[str, float] = dict(saved.get("eps", {}))
    started = time.time()
    model, record = source_model(ctx, validator)
    if not rows:
        record = record or validator(model, 0).record()
        rows.append({"round": 0, "name": "direct transfer", "target": _target_row(record, key),
                     "metrics": record, "seconds": time.time() - started})
        if ctx.writes:  # a run stopped in round 1 keeps it
            write_json(ctx.run.path / ROUNDS_FILE, {"eps": eps, "rounds": rows})
    tb = SummaryWriter(log_dir=str(ctx.run.path)) if ctx.writes else None
    loader = DataLoader(ImageDataset(target.train, build_transforms(
        cfg.augment, cfg.data.height, cfg.data.width, train=False)),
        batch_size=cfg.data.test_batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    true = np.array([r.pid for r in target.train])
    rcfg = round_config(cfg)
    final = rows[-1]["metrics"]
    for r in range(1, a.rounds + 1):
        stage = ctx.run.stage(f"round{r}")
        if stage.is_finished() and len(rows) > r:
            model = _stage_model(rcfg, stage, ctx.writes).to(ctx.device)
            final = rows[r]["metrics"]
            continue
        t0 = time.time()
        feats = extract_part_features(model, loader, ctx.device, a.parts, a.flip, ctx.amp)
        labels = cluster_parts(feats, a, eps, cfg.seed + r)
        stats = cluster_stats(labels, true)
        g = labels["global"]
        kept = np.flatnonzero(g.keep)
        log.info("round %d: %s", r, ", ".join(
            f"{p} {s['clusters']} clusters, {100 * s['kept']:.1f}% kept, purity "
            f"{s['purity']:.3f}, NMI {s['nmi']:.3f}" for p, s in stats.items()))
        reason = _too_few_clusters(r, g.num_clusters, rcfg)
        if reason:  # no PK batch: the adaptation ends at this round
            log.warning("%s", reason)
            rows = rows[:r] + [{"round": r, "name": f"round {r}", "clusters": stats,
                                "stopped": reason, "seconds": time.time() - t0}]
            break
        records = [ImageRecord(target.train[i].path, int(g.labels[i]), target.train[i].camid,
                               target.train[i].domain) for i in kept]
        data = build_train_data(rcfg, [ReIDDataset(target.name, train=records)])
        parts = {str(p): torch.as_tensor(labels[p].labels[kept]) for p in a.parts[1:]}
        task = round_task(rcfg, model, g.num_clusters, parts).to(ctx.device)
        result = fit(ctx, task, build_optimizers(rcfg, task), data, validator, rcfg.solver,
                     stage, resume=stage.path if stage.has_state() else None)
        model = task.model
        assert result.last is not None
        final = result.last.record()
        rows = rows[:r] + [{"round": r, "name": f"round {r}", "clusters": stats,
                            "target": _target_row(final, key), "metrics": final,
                            "seconds": time.time() - t0}]
        if ctx.writes:
            write_json(ctx.run.path / ROUNDS_FILE, {"eps": eps, "rounds": rows})
            assert tb is not None
            _add_round_scalars(tb, r, stats, rows[-1]["target"])
            stage.finish_stage(model.state_dict())  # after its row: the next round needs it
    if ctx.writes:
        write_json(ctx.run.path / ROUNDS_FILE, {"eps": eps, "rounds": rows,
                                                "seconds": time.time() - started})
        write_json(ctx.run.metrics, final)
    if tb is not None:
        tb.close()
    return RunResult(ctx.run.path, final, rows)


def format_rounds_table(rows: list[dict[str, Any]]) -> str:
    """The rounds as text: global clusters, kept, purity, NMI, then target mAP / rank-1 /
    rank-5 in percent."""
    lines = [f"{'round':<16} {'clusters':>8} {'kept':>6} {'purity':>6} {'NMI':>6} "
             f"{'mAP':>6} {'rank1':>6} {'rank5':>6}"]
    for row in rows:
        c = row.get("clusters", {}).get("global")
        head = (f"{c['clusters']:>8} {100 * c['kept']:6.1f} {100 * c['purity']:6.1f} "
                f"{100 * c['nmi']:6.1f}") if c else f"{'-':>8} {'-':>6} {'-':>6} {'-':>6}"
        if "stopped" in row:
            lines.append(f"{row['name']:<16} {head} stopped: too few clusters for a batch")
            continue
        t = row["target"]
        lines.append(f"{row['name']:<16} {head} {100 * t['mAP']:6.1f} {100 * t['rank1']:6.1f} "
                     f"{100 * t['rank5']:6.1f}")
    return "\n".join(lines)
