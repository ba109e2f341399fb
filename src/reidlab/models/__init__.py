"""Models: the ResNet-family backbones (heads and the re-ID model live beside them)."""

from reidlab.models.backbones import (
    LoadReport,
    ResNet,
    build_backbone,
    check_checkpoint,
    load_pretrained,
    parameter_counts,
)

__all__ = [
    "LoadReport",
    "ResNet",
    "build_backbone",
    "check_checkpoint",
    "load_pretrained",
    "parameter_counts",
]
