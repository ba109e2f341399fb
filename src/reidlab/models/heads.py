"""Pooling, BNNeck and classifiers that turn a backbone feature map into ReID outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling, ``(mean(x^p))^(1/p)`` over H and W with a learnable ``p``.

    Radenovic, Tolias and Chum, "Fine-tuning CNN Image Retrieval with No Human Annotation",
    TPAMI 2018. ``p = 1`` is average pooling; large ``p`` tends to max pooling.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        pooled = F.adaptive_avg_pool2d(x.clamp(min=self.eps).pow(self.p), 1)
        return pooled.pow(1.0 / self.p).flatten(1)


class AveragePooling(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C)
        return x.mean(dim=(2, 3))


class BNNeck(nn.Module):
    """Batch normalisation between the triplet feature and the classifier, bias frozen at 0.

    Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
    CVPRW 2019: the triplet loss sees the feature before the BN, the ID loss the one after.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim)
        self.bn.bias.requires_grad_(False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, D)
        return self.bn(x)


class LinearClassifier(nn.Module):
    """Bias-free linear classifier, weights drawn from N(0, 0.001^2) as in BoT."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.fc.weight, std=0.001)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(x)  # (B, num_classes)
