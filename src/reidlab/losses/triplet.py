"""Pairwise distances, batch-hard mining and the triplet loss.

Batch-hard mining is from Hermans, Beyer and Leibe, "In Defense of the Triplet Loss for
Person Re-Identification", arXiv 1703.07737, 2017; its use with a margin of 0.3 on top of
the ID loss is the Bag of Tricks baseline (Luo et al., CVPRW 2019 / TMM 2019).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _check_pair(x: Tensor, y: Tensor, name: str) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"{name} expects (B1, D) and (B2, D), got {tuple(x.shape)} and {tuple(y.shape)}"
        )


def euclidean_dist(x: Tensor, y: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``x`` and the rows of ``y``.

    Computed as ``sqrt(|x|^2 + |y|^2 - 2 x.y)``; the squared distance is clamped to at
    least 1e-12 before the square root, so that the gradient stays finite for identical
    rows (the distance of a row to itself is then 1e-6, not 0).

    Args:
        x: ``(B1, D)``.
        y: ``(B2, D)``.

    Returns:
        ``(B1, B2)`` distances.
    """
    _check_pair(x, y, "euclidean_dist")
    xx = x.pow(2).sum(dim=1, keepdim=True)  # (B1, 1)
    yy = y.pow(2).sum(dim=1, keepdim=True).t()  # (1, B2)
    dist = xx + yy - 2.0 * (x @ y.t())  # (B1, B2)
    return dist.clamp(min=1e-12).sqrt()


def cosine_dist(x: Tensor, y: Tensor) -> Tensor:
    """Cosine distances ``1 - cos(x_i, y_j)``, in ``[0, 2]``.

    Args:
        x: ``(B1, D)``.
        y: ``(B2, D)``.

    Returns:
        ``(B1, B2)`` distances.
    """
    _check_pair(x, y, "cosine_dist")
    return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()


def hard_example_mining(dist: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Batch-hard mining: for each anchor, its farthest positive and nearest negative.

    Works for any number of images per identity in the batch (masks, not a reshape to
    ``(P, K)``).

    Anchors themselves count as positives, as in the usual implementation (Hermans et
    al. 2017; the Bag of Tricks code). With at least one other image of its identity in
    the batch this changes nothing, since ``dist[i, i]`` (about 0, or 1e-6 with
    :func:`euclidean_dist`) is no larger than any other distance. An anchor that is its
    identity's only image gets ``dist_ap = dist[i, i]``, about 0: its loss term then only
    pushes the nearest negative out to the margin, which is still a useful signal, and no
    anchor is dropped. With PK sampling (K >= 2) every anchor has a real positive.

    An anchor with no negative in the batch (a single-identity batch) gets
    ``dist_an = +inf``, so its margin and soft-margin terms are exactly 0.

    Args:
        dist: ``(B, B)`` pairwise distances of the batch to itself.
        labels: ``(B,)`` identity labels.

    Returns:
        ``(dist_ap, dist_an)``, each ``(B,)``: the hardest positive and hardest negative
        distance of every anchor, differentiable with respect to ``dist``.
    """
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1] or labels.shape != dist.shape[:1]:
        raise ValueError(
            f"hard_example_mining expects dist (B, B) and labels (B,), got "
            f"{tuple(dist.shape)} and {tuple(labels.shape)}"
        )
    is_pos = labels.unsqueeze(0) == labels.unsqueeze(1)  # (B, B), diagonal True
    inf = torch.full_like(dist, float("inf"))
    dist_ap = torch.where(is_pos, dist, -inf).max(dim=1).values  # (B,)
    dist_an = torch.where(is_pos, inf, dist).min(dim=1).values  # (B,)
    return dist_ap, dist_an


class TripletOutput(NamedTuple):
    """What :class:`TripletLoss` returns.

    Attributes:
        loss: the scalar loss, to back-propagate.
        dist_ap: ``(B,)`` hardest-positive distances, detached, for logging.
        dist_an: ``(B,)`` hardest-negative distances, detached, for logging.
    """

    loss: Tensor
    dist_ap: Tensor
    dist_an: Tensor


class TripletLoss(nn.Module):
    """Batch-hard triplet loss with a hard or soft margin.

    With ``d_ap``, ``d_an`` from :func:`hard_example_mining` on Euclidean distances:

    - ``batch_hard``: ``mean(max(0, d_ap - d_an + margin))``, the margin ranking loss;
      with ``soft_margin=True``, ``mean(softplus(d_ap - d_an))`` = ``mean(log(1 +
      exp(d_ap - d_an)))`` and ``margin`` is unused (Hermans et al. 2017).
    - ``ap_penalty``: ``mean(d_ap + max(0, d_ap - d_an + margin))`` (soft margin:
      ``mean(d_ap + softplus(d_ap - d_an))``), which also pulls the farthest positive
      in (the researcher's notebook, row 17, as its text gives it).
    - ``double_ap``: ``mean(max(0, 2 d_ap - d_an + margin))`` (soft margin:
      ``mean(softplus(2 d_ap - d_an))``), the form the notebook's code computed for row 17
      (commit 005ea40). The two agree only where the hinge is active.

    ``forward`` returns a :class:`TripletOutput` named tuple: the scalar ``loss`` and the
    mined ``dist_ap`` / ``dist_an``, detached, for logging (e.g. the fraction of anchors
    with ``dist_an > dist_ap``). Returning them, rather than keeping them on the module,
    keeps the module stateless.

    Distances are computed in float32 whatever the feature dtype, autocast disabled, since
    ``|x|^2 + |y|^2 - 2 x.y`` cancels badly in half precision.

    Args:
        margin: the margin ``m`` (0.3 in the Bag of Tricks).
        soft_margin: use the softplus form instead of the hinge.
        variant: ``"batch_hard"``, ``"ap_penalty"`` or ``"double_ap"``.
        normalize_feature: L2-normalise features before the distances.
    """

    def __init__(
        self,
        margin: float = 0.3,
        soft_margin: bool = False,
        variant: Literal["batch_hard", "ap_penalty", "double_ap"] = "batch_hard",
        normalize_feature: bool = False,
    ) -> None:
        super().__init__()
        if variant not in ("batch_hard", "ap_penalty", "double_ap"):
            raise ValueError(
                "triplet variant must be 'batch_hard', 'ap_penalty' or 'double_ap', got "
                f"{variant!r}"
            )
        if margin < 0:
            raise ValueError(f"triplet margin must be non-negative, got {margin}")
        self.margin = margin
        self.soft_margin = soft_margin
        self.variant = variant
        self.normalize_feature = normalize_feature

    def forward(self, feats: Tensor, labels: Tensor) -> TripletOutput:
        """Return the triplet loss of a batch and its mined distances.

        Args:
            feats: ``(B, D)`` embeddings.
            labels: ``(B,)`` identity labels.

        Returns:
            ``TripletOutput(loss, dist_ap, dist_an)``: a scalar and two detached ``(B,)``.
        """
        if feats.ndim != 2 or labels.shape != feats.shape[:1]:
            raise ValueError(
                f"TripletLoss expects feats (B, D) and labels (B,), got {tuple(feats.shape)} "
                f"and {tuple(labels.shape)}"
            )
        # float32 even inside an autocast region, which would run the matmul in half
        with torch.autocast(device_type=feats.device.type, enabled=False):
            feats = feats.float()
            if self.normalize_feature:
                feats = F.normalize(feats, dim=1)
            dist = euclidean_dist(feats, feats)  # (B, B)
        dist_ap, dist_an = hard_example_mining(dist, labels)
        diff = dist_ap - dist_an  # (B,)
        if self.variant == "double_ap":
            diff = diff + dist_ap
        if self.soft_margin:
            term = F.softplus(diff)
        else:
            term = F.relu(diff + self.margin)
        if self.variant == "ap_penalty":
            term = term + dist_ap
        return TripletOutput(term.mean(), dist_ap.detach(), dist_an.detach())

    def extra_repr(self) -> str:
        return (
            f"margin={self.margin}, soft_margin={self.soft_margin}, variant={self.variant!r}, "
            f"normalize_feature={self.normalize_feature}"
        )
