"""Center loss: pull each feature towards a learned centre of its identity."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CenterLoss(nn.Module):
    """Center loss (Wen et al., "A Discriminative Feature Learning Approach for Deep Face
    Recognition", ECCV 2016), as used by the Bag of Tricks baseline (Luo et al., CVPRW 2019
    / TMM 2019).

    ``loss = sum_i clamp(|x_i - c_{y_i}|^2, 1e-12, 1e12) / B`` with the centres ``c``
    (``(C, D)``, initialised from a standard normal as in the BoT code) an
    :class:`~torch.nn.Parameter`. The BoT code clamps the whole masked ``(B, C)`` distance
    matrix, which adds ``(C - 1) * 1e-12`` per row; here only each sample's own distance is
    computed (``O(B D)`` instead of ``O(B C D)``), so the value differs from BoT's by at
    most ``C * 1e-12``.

    How a trainer must use it (the BoT recipe):

    - the total loss adds ``center_weight * loss`` (``center_weight = 0.0005``);
    - the centres are **not** in the model's optimizer; they have their own
      ``torch.optim.SGD(center_loss.parameters(), lr=center_lr)`` (``center_lr = 0.5``),
      with no weight decay;
    - after ``backward()`` and before that optimizer's step, the trainer multiplies the
      centres' gradient by ``1 / center_weight``, so that the centres move at ``lr = 0.5``
      on the unweighted loss whatever the weight. With a ``torch.amp.GradScaler`` this
      rescaling may come before ``scaler.step(center_optimizer)``: both are
      multiplications, so the order does not matter.

    With ``distance="l2"`` each sample contributes its plain (not squared) Euclidean
    distance ``|x_i - c_{y_i}|`` instead, as the notebook's code (ArronHZG/reid-baseline,
    from commit b1f76d8) computes it.

    Args:
        num_classes: ``C``, the number of training identities.
        feat_dim: ``D``, the feature dimension.
        distance: ``"squared"`` (Wen et al.; BoT) or ``"l2"``.
    """

    def __init__(self, num_classes: int, feat_dim: int, distance: str = "squared") -> None:
        super().__init__()
        if num_classes < 1 or feat_dim < 1:
            raise ValueError(
                f"CenterLoss needs positive num_classes and feat_dim, got {num_classes} and "
                f"{feat_dim}"
            )
        if distance not in ("squared", "l2"):
            raise ValueError(f"CenterLoss distance must be 'squared' or 'l2', got {distance!r}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.distance = distance
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))  # (C, D)

    def forward(self, feats: Tensor, labels: Tensor) -> Tensor:
        """Return the center loss of a batch.

        Args:
            feats: ``(B, D)`` features.
            labels: ``(B,)`` integer labels in ``[0, C)``.

        Returns:
            A scalar tensor.
        """
        if feats.ndim != 2 or feats.shape[1] != self.feat_dim or labels.shape != feats.shape[:1]:
            raise ValueError(
                f"CenterLoss expects feats (B, {self.feat_dim}) and labels (B,), got "
                f"{tuple(feats.shape)} and {tuple(labels.shape)}"
            )
        centers = self.centers[labels.long()]  # (B, D)
        dist = (feats.float() - centers.float()).pow(2).sum(dim=1).clamp(min=1e-12, max=1e12)
        if self.distance == "l2":
            dist = dist.sqrt()  # (B,)
        return dist.sum() / feats.shape[0]

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, {self.distance}"
