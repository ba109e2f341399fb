"""The task module: everything trainable in one ``nn.Module``, and its optimisers as data.

A :class:`ReIDTask` owns the model, the objective (with the center-loss centres and the
learned loss weights) and, for a mode that needs one, a frozen teacher that is never
trained. It maps a :class:`Batch` to the loss, its named terms and what the step logs, so
that every mode trains through the same step (:mod:`reidlab.engine.trainer`) and a
distributed run wraps this one module.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from reidlab.config import Config
from reidlab.engine.checkpoint import CheckpointError, read_state
from reidlab.engine.optim import build_optimizer, warmup_multistep
from reidlab.engine.rundir import BEST_PREFIX, CHECKPOINT_PREFIX, resolve_checkpoint
from reidlab.losses.distill import with_teacher
from reidlab.losses.objective import Objective, build_objective, uses_arcface
from reidlab.models.build import build_model
from reidlab.models.reid import ReIDModel, ReIDOutput

log = logging.getLogger("reidlab")


@dataclass
class Batch:
    """One training batch.

    Attributes:
        images: (B, 3, H, W) normalised images.
        targets: label sets by name, each (B,); supervised training has ``"pid"``, a mode
            with several label sets (SSG's parts) adds its own.
        camids: (B,) camera ids.
        index: (B,) positions of the images in the training records.
    """

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    camids: torch.Tensor
    index: torch.Tensor

    @classmethod
    def from_loader(cls, raw: Batch | Sequence[torch.Tensor]) -> Batch:
        """A batch from the loader's ``(images, pids, camids, index)`` tuple."""
        if isinstance(raw, Batch):
            return raw
        images, pids, camids, index = raw
        return cls(images, {"pid": torch.as_tensor(pids)}, torch.as_tensor(camids),
                   torch.as_tensor(index))

    def to(self, device: torch.device) -> Batch:
        return Batch(self.images.to(device, non_blocking=True),
                     {k: v.to(device) for k, v in self.targets.items()},
                     self.camids.to(device), self.index.to(device))


@dataclass
class TaskOutput:
    """What the task gives for one batch: the loss to minimise, its unweighted terms, the
    model's output, and extra scalars to log (accuracy, learned weights)."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    output: ReIDOutput
    logs: dict[str, float] = field(default_factory=dict)


class ReIDTask(nn.Module):
    """Model + objective (+ teacher); ``forward(batch) -> TaskOutput``.

    Args:
        model: the trained model.
        objective: the weighted loss terms, owning the centres and learned weights.
        teacher: a model whose outputs a distillation term reads; kept in eval mode, its
            parameters frozen and outside every optimiser.
    """

    def __init__(self, model: ReIDModel, objective: Objective,
                 teacher: ReIDModel | None = None) -> None:
        super().__init__()
        self.model = model
        self.objective = objective
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> ReIDTask:
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # a teacher's BN statistics never move
        return self

    def forward(self, batch: Batch) -> TaskOutput:
        pids = batch.targets["pid"]
        output = self.model(batch.images, pids)
        if self.teacher is not None:  # the distillation terms read its outputs
            with torch.no_grad():
                output = with_teacher(output, self.teacher(batch.images))
        loss, terms = self.objective(output, pids)
        logs = {}
        if output.logits is not None:
            logs["acc"] = (output.logits.argmax(1) == pids).float().mean().item()
        if self.objective.weighting is not None:
            logs.update({f"s_{k}": v for k, v in self.objective.weighting.values().items()})
        return TaskOutput(loss, terms, output, logs)

    def log_keys(self) -> list[str]:
        """The step outputs a progress bar shows: the loss, each term and the accuracy."""
        keys = ["loss", *[t.name for t in self.objective.terms]]
        if self.model.classifier is not None:
            keys.append("acc")
        return keys


@dataclass
class OptimizerSlot:
    """One optimiser of a task and how the step and the schedule treat it.

    Attributes:
        name: its key in checkpoints (``optimizer_<name>``) and logs.
        optimizer: the torch optimiser.
        grad_scale: gradients are multiplied by this before the optimiser steps (the
            center-loss centres: 1 / center_weight, so that they move at their own lr
            whatever the weight of the term; Luo et al., CVPRW 2019).
        schedule: learning-rate factor of a 1-based epoch, applied to every group's base
            lr when the epoch starts; ``None`` keeps the lr constant.
    """

    name: str
    optimizer: torch.optim.Optimizer
    grad_scale: float = 1.0
    schedule: Callable[[int], float] | None = None
    base_lrs: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]

    def set_epoch(self, epoch: int) -> None:
        """Set the learning rates for the 1-based ``epoch`` that starts."""
        if self.schedule is None:
            return
        factor = self.schedule(epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor


def build_task(cfg: Config, num_classes: int) -> ReIDTask:
    """The supervised task for ``num_classes`` training identities, weights from
    ``model.weights`` when given."""
    model = build_model(cfg.model, num_classes, arcface=uses_arcface(cfg.loss.name),
                        loss=cfg.loss)
    if cfg.model.weights:
        load_model_weights(model, cfg.model.weights)
    objective = build_objective(cfg.loss, num_classes, model.feat_dim)
    return ReIDTask(model, objective)


def build_optimizers(cfg: Config, task: ReIDTask) -> list[OptimizerSlot]:
    """The main optimiser over the model, scheduled by the warm-up multi-step rule; the
    learned loss weights in it (no weight decay) or in their own SGD
    (``loss.weight_solver``); the centres' own SGD, unscheduled."""
    heads = [(f"objective.{i}", p) for i, p in enumerate(task.objective.head_parameters())]
    main = build_optimizer([*task.model.named_parameters(), *heads], cfg.solver)
    slots = [OptimizerSlot("main", main, schedule=warmup_multistep(cfg.solver))]
    weighting, ws = task.objective.weighting, cfg.loss.weight_solver
    if weighting is not None and ws.lr is None:
        main.add_param_group({"params": list(weighting.parameters()),
                              "lr": cfg.solver.lr, "weight_decay": 0.0})
    elif weighting is not None and ws.lr is not None:
        sgd = torch.optim.SGD(weighting.parameters(), lr=ws.lr, momentum=ws.momentum,
                              weight_decay=ws.weight_decay, nesterov=ws.nesterov)
        slots.append(OptimizerSlot("weights", sgd, schedule=_exponential(ws.gamma)))
    centers = [p for m in task.objective.center_modules() for p in m.parameters()]
    if centers:
        cs = cfg.loss.center_solver
        sgd = torch.optim.SGD(centers, lr=cfg.loss.center_lr, momentum=cs.momentum,
                              weight_decay=cs.weight_decay, nesterov=cs.nesterov)
        slots.append(OptimizerSlot("center", sgd, grad_scale=1.0 / cfg.loss.center_weight,
                                   schedule=_exponential(cs.gamma)))
    return slots


def _exponential(gamma: float) -> Callable[[int], float] | None:
    """lr factor gamma ** (epoch - 1): ExponentialLR stepped after every epoch."""
    if gamma == 1.0:
        return None
    return lambda epoch: float(gamma ** (epoch - 1))


def load_model_weights(model: nn.Module, path: str | Path) -> Path:
    """Load reidlab model weights from a checkpoint file or a run directory (its best
    model, else its last training state), read with ``weights_only=True``.

    The classifier may differ (another dataset's identities); anything else must fit.
    """
    source = Path(path)
    if source.is_dir():
        try:
            source = resolve_checkpoint(source, BEST_PREFIX)
        except FileNotFoundError:
            source = resolve_checkpoint(source, CHECKPOINT_PREFIX)
    if not source.is_file():
        raise FileNotFoundError(f"model.weights: {path} is neither a checkpoint nor a run dir")
    state = read_state(source, "model.weights checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"{source} holds an object of type {type(state).__name__}, "
                              "not model weights")
    if "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} (model: {tuple(own[k].shape)})" for k, v in state.items()
             if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape
             and not k.startswith("classifier.")]
    if wrong:
        raise CheckpointError(f"{source} does not fit the model (another backbone?): "
                              f"{len(wrong)} tensors of other shapes: {', '.join(wrong[:10])}")
    state = {k: v for k, v in state.items() if not (k in own and v.shape != own[k].shape)}
    missing, unexpected = model.load_state_dict(state, strict=False)
    classifier_only = all(k.startswith("classifier.") for k in missing + unexpected)
    if (missing or unexpected) and not classifier_only:
        raise CheckpointError(
            f"{source} does not fit the model (another backbone?): {len(missing)} keys "
            f"missing {missing[:10]}, {len(unexpected)} unexpected {unexpected[:10]}")
    log.info("loaded model weights from %s", source)
    return source
