"""Feature extraction and ReID evaluation as an ignite ``Engine`` with a ``Metric``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ignite.engine import Engine
from ignite.metrics import Metric

from reidlab.config import TestConfig
from reidlab.evaluation import evaluate
from reidlab.models.reid import ReIDModel


@dataclass
class Features:
    """Features of a test set, query rows first."""

    feats: torch.Tensor  # (N, D)
    pids: np.ndarray  # (N,)
    camids: np.ndarray  # (N,)
    num_query: int


def make_eval_step(model: ReIDModel, device: torch.device, flip: bool, normalize: bool, amp: bool):
    """Process function: images -> test embeddings, averaged with the flipped image if asked."""

    def step(engine: Engine, batch: Sequence[torch.Tensor]):
        model.eval()
        images, pids, camids, _ = batch
        images = images.to(device, non_blocking=True)
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            feats = model.embed(images, normalize=False)
            if flip:
                feats = (feats + model.embed(images.flip(3), normalize=False)) / 2
        feats = feats.float()
        if normalize:
            feats = torch.nn.functional.normalize(feats, dim=1)
        return feats.cpu(), pids, camids

    return step


def metrics_from(result, cmc: np.ndarray) -> dict[str, float]:
    """The run's metric names: fractions in [0, 1]; ``mean`` = (mAP + rank-1) / 2."""
    out = {
        "mAP": float(result.mAP),
        "rank1": float(cmc[0]),
        "rank5": float(cmc[min(4, len(cmc) - 1)]),
        "rank10": float(cmc[min(9, len(cmc) - 1)]),
        "mINP": float(result.mINP),
    }
    out["mean"] = (out["mAP"] + out["rank1"]) / 2
    return out


class ReIDMetric(Metric):
    """Collects query and gallery features, then ranks them with the Market-1501 protocol."""

    def __init__(self, num_query: int, cfg: TestConfig, device: str | torch.device = "cpu") -> None:
        self.num_query = num_query
        self.cfg = cfg
        super().__init__(output_transform=lambda x: x, device=device)

    def reset(self) -> None:
        self._feats: list[torch.Tensor] = []
        self._pids: list[torch.Tensor] = []
        self._camids: list[torch.Tensor] = []

    def update(self, output) -> None:
        feats, pids, camids = output
        self._feats.append(feats)
        self._pids.append(torch.as_tensor(pids))
        self._camids.append(torch.as_tensor(camids))

    def features(self) -> Features:
        return Features(
            torch.cat(self._feats),
            torch.cat(self._pids).numpy(),
            torch.cat(self._camids).numpy(),
            self.num_query,
        )

    def compute(self) -> dict[str, float]:
        f = self.features()
        q = self.num_query
        result = evaluate(
            f.feats[:q], f.feats[q:], f.pids[:q], f.pids[q:], f.camids[:q], f.camids[q:],
            metric=self.cfg.metric,
            rerank=self.cfg.rerank,
            max_rank=self.cfg.max_rank,
            k1=self.cfg.k1,
            k2=self.cfg.k2,
            lambda_value=self.cfg.lambda_value,
        )
        self.last_result = result
        return metrics_from(result, np.asarray(result.cmc))


def build_evaluator(
    model: ReIDModel, num_query: int, cfg: TestConfig, device: torch.device, amp: bool
) -> tuple[Engine, ReIDMetric]:
    """An evaluator engine whose ``state.metrics['reid']`` holds the metric dict after a run."""
    engine = Engine(make_eval_step(model, device, cfg.flip, cfg.feat_norm, amp))
    metric = ReIDMetric(num_query, cfg)
    metric.attach(engine, "reid")
    return engine, metric


def raw_pixel_metrics(
    query: Sequence, gallery: Sequence, cfg: TestConfig, size: tuple[int, int] = (32, 16)
) -> dict[str, float]:
    """The raw-pixel baseline: each image downsampled to ``size`` (H, W), flattened, centred
    and L2-normalised, ranked by cosine distance. A model that does not beat it has learnt
    nothing about identity."""
    from reidlab.data.loader import decode_image

    def pixels(records: Sequence) -> torch.Tensor:
        rows = []
        for r in records:
            img = decode_image(r.path).float().unsqueeze(0) / 255  # (1, 3, H, W)
            small = torch.nn.functional.interpolate(img, size=size, mode="bilinear",
                                                    antialias=True, align_corners=False)
            rows.append(small.flatten())
        x = torch.stack(rows)
        return x - x.mean(dim=1, keepdim=True)

    q, g = pixels(query), pixels(gallery)
    result = evaluate(
        q, g,
        np.array([r.pid for r in query]), np.array([r.pid for r in gallery]),
        np.array([r.camid for r in query]), np.array([r.camid for r in gallery]),
        metric="cosine", max_rank=cfg.max_rank,
    )
    return metrics_from(result, np.asarray(result.cmc))
