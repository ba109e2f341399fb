"""The ReID model: a backbone, a pooling layer, a BNNeck and a classifier, composed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from reidlab.models.heads import AveragePooling, BNNeck, GeneralizedMeanPooling, LinearClassifier


@dataclass
class ReIDOutput:
    """What one forward pass gives.

    Attributes:
        global_feat: (B, D) pooled feature before the neck; the triplet and center losses use it.
        feat: (B, D) feature after the neck (equal to ``global_feat`` without a neck).
        logits: (B, num_classes) classifier scores, ``None`` when the model has no classifier.
    """

    global_feat: torch.Tensor
    feat: torch.Tensor
    logits: torch.Tensor | None


class ReIDModel(nn.Module):
    """``backbone -> pooling -> (BNNeck) -> classifier``.

    Args:
        backbone: maps (B, 3, H, W) to a feature map (B, D, h, w).
        feat_dim: D, the backbone's output channels.
        num_classes: training identities; 0 builds no classifier (feature extraction only).
        pooling: ``"avg"`` or ``"gem"``.
        neck: ``"bnneck"`` or ``"none"``.
        neck_feat: which feature :meth:`embed` returns at test time, ``"before"`` or
            ``"after"`` the neck.
        classifier: a module ``(feat, labels) -> logits`` replacing the linear classifier
            (ArcFace, for instance).
    """

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        num_classes: int,
        pooling: str = "avg",
        gem_p: float = 3.0,
        neck: str = "bnneck",
        neck_feat: str = "after",
        classifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.feat_dim = feat_dim
        self.pool: nn.Module = (
            GeneralizedMeanPooling(gem_p) if pooling == "gem" else AveragePooling()
        )
        self.neck: nn.Module = BNNeck(feat_dim) if neck == "bnneck" else nn.Identity()
        self.neck_feat = neck_feat
        if classifier is None and num_classes > 0:
            classifier = LinearClassifier(feat_dim, num_classes)
        self.classifier = classifier

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> ReIDOutput:
        global_feat = self.pool(self.backbone(images))  # (B, D)
        feat = self.neck(global_feat)  # (B, D)
        logits = self.classifier(feat, labels) if self.classifier is not None else None
        return ReIDOutput(global_feat=global_feat, feat=feat, logits=logits)

    @torch.no_grad()
    def embed(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Test-time embedding (B, D): the configured side of the neck, optionally L2-normalised."""
        global_feat = self.pool(self.backbone(images))
        feat = self.neck(global_feat) if self.neck_feat == "after" else global_feat
        return F.normalize(feat, dim=1) if normalize else feat


def backbone_channels(backbone: nn.Module) -> int:
    """Output channels of a backbone, from its ``out_channels`` or from a tiny forward pass."""
    channels = getattr(backbone, "out_channels", None)
    if isinstance(channels, int):
        return channels
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 64, 32))
    backbone.train(was_training)
    return int(out.shape[1])
