"""Optimisers and the warm-up multi-step learning-rate schedule of the BoT recipe."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable

import torch
from torch import nn

from reidlab.config import SolverConfig


def param_groups(named: Iterable[tuple[str, nn.Parameter]], cfg: SolverConfig) -> list[dict]:
    """One group per trainable parameter; biases get ``bias_lr_factor`` and
    ``weight_decay_bias`` as in the BoT code."""
    groups = []
    for name, param in named:
        if not param.requires_grad:
            continue
        is_bias = name.endswith("bias")
        groups.append(
            {
                "params": [param],
                "lr": cfg.lr * (cfg.bias_lr_factor if is_bias else 1.0),
                "weight_decay": cfg.weight_decay_bias if is_bias else cfg.weight_decay,
            }
        )
    return groups


def build_optimizer(
    named: Iterable[tuple[str, nn.Parameter]], cfg: SolverConfig
) -> torch.optim.Optimizer:
    groups = param_groups(named, cfg)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    return torch.optim.Adam(groups, lr=cfg.lr)


def warmup_multistep(cfg: SolverConfig) -> Callable[[int], float]:
    """Learning-rate factor of the 1-based epoch ``e`` that starts: linear warm-up from
    ``warmup_factor`` over ``warmup_epochs``, then ``gamma`` at each milestone (Goyal et al.
    2017; Luo et al., CVPRW 2019).

    reid-strong-baseline's ``WarmupMultiStepLR`` is stepped when each epoch starts, so epoch
    ``e`` trains at the factor of ``e``: with the defaults, epoch 1 at 0.01 + 0.99 x 1/10 =
    0.109, epochs 10-39 at 1, 40-69 at 0.1, 70 and later at 0.01.
    """
    milestones = sorted(cfg.milestones)

    def factor(epoch: int) -> float:
        warm = 1.0
        if epoch < cfg.warmup_epochs:
            alpha = epoch / cfg.warmup_epochs
            warm = cfg.warmup_factor * (1 - alpha) + alpha
        return warm * cfg.gamma ** bisect_right(milestones, epoch)

    return factor
