"""ResNet-family backbones (ResNet, ResNeXt, SE, IBN-a/b), registered in ``BACKBONES``."""

from reidlab.models.backbones.inventory import check_checkpoint, parameter_count, parameter_counts
from reidlab.models.backbones.pretrained import LoadReport, build_backbone, load_pretrained
from reidlab.models.backbones.resnet import ResNet

__all__ = [
    "LoadReport",
    "ResNet",
    "build_backbone",
    "check_checkpoint",
    "load_pretrained",
    "parameter_count",
    "parameter_counts",
]
