"""The training step: forward, weighted loss terms, backward (native AMP), optimiser steps."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine
from torch import nn

from reidlab.losses.objective import Objective


def make_train_step(
    model: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    center_optimizer: torch.optim.Optimizer | None = None,
    center_weight: float = 1.0,
    scaler: torch.amp.GradScaler | None = None,
    amp: bool = False,
):
    """Build the ignite process function for one iteration.

    The center loss centres have their own SGD optimiser; their gradients are divided by
    ``center_weight`` before its step, so they move at the configured centre learning rate
    whatever the weight of the term (as in Luo et al., CVPRW 2019).

    Returns a function ``(engine, batch) -> dict`` with ``loss``, ``acc`` and each term.
    """
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)

    def step(engine: Engine, batch: Sequence[torch.Tensor]) -> dict[str, float]:
        model.train()
        images, pids = batch[0].to(device, non_blocking=True), batch[1].to(device)
        optimizer.zero_grad(set_to_none=True)
        if center_optimizer is not None:
            center_optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, enabled=amp):
            output = model(images, pids)
            loss, terms = objective(output, pids)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        if center_optimizer is not None:
            scaler.unscale_(center_optimizer)
            for group in center_optimizer.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad.mul_(1.0 / center_weight)
            scaler.step(center_optimizer)
        scaler.update()
        out = {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}
        if output.logits is not None:
            out["acc"] = (output.logits.argmax(1) == pids).float().mean().item()
        if objective.weighting is not None:
            out.update({f"s_{k}": v for k, v in objective.weighting.values().items()})
        return out

    return step
