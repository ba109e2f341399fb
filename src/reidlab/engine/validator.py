"""Validation: every test set evaluated on its own, one score by a named rule, the
notebook's validation block.

The score picks the best model (``test.best_by``):

- ``mean_of_datasets``: the mean over test sets of (mAP + rank-1) / 2, the notebook's
  ``Save best`` of joint training (Market-1501 86.8 / 94.6, DukeMTMC-reID 78.6 / 88.0,
  MSMT17 48.9 / 67.5 give 0.7740); with one test set, that set's mean;
- a dataset name: that test set's (mAP + rank-1) / 2.

In a distributed run every rank extracts the features of its contiguous share of each test
set's loader batches (query and gallery rows alike), the features, pids and camids are
gathered to every rank in the loader's order, and rank 0 ranks them once and sends the
metrics to the others. Each image goes through the network in the same batch as in one
process, so the metrics are exactly those of a single-process evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from reidlab.config import TestConfig
from reidlab.data.pipeline import TestSet
from reidlab.engine.collectives import batch_shard, gather_rows, on_rank_zero, world
from reidlab.engine.evaluator import Features, evaluate_features, extract_features
from reidlab.models.reid import ReIDModel

MEAN_OF_DATASETS = "mean_of_datasets"
RULE = "-" * 80


def dataset_key(name: str) -> str:
    """The name a test set is reported under: ``synthetic`` is ``synthetic-a``."""
    return "synthetic-a" if name == "synthetic" else name


def score(metrics: dict[str, dict[str, float]], rule: str = MEAN_OF_DATASETS) -> float:
    """One number from per-dataset metrics by ``rule`` (see the module docstring).

    Raises:
        KeyError: ``rule`` names a dataset that was not evaluated.
    """
    if not metrics:
        raise ValueError("score: no test set was evaluated")
    if rule == MEAN_OF_DATASETS:
        return sum((m["mAP"] + m["rank1"]) / 2 for m in metrics.values()) / len(metrics)
    key = dataset_key(rule)
    if key not in metrics:
        raise KeyError(f"test.best_by: {rule!r} is not a test set; evaluated: "
                       f"{', '.join(metrics)} (or {MEAN_OF_DATASETS!r})")
    m = metrics[key]
    return (m["mAP"] + m["rank1"]) / 2


@dataclass
class Validation:
    """One validation: per test set metrics and CMC curves, the score, optionally features."""

    epoch: int
    metrics: dict[str, dict[str, float]]
    score: float
    rule: str
    cmc: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, Features] = field(default_factory=dict)

    def record(self) -> dict:
        """What ``metrics.json`` holds: one entry per dataset, and ``save_best``."""
        return {**self.metrics, "save_best": self.score}

    def block(self) -> str:
        """The notebook's validation block (percent, one decimal; score as a fraction)."""
        lines = [RULE, f" Valid - Epoch: {self.epoch}"]
        for name, m in self.metrics.items():
            lines += [
                f" {name} Validation Results",
                f" mAP: {100 * m['mAP']:.1f}%",
                f" CMC curve, Rank-1  :{100 * m['rank1']:.1f}%",
                f" CMC curve, Rank-5  :{100 * m['rank5']:.1f}%",
                f" CMC curve, Rank-10 :{100 * m['rank10']:.1f}%",
            ]
        lines += [f" Save best: {self.score:.4f}", RULE]
        return "\n".join(lines)


class Validator:
    """Evaluates a model on each test set and scores the result by ``cfg.best_by``."""

    def __init__(self, test_sets: list[TestSet], cfg: TestConfig, device: torch.device,
                 amp: bool = False) -> None:
        if not test_sets:
            raise ValueError("Validator: no test set")
        self.test_sets = test_sets
        self.cfg = cfg
        self.device = device
        self.amp = amp
        self.rule = cfg.best_by
        names = [t.name for t in test_sets]
        if self.rule != MEAN_OF_DATASETS and dataset_key(self.rule) not in names:
            raise KeyError(f"test.best_by: {self.rule!r} is not a test set; test sets: "
                           f"{', '.join(names)} (or {MEAN_OF_DATASETS!r})")

    def __call__(self, model: ReIDModel, epoch: int = 0,
                 keep_features: bool = False) -> Validation:
        metrics, cmc, features = {}, {}, {}
        for ts in self.test_sets:
            f = self.features(model, ts)
            metrics[ts.name], cmc[ts.name] = on_rank_zero(partial(evaluate_features, f,
                                                                  self.cfg))
            if keep_features:
                features[ts.name] = f
        return Validation(epoch, metrics, score(metrics, self.rule), self.rule, cmc, features)

    def features(self, model: ReIDModel, ts: TestSet) -> Features:
        """The test features of ``ts`` in loader order (query rows first), extracted in
        shares by the ranks of a distributed run and gathered (module docstring)."""
        rank, size = world()
        extract = partial(extract_features, model, device=self.device, flip=self.cfg.flip,
                          normalize=self.cfg.feat_norm, amp=self.amp, num_query=ts.num_query)
        if size == 1:
            return extract(ts.loader, desc=f"eval {ts.name}")
        n, per = len(ts.loader.dataset), ts.loader.batch_size  # type: ignore[arg-type]
        assert per is not None
        batches = -(-n // per)
        rows = [(min(n, a * per), min(n, b * per))
                for a, b in (batch_shard(batches, r, size) for r in range(size))]
        first, end = rows[rank]
        if end > first:
            share = DataLoader(Subset(ts.loader.dataset, range(first, end)), batch_size=per,
                               shuffle=False, num_workers=ts.loader.num_workers,
                               pin_memory=ts.loader.pin_memory)
            part = extract(share, desc=f"eval {ts.name}" if rank == 0 else None)
            feats = part.feats
            labels = torch.stack([torch.as_tensor(part.pids), torch.as_tensor(part.camids)], 1)
        else:  # more ranks than batches
            feats = torch.zeros((0, model.feat_dim))
            labels = torch.zeros((0, 2), dtype=torch.long)
        sizes = [b - a for a, b in rows]
        ids = gather_rows(labels.long(), sizes).numpy()  # (N, 2): pid, camid
        return Features(gather_rows(feats, sizes), ids[:, 0], ids[:, 1], ts.num_query)
