"""Library side of ``reidlab models``: parameter counts and checkpoint checks."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reidlab.models.backbones.pretrained import LoadReport, load_pretrained
from reidlab.registry import BACKBONES


def parameter_count(name: str) -> int:
    """Parameters of the registered backbone ``name`` with its 1000-way ImageNet classifier.

    Counted as the public architectures are (torchvision, Cadene SENet, IBN-Net: every
    backbone here has a linear ImageNet classifier); buffers such as BatchNorm running
    statistics are not parameters. Built on the meta device, so nothing is allocated.
    """
    with torch.device("meta"):
        model = BACKBONES.get(name)(with_classifier=True)
    if not isinstance(model, nn.Module):
        raise TypeError(f"backbone builder {name!r} returned {type(model).__name__}")
    return sum(p.numel() for p in model.parameters())


def parameter_counts() -> dict[str, int]:
    """Map every registered backbone name to :func:`parameter_count`."""
    return {name: parameter_count(name) for name in BACKBONES.names()}


def check_checkpoint(name: str, path: str | Path) -> LoadReport:
    """Load the checkpoint at ``path`` (or URL) into a fresh ``name`` backbone and report.

    The backbone is built with its ImageNet classifier so that the checkpoint's classifier
    is checked too; ``report.ok`` is False if any backbone weight stays uninitialised or
    any checkpoint weight has no place. Shape mismatches and release/option mismatches
    raise ``ValueError``.
    """
    backbone = BACKBONES.get(name)(with_classifier=True)
    if not isinstance(backbone, nn.Module):
        raise TypeError(f"backbone builder {name!r} returned {type(backbone).__name__}")
    return load_pretrained(backbone, path)
