"""The training objective: named loss terms, picked from the loss name, weighted and logged.

A loss name such as ``softmax_triplet_center`` is split on ``_``; each token names a term
builder in :data:`reidlab.registry.LOSSES`. ``arcface`` either swaps the linear classifier
for ArcFace, the ``softmax`` term then reading ArcFace's logits (``loss.arcface_head:
replace``), or adds an ArcFace head of its own beside the linear classifier and an
``arcface`` term, plain cross entropy on its logits (``extra``, the notebook's code).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from reidlab.config import LossConfig
from reidlab.losses.center import CenterLoss
from reidlab.losses.softmax import CrossEntropyLabelSmooth
from reidlab.losses.triplet import TripletLoss
from reidlab.losses.weighting import UncertaintyWeighting
from reidlab.models.arcface import ArcFace
from reidlab.models.reid import ReIDOutput
from reidlab.registry import LOSSES

MODIFIERS = {"arcface"}  # tokens that change the model, not the list of terms


@dataclass
class LossTerm:
    """One weighted term: ``weight * fn(output, targets)``.

    ``module`` holds the term's own parameters (center loss centres), if any; ``learned``
    says whether uncertainty weighting may rescale the term.
    """

    name: str
    fn: Callable[[ReIDOutput, torch.Tensor], torch.Tensor]
    weight: float = 1.0
    module: nn.Module | None = None
    learned: bool = True


def _logits(output: ReIDOutput) -> torch.Tensor:
    if output.logits is None:
        raise ValueError("the softmax loss needs a classifier, but the model has none")
    return output.logits


@LOSSES.register("softmax")
def softmax_term(cfg: LossConfig, num_classes: int, feat_dim: int) -> LossTerm:
    if cfg.label_smooth > 0:
        ce: nn.Module = CrossEntropyLabelSmooth(num_classes, epsilon=cfg.label_smooth)
    else:
        ce = nn.CrossEntropyLoss()
    return LossTerm("id", lambda out, y: ce(_logits(out), y), cfg.id_loss_weight)


@LOSSES.register("triplet")
def triplet_term(cfg: LossConfig, num_classes: int, feat_dim: int) -> LossTerm:
    triplet = TripletLoss(
        margin=cfg.triplet_margin, soft_margin=cfg.soft_margin, variant=cfg.triplet_variant,
        normalize_feature=cfg.triplet_normalize,
    )
    return LossTerm(
        "triplet", lambda out, y: triplet(out.global_feat, y).loss, cfg.metric_loss_weight
    )


@LOSSES.register("center")
def center_term(cfg: LossConfig, num_classes: int, feat_dim: int) -> LossTerm:
    center = CenterLoss(num_classes, feat_dim, distance=cfg.center_distance)
    return LossTerm(
        "center", lambda out, y: center(out.global_feat, y), cfg.center_weight, center, False
    )


def arcface_term(cfg: LossConfig, num_classes: int, feat_dim: int) -> LossTerm:
    """The extra ArcFace head on the neck feature (Deng et al., CVPR 2019), plain cross
    entropy. ``cfg.arcface_frozen`` keeps its class weights at their random start, as in
    the notebook's code, where they were in no optimiser."""
    head = ArcFace(feat_dim, num_classes, scale=cfg.arcface_scale, margin=cfg.arcface_margin)
    head.requires_grad_(not cfg.arcface_frozen)
    ce = nn.CrossEntropyLoss()
    return LossTerm("arcface", lambda out, y: ce(head(out.feat, y), y), 1.0, head)


def loss_tokens(name: str) -> list[str]:
    """The tokens of a loss name, validated against the registry."""
    tokens = [t for t in name.split("_") if t]
    if not tokens:
        raise ValueError("loss.name is empty")
    for token in tokens:
        if token not in LOSSES and token not in MODIFIERS:
            LOSSES.get(token)  # raises with the nearest known name
    if "arcface" in tokens and "softmax" not in tokens:
        raise ValueError(f"loss.name {name!r}: arcface needs the softmax term")
    return tokens


def uses_arcface(name: str) -> bool:
    """Whether ``name`` asks for ArcFace (as the classifier or as an extra head)."""
    return "arcface" in loss_tokens(name)


class Objective(nn.Module):
    """Sum of weighted loss terms. ``weighting="uncertainty"`` scales each learnable term by
    exp(-s_i) and adds s_i (Kendall, Gal and Cipolla, CVPR 2018); ``"notebook_id"`` learns
    one s on the ID term only, exp(-s) * CE + 0.5 * s, every other term keeping its fixed
    weight (the notebook's "learning weight")."""

    def __init__(self, terms: list[LossTerm], weighting: str = "fixed") -> None:
        super().__init__()
        self.terms = terms
        self.term_modules = nn.ModuleDict({t.name: t.module for t in terms if t.module})
        if weighting == "notebook_id":  # one s on the ID term, exp(-s) CE + 0.5 s
            learned, regularizer = [t.name for t in terms if t.name == "id"], 0.5
        else:
            learned, regularizer = [t.name for t in terms if t.learned], 1.0
        self.weighting = (UncertaintyWeighting(learned, regularizer)
                          if weighting != "fixed" and learned else None)
        self.learned = set(learned) if self.weighting is not None else set()

    def add_term(self, term: LossTerm) -> None:
        """Add a term (distillation, for instance) after construction."""
        self.terms.append(term)
        if term.module is not None:
            self.term_modules[term.name] = term.module

    def forward(
        self, output: ReIDOutput, targets: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = {t.name: t.fn(output, targets) for t in self.terms}
        if self.weighting is not None:
            learned = {t.name: values[t.name] for t in self.terms if t.name in self.learned}
            total = self.weighting(learned)
            fixed = [t.weight * values[t.name] for t in self.terms if t.name not in self.learned]
        else:
            total = torch.zeros((), device=targets.device)
            fixed = [t.weight * values[t.name] for t in self.terms]
        for value in fixed:
            total = total + value
        return total, values

    def center_modules(self) -> list[nn.Module]:
        return [t.module for t in self.terms if t.name == "center" and t.module is not None]

    def head_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the terms' own heads (not the centres, which have their
        own optimiser): they train with the model."""
        return [p for t in self.terms if t.module is not None and t.name != "center"
                for p in t.module.parameters() if p.requires_grad]


def build_objective(cfg: LossConfig, num_classes: int, feat_dim: int) -> Objective:
    """Terms named by ``cfg.name``, in the order given."""
    tokens = loss_tokens(cfg.name)
    terms = [LOSSES.get(t)(cfg, num_classes, feat_dim) for t in tokens if t not in MODIFIERS]
    if "arcface" in tokens and cfg.arcface_head == "extra":
        terms.append(arcface_term(cfg, num_classes, feat_dim))
    return Objective(terms, weighting=cfg.weighting)
