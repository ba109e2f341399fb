"""A new task's student and teacher from the previous task's model.

The student keeps every weight of the previous model but its classifier, which is
``replace``d by a fresh one for the new task's identities (the notebook's code: the old
rows are dropped) or ``grow``n by them, the old rows kept first and unchanged (Li and
Hoiem, "Learning without Forgetting", ECCV 2016: the old task's head stays and the new
task's head is added). The teacher is a frozen copy of the previous model.
"""

from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn

from reidlab.models.reid import ReIDModel


def class_weight(classifier: nn.Module) -> nn.Parameter:
    """The (C, D) class-weight matrix of a linear or ArcFace classifier.

    Raises:
        TypeError: the classifier has no such weight.
    """
    weight = getattr(getattr(classifier, "fc", classifier), "weight", None)
    if not isinstance(weight, nn.Parameter) or weight.ndim != 2:
        raise TypeError(f"{type(classifier).__name__} has no (C, D) class weight to grow")
    return weight


def start_student(student: ReIDModel, previous: ReIDModel,
                  classifier: Literal["replace", "grow"]) -> None:
    """Copy ``previous`` into ``student`` (built for the new number of classes) in place.

    Everything but the classifier is copied. ``replace`` leaves the student's freshly
    initialised classifier; ``grow`` needs one with ``C_old + C_new`` rows and copies the
    ``C_old`` old rows into its first rows, bit for bit.

    Raises:
        ValueError: ``grow`` with a student classifier smaller than the previous one.
    """
    state = {k: v for k, v in previous.state_dict().items() if not k.startswith("classifier.")}
    missing, unexpected = student.load_state_dict(state, strict=False)
    left = [k for k in missing + unexpected if not k.startswith("classifier.")]
    if left:
        raise RuntimeError(f"the previous task's model does not fit the student: {left[:5]}")
    if classifier == "replace":
        return
    if previous.classifier is None or student.classifier is None:
        raise ValueError("continual.classifier grow needs a classifier in both models")
    old, new = class_weight(previous.classifier), class_weight(student.classifier)
    if new.shape[0] < old.shape[0] or new.shape[1] != old.shape[1]:
        raise ValueError(f"continual.classifier grow: the new classifier {tuple(new.shape)} "
                         f"cannot hold the old rows {tuple(old.shape)}")
    with torch.no_grad():
        new[: old.shape[0]].copy_(old)


def make_teacher(previous: ReIDModel, classifier: Literal["replace", "grow"]) -> ReIDModel:
    """A frozen copy of ``previous`` in eval mode; without its classifier for ``replace``
    (the notebook's teacher), with it for ``grow`` (its logits are distilled)."""
    teacher = copy.deepcopy(previous)
    if classifier == "replace":
        teacher.classifier = None
    return teacher.requires_grad_(False).eval()
