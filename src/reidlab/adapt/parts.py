"""SSG's part features: the whole body and the upper and lower halves of the last feature
map (Fu et al., "Self-similarity Grouping: A Simple Unsupervised Cross Domain Adaptation
Approach for Person Re-identification", ICCV 2019), for clustering and for training.

``global`` is the model's own test feature (pooled, through the BNNeck when
``model.neck_feat`` is ``after``); ``upper`` and ``lower`` pool the top ``h // 2`` rows and
the remaining rows of the ``(B, D, h, w)`` map with the model's pooling and skip the neck,
whose batch statistics are those of the whole-body feature. Extracted features are averaged
with the flipped image's and L2-normalised, as test features are; the triplet terms read
the pooled features before the neck, as the BoT triplet term does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from reidlab.engine.task import Batch, ReIDTask, TaskOutput
from reidlab.losses.objective import Objective
from reidlab.losses.triplet import TripletLoss
from reidlab.models.reid import ReIDModel, ReIDOutput

PARTS = ("global", "upper", "lower")


def split_halves(fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The upper ``h // 2`` rows and the other rows of a (B, D, h, w) feature map."""
    if fmap.ndim != 4 or fmap.shape[2] < 2:
        raise ValueError(f"part features need a (B, D, h, w) feature map with h >= 2, got "
                         f"{tuple(fmap.shape)}")
    half = fmap.shape[2] // 2
    return fmap[:, :, :half], fmap[:, :, half:]


def pooled_parts(model: ReIDModel, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Pooled features before the neck: ``global``, ``upper``, ``lower``, each (B, D),
    and ``map``, the (B, D, h, w) feature map."""
    fmap = model.backbone(images)
    upper, lower = split_halves(fmap)
    return {"map": fmap, "global": model.pool(fmap), "upper": model.pool(upper),
            "lower": model.pool(lower)}


def _test_parts(model: ReIDModel, images: torch.Tensor, parts: Sequence[str]):
    pooled = pooled_parts(model, images)
    out = {}
    for name in parts:
        f = pooled[name]
        if name == "global" and model.neck_feat == "after":
            f = model.neck(f)
        out[name] = f
    return out


@torch.no_grad()
def extract_part_features(model: ReIDModel, loader: DataLoader, device: torch.device,
                          parts: Sequence[str] = PARTS, flip: bool = True,
                          amp: bool = False) -> dict[str, torch.Tensor]:
    """Test-style features of every image of ``loader``, in order, per part.

    Returns:
        ``{part: (N, D)}``, L2-normalised, on the CPU.
    """
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown parts {unknown}; known: {', '.join(PARTS)}")
    was_training = model.training
    model.eval()
    chunks: dict[str, list[torch.Tensor]] = {p: [] for p in parts}
    try:
        for batch in loader:
            images = batch[0].to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                feats = _test_parts(model, images, parts)
                if flip:
                    flipped = _test_parts(model, images.flip(3), parts)
                    feats = {p: (feats[p] + flipped[p]) / 2 for p in parts}
            for p in parts:
                chunks[p].append(F.normalize(feats[p].float(), dim=1).cpu())
    finally:
        model.train(was_training)
    if not chunks[parts[0]]:
        raise ValueError("extract_part_features: the loader gave no images")
    return {p: torch.cat(c) for p, c in chunks.items()}


class PartTask(ReIDTask):
    """The SSG training task: the objective on the global feature with the global pseudo
    labels (``batch.targets["pid"]``), plus a triplet term on each part's pooled feature with
    that part's own pseudo labels, looked up by the batch's record index.

    Args:
        model: the model.
        objective: terms on the global feature (triplet for SSG; the notebook's softmax +
            triplet + center).
        part_labels: ``{part: (N,) int64}`` over the training records, -1 where the part's
            clustering left the image out (it then takes no part in that term).
        triplet: the triplet loss of the part terms.
        part_weight: each part term's weight.
    """

    def __init__(self, model: ReIDModel, objective: Objective,
                 part_labels: dict[str, torch.Tensor], triplet: TripletLoss,
                 part_weight: float = 1.0) -> None:
        super().__init__(model, objective)
        self.part_names = list(part_labels)
        for name, labels in part_labels.items():
            self.register_buffer(f"labels_{name}", labels.long(), persistent=False)
        self.triplet = triplet
        self.part_weight = part_weight

    def part_labels(self, name: str) -> torch.Tensor:
        return getattr(self, f"labels_{name}")

    def forward(self, batch: Batch) -> TaskOutput:
        pids = batch.targets["pid"]
        pooled = pooled_parts(self.model, batch.images)
        feat = self.model.neck(pooled["global"])
        classifier = self.model.classifier
        logits = classifier(feat, pids) if classifier is not None else None
        output = ReIDOutput(global_feat=pooled["global"], feat=feat, logits=logits)
        loss, terms = self.objective(output, pids)
        for name in self.part_names:
            labels = self.part_labels(name)[batch.index]
            valid = labels >= 0
            if int(valid.sum()) > 1:
                value = self.triplet(pooled[name][valid], labels[valid]).loss
            else:
                value = pooled[name].sum() * 0.0
            terms[f"triplet_{name}"] = value
            loss = loss + self.part_weight * value
        logs = {}
        if logits is not None:
            logs["acc"] = (logits.argmax(1) == pids).float().mean().item()
        return TaskOutput(loss, terms, output, logs)

    def log_keys(self) -> list[str]:
        return [*super().log_keys(), *[f"triplet_{n}" for n in self.part_names]]
