"""ArcFace classifier: cosine logits with an additive angular margin on the target class."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ArcFace(nn.Module):
    """Additive angular margin classifier (Deng et al., "ArcFace: Additive Angular Margin
    Loss for Deep Face Recognition", CVPR 2019).

    With ``theta_j`` the angle between the L2-normalised feature and the L2-normalised
    class weight ``W_j`` (bias-free), the logits are ``s * cos(theta_j)`` for non-target
    classes and ``s * cos(theta_y + m)`` for the target class ``y``; feed them to a
    (label-smoothed) cross entropy.

    ``cos(theta + m)`` stops decreasing in ``theta`` once ``theta + m > pi``, which would
    reward pushing a badly placed sample further away. The standard rule (the authors'
    released code) replaces the target logit there by a CosFace-like linear penalty:
    with ``th = cos(pi - m)`` and ``mm = sin(pi - m) * m``, the target uses
    ``cos(theta + m)`` when ``cos(theta) > th`` (``theta < pi - m``) and ``cos(theta) - mm``
    otherwise. ``easy_margin=True`` instead applies the margin only where ``cos(theta) > 0``
    (``theta < pi / 2``) and leaves ``cos(theta)`` elsewhere.

    Computed in float32 whatever the input dtype, autocast disabled; ``sin(theta)`` is taken as
    ``sqrt(clamp(1 - cos^2, 1e-12, 1))`` so its gradient stays finite at ``theta = 0``.

    Args:
        in_features: ``D``, the feature dimension.
        num_classes: ``C``, the number of training identities.
        scale: ``s``, the logit scale (30 for ReID, 64 in the paper's face models).
        margin: ``m`` in radians (0.5 in the paper).
        easy_margin: use the ``cos(theta) > 0`` rule instead of the ``th``/``mm`` one.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        scale: float = 30.0,
        margin: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError(
                f"ArcFace needs positive in_features and num_classes, got {in_features} and "
                f"{num_classes}"
            )
        if not 0.0 <= margin < math.pi / 2:
            raise ValueError(f"ArcFace margin must lie in [0, pi/2) radians, got {margin}")
        self.in_features = in_features
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin
        self.easy_margin = easy_margin
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))  # (C, D)
        nn.init.xavier_uniform_(self.weight)
        self.cos_m = math.cos(margin)
        self.sin_m = math.sin(margin)
        self.th = math.cos(math.pi - margin)
        self.mm = math.sin(math.pi - margin) * margin

    def forward(self, feats: Tensor, labels: Tensor | None = None) -> Tensor:
        """Return the logits.

        Args:
            feats: ``(B, D)`` features (need not be normalised).
            labels: ``(B,)`` target classes; ``None`` (evaluation) gives ``s * cos(theta)``
                for every class, with no margin.

        Returns:
            ``(B, C)`` logits, float32.
        """
        if feats.ndim != 2 or feats.shape[1] != self.in_features:
            raise ValueError(
                f"ArcFace expects feats (B, {self.in_features}), got {tuple(feats.shape)}"
            )
        # float32 even inside an autocast region: the margin acts on angles near 0, where
        # half-precision cosines are too coarse
        with torch.autocast(device_type=feats.device.type, enabled=False):
            cosine = F.linear(
                F.normalize(feats.float(), dim=1), F.normalize(self.weight.float(), dim=1)
            )  # (B, C)
        if labels is None:
            return self.scale * cosine
        sine = (1.0 - cosine.pow(2)).clamp(min=1e-12, max=1.0).sqrt()
        phi = cosine * self.cos_m - sine * self.sin_m  # cos(theta + m)
        if self.easy_margin:
            phi = torch.where(cosine > 0, phi, cosine)
        else:
            phi = torch.where(cosine > self.th, phi, cosine - self.mm)
        is_target = F.one_hot(labels.long(), self.num_classes).bool()  # (B, C)
        return self.scale * torch.where(is_target, phi, cosine)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_classes={self.num_classes}, "
            f"scale={self.scale}, margin={self.margin}, easy_margin={self.easy_margin}"
        )
