"""Features in and metrics out: test-feature extraction (an ignite ``Engine``), the
Market-1501-protocol metrics of one test set, and the raw-pixel floor."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar
from torch.utils.data import DataLoader

from reidlab.config import TestConfig
from reidlab.evaluation import evaluate
from reidlab.models.reid import ReIDModel


@dataclass
class Features:
    """Features of a set of images in loader order (for a test set: query rows first)."""

    feats: torch.Tensor  # (N, D)
    pids: np.ndarray  # (N,)
    camids: np.ndarray  # (N,)
    num_query: int = 0


def extract_features(
    model: ReIDModel,
    loader: DataLoader,
    device: torch.device,
    *,
    flip: bool = False,
    normalize: bool = True,
    amp: bool = False,
    num_query: int = 0,
    desc: str | None = "features",
) -> Features:
    """Test embeddings of every image of ``loader`` (``(images, pids, camids, index)``
    batches), in order: the model in eval mode, averaged with the horizontally flipped image
    when ``flip``, L2-normalised when ``normalize``. SSG, DEC and feature export use it
    directly; ``num_query`` only marks where a test set's gallery starts."""

    def step(engine: Engine, batch: Sequence[torch.Tensor]):
        images, pids, camids = batch[0], batch[1], batch[2]
        images = images.to(device, non_blocking=True)
        with torch.no_grad(), torch.autocast(device.type, enabled=amp):
            feats = model.embed(images, normalize=False)
            if flip:
                feats = (feats + model.embed(images.flip(3), normalize=False)) / 2
        feats = feats.float()
        if normalize:
            feats = torch.nn.functional.normalize(feats, dim=1)
        return feats.cpu(), torch.as_tensor(pids), torch.as_tensor(camids)

    engine = Engine(step)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    engine.add_event_handler(Events.ITERATION_COMPLETED,
                             lambda e: parts.append(e.state.output))
    if desc is not None:
        ProgressBar(persist=False, desc=desc).attach(engine)
    was_training = model.training
    model.eval()
    try:
        engine.run(loader)
    finally:
        model.train(was_training)
    if not parts:
        raise ValueError("extract_features: the loader gave no images")
    return Features(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]).numpy(),
                    torch.cat([p[2] for p in parts]).numpy(), num_query)


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


def evaluate_features(features: Features, cfg: TestConfig) -> tuple[dict[str, float], np.ndarray]:
    """Rank a test set's queries (the first ``num_query`` rows) against its gallery.

    Returns:
        The metrics (see :func:`metrics_from`) and the CMC curve (max_rank,).
    """
    f, q = features, features.num_query
    if not 0 < q < len(f.pids):
        raise ValueError(f"evaluate_features: num_query {q} leaves no query or no gallery "
                         f"among {len(f.pids)} images")
    result = evaluate(
        f.feats[:q], f.feats[q:], f.pids[:q], f.pids[q:], f.camids[:q], f.camids[q:],
        metric=cfg.metric, rerank=cfg.rerank, max_rank=cfg.max_rank,
        k1=cfg.k1, k2=cfg.k2, lambda_value=cfg.lambda_value,
        rerank_distance=cfg.rerank_distance,
    )
    cmc = np.asarray(result.cmc)
    return metrics_from(result, cmc), cmc


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
