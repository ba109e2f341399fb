"""Learned weighting of several loss terms by homoscedastic uncertainty."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UncertaintyWeighting(nn.Module):
    """Weigh loss terms by learned task uncertainty (Kendall, Gal and Cipolla, "Multi-Task
    Learning Using Uncertainty to Weigh Losses for Scene Geometry and Semantics", CVPR 2018).

    Each term ``L_i`` has a learnable ``s_i = log sigma_i^2`` (initialised to 0, i.e. weight
    1) and ``total = sum_i exp(-s_i) * L_i + s_i``: a term with a large loss learns a large
    ``s_i`` and so a small weight, and the ``+ s_i`` keeps the weights from collapsing to 0.
    This is the common simplified form of the paper's ``L / (2 sigma^2) + log sigma``
    (regression) and ``L / sigma^2 + log sigma`` (classification), without the per-kind
    factors of 2.

    The ``s_i`` belong in the trainer's optimizer with no weight decay (decay would pull
    them, and so the weights, towards 1).

    ``regularizer`` scales the ``+ s_i`` term: 1 above; the notebook's "learning weight"
    (ArronHZG/reid-baseline) learns one ``s`` on the ID term only with
    ``exp(-s) * CE + 0.5 * s``, i.e. ``regularizer=0.5``.

    Args:
        names: the loss terms' names, in a fixed order; :meth:`forward` expects exactly
            these keys.
        regularizer: the factor of ``s_i`` in the total.
    """

    def __init__(self, names: list[str], regularizer: float = 1.0) -> None:
        super().__init__()
        if not names:
            raise ValueError("UncertaintyWeighting needs at least one loss name")
        if len(set(names)) != len(names):
            raise ValueError(f"UncertaintyWeighting names must be distinct, got {names}")
        self.names = list(names)
        self.regularizer = regularizer
        self.log_vars = nn.Parameter(torch.zeros(len(names)))  # (N,) the s_i

    def forward(self, losses: dict[str, Tensor]) -> Tensor:
        """Return the weighted total.

        Args:
            losses: one scalar tensor per name given at construction.

        Returns:
            A scalar tensor ``sum_i exp(-s_i) * L_i + regularizer * s_i``.
        """
        missing = [n for n in self.names if n not in losses]
        unknown = [n for n in losses if n not in self.names]
        if missing or unknown:
            raise KeyError(
                f"UncertaintyWeighting expects the losses {self.names}; missing {missing}, "
                f"unknown {unknown}"
            )
        total = self.log_vars.new_zeros(())
        for i, name in enumerate(self.names):
            s = self.log_vars[i]
            total = total + torch.exp(-s) * losses[name].float() + self.regularizer * s
        return total

    def values(self) -> dict[str, float]:
        """The current ``s_i = log sigma_i^2`` by name, for logging (weight = ``exp(-s_i)``)."""
        return {
            name: float(s) for name, s in zip(self.names, self.log_vars.detach().cpu(), strict=True)
        }

    def extra_repr(self) -> str:
        return f"names={self.names}, regularizer={self.regularizer}"
