"""Distillation terms from a frozen teacher: ``ce_dist``, ``tr_dist`` and ``logit_dist``.

Learning without Forgetting (Li and Hoiem, "Learning without Forgetting", ECCV 2016 /
TPAMI 2017) keeps a model close to its earlier self by distilling the earlier model's
outputs on the new task's images. Three forms are offered, each an ordinary named term of
the objective (weighted, logged):

- ``ce_dist``: the researcher's notebook code (ArronHZG/reid-baseline, commit fc89c26,
  ``loss/cross_entropy_dist_loss.py``) distils the BNNeck *features*, not logits: softmax
  over the feature dimension of ``f / T`` for student and teacher, compared by binary
  cross-entropy averaged over batch x D (``form="bce"``). Before fc89c26 (from commit
  7bcccb9) it was the soft cross-entropy ``-(1/B) sum_b sum_j p_t log softmax(f_s / T)``
  (``form="soft_ce"``). No KL, no ``T^2`` factor.
- ``tr_dist``: triplet distillation (same code base, ``loss/triplet_dist_loss.py``): on
  L2-normalised pooled features, batch-hard mining is run for student and teacher
  separately, and each anchor pays ``max(0, max(d_ap^s, d_ap^t) - min(d_an^s, d_an^t) + m)``.
- ``logit_dist``: the textbook form, knowledge distillation of the old classes' logits
  (Hinton, Vinyals and Dean, "Distilling the Knowledge in a Neural Network", NIPS DL
  workshop 2015): ``T^2 KL(softmax(z_t / T) || softmax(z_s[:, :C_old] / T))``, batch mean.

The task module (:class:`reidlab.engine.task.ReIDTask`) runs the teacher and hands its
output to the terms through :class:`DistillOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlab.losses.objective import LossTerm
from reidlab.losses.triplet import euclidean_dist, hard_example_mining
from reidlab.models.reid import ReIDOutput

_LOG_FLOOR = -100.0  # torch's BCELoss clamps log() at -100; the notebook's code used it


@dataclass
class DistillOutput(ReIDOutput):
    """The student's output with the frozen teacher's output on the same images."""

    teacher: ReIDOutput | None = None


def with_teacher(student: ReIDOutput, teacher: ReIDOutput) -> DistillOutput:
    """``student`` carrying ``teacher`` (detached) for the distillation terms."""
    values = {f.name: getattr(student, f.name) for f in fields(ReIDOutput)}
    detached = ReIDOutput(
        teacher.global_feat.detach(), teacher.feat.detach(),
        teacher.logits.detach() if teacher.logits is not None else None)
    return DistillOutput(**values, teacher=detached)


def ce_dist(student: Tensor, teacher: Tensor, temperature: float,
            form: Literal["bce", "soft_ce"] = "bce") -> Tensor:
    """Feature distillation of the notebook's code (see the module docstring).

    Args:
        student: (B, D) student features (after the BNNeck).
        teacher: (B, D) teacher features, no gradient needed.
        temperature: T; both features are divided by it before the softmax over D.
        form: ``"bce"`` (commit fc89c26) or ``"soft_ce"`` (commits 7bcccb9 .. 76b13f5).

    Returns:
        A scalar: mean binary cross-entropy over B x D, or the soft cross-entropy
        averaged over B. Either is smallest when the two softmaxes agree.
    """
    if student.shape != teacher.shape or student.ndim != 2:
        raise ValueError(f"ce_dist expects two (B, D) tensors of one shape, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    p_t = F.softmax(teacher.float() / temperature, dim=1)
    if form == "soft_ce":
        return -(p_t * F.log_softmax(student.float() / temperature, dim=1)).sum(1).mean()
    p_s = F.softmax(student.float() / temperature, dim=1)
    log_s = torch.log(p_s).clamp(min=_LOG_FLOOR)
    log_not_s = torch.log1p(-p_s).clamp(min=_LOG_FLOOR)
    return -(p_t * log_s + (1.0 - p_t) * log_not_s).mean()


def tr_dist(student: Tensor, teacher: Tensor, labels: Tensor, margin: float = 0.3) -> Tensor:
    """Triplet distillation of the notebook's code (see the module docstring).

    Args:
        student: (B, D) student pooled features (before the BNNeck).
        teacher: (B, D) teacher pooled features.
        labels: (B,) identities of the batch (PK sampled).
        margin: m (0.3 in the notebook's code).

    Returns:
        A scalar: the mean over anchors of the hinge. With ``student == teacher`` it is
        the batch-hard triplet loss on L2-normalised features.
    """
    s = F.normalize(student.float(), dim=1)
    t = F.normalize(teacher.float(), dim=1)
    ap_s, an_s = hard_example_mining(euclidean_dist(s, s), labels)
    ap_t, an_t = hard_example_mining(euclidean_dist(t, t), labels)
    hardest_ap = torch.maximum(ap_s, ap_t)  # (B,)
    hardest_an = torch.minimum(an_s, an_t)  # (B,)
    return F.relu(hardest_ap - hardest_an + margin).mean()


def logit_dist(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Knowledge distillation of the old classes' logits (Hinton et al. 2015).

    Args:
        student: (B, C_new_total) student logits; its first ``C_old`` columns are the old
            classes (a classifier grown by the new identities keeps the old rows first).
        teacher: (B, C_old) teacher logits.
        temperature: T.

    Returns:
        ``T^2 * KL(p_t || p_s)`` averaged over the batch; zero when the old logits agree.
    """
    old = teacher.shape[1]
    if student.ndim != 2 or teacher.ndim != 2 or student.shape[1] < old:
        raise ValueError(f"logit_dist: student logits {tuple(student.shape)} do not cover the "
                         f"teacher's {old} classes (continual.classifier must be 'grow')")
    log_p_s = F.log_softmax(student[:, :old].float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher.float() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1).mean()
    return kl * temperature ** 2


def _teacher_of(output: ReIDOutput, term: str) -> ReIDOutput:
    teacher = getattr(output, "teacher", None)
    if teacher is None:
        raise ValueError(f"loss.{term} needs a teacher: it is a term of continual learning "
                         "(mode: continual, continual.method: lwf), from the second task on")
    return teacher


def distill_terms(ce_weight: float, tr_weight: float, logit_weight: float,
                  temperature: float, margin: float,
                  form: Literal["bce", "soft_ce"] = "bce") -> list[LossTerm]:
    """The distillation terms whose weight is positive, as objective terms named
    ``ce_dist``, ``tr_dist`` and ``logit_dist`` (fixed weights, never learned)."""
    terms = []
    if ce_weight > 0:
        terms.append(LossTerm("ce_dist", lambda out, y: ce_dist(
            out.feat, _teacher_of(out, "ce_dist").feat, temperature, form),
            ce_weight, learned=False))
    if tr_weight > 0:
        terms.append(LossTerm("tr_dist", lambda out, y: tr_dist(
            out.global_feat, _teacher_of(out, "tr_dist").global_feat, y, margin),
            tr_weight, learned=False))
    if logit_weight > 0:
        def logits(out: ReIDOutput, y: Tensor) -> Tensor:
            teacher = _teacher_of(out, "logit_dist")
            if out.logits is None or teacher.logits is None:
                raise ValueError("loss.logit_dist needs the classifiers of student and teacher "
                                 "(continual.classifier: grow)")
            return logit_dist(out.logits, teacher.logits, temperature)

        terms.append(LossTerm("logit_dist", logits, logit_weight, learned=False))
    return terms
