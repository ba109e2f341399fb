"""Identity classification loss with label smoothing."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CrossEntropyLabelSmooth(nn.Module):
    """Cross entropy against label-smoothed targets.

    The target distribution is ``q = (1 - epsilon) * onehot(y) + epsilon / C`` (Szegedy et
    al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016), used as
    the ID loss of the Bag of Tricks baseline (Luo et al., CVPRW 2019 / TMM 2019) with
    ``epsilon = 0.1``. The loss is ``mean_i sum_c -q_ic * log softmax(z_i)_c``.

    Args:
        num_classes: ``C``, the number of training identities.
        epsilon: smoothing mass spread uniformly over the ``C`` classes; 0 gives the
            plain cross entropy.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must lie in [0, 1), got {epsilon}")
        self.num_classes = num_classes
        self.epsilon = epsilon

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Return the mean smoothed cross entropy.

        Args:
            logits: ``(B, C)`` unnormalised class scores.
            targets: ``(B,)`` integer labels in ``[0, C)``.

        Returns:
            A scalar tensor.
        """
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"logits must have shape (B, {self.num_classes}), got {tuple(logits.shape)}"
            )
        # float32 so that the log-softmax stays accurate under mixed precision
        log_probs = F.log_softmax(logits.float(), dim=1)  # (B, C)
        onehot = torch.zeros_like(log_probs).scatter_(1, targets.long().unsqueeze(1), 1.0)
        q = (1.0 - self.epsilon) * onehot + self.epsilon / self.num_classes  # (B, C)
        return (-q * log_probs).sum(dim=1).mean()

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, epsilon={self.epsilon}"
