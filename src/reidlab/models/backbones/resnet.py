"""One ResNet class whose keyword options make ResNet, ResNeXt, SE and IBN variants.

Architectures: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016;
Xie et al., "Aggregated Residual Transformations for Deep Neural Networks" (ResNeXt),
CVPR 2017; Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018; Pan et al., "Two at
Once: Enhancing Learning and Generalization Capacities via IBN-Net", ECCV 2018.

Each registered name picks the options of the public release of that name, so that its
checkpoint computes the same function here (see ``pretrained.py`` for the key mapping):

* ``resnet*``, ``resnext101_32x8d``: torchvision (stride in the 3x3 conv, padded max-pool).
* ``ibn_a_*``, ``ibn_b_*``: IBN-Net v1.0 release (torchvision conventions plus IN).
* ``se_resnet50``, ``se_resnet101``: Cadene's SENet release, converted from Caffe: stride
  in the first 1x1 conv, ``ceil_mode`` max-pool without padding, SE with biases.
* ``se_resnext101_32x8d``: no public release; Cadene's SE-ResNeXt conventions (stride in
  the 3x3 conv, ``ceil_mode`` max-pool, SE with biases).
* ``se_ibn_a_*``, ``se_ibn_b_*``: IBN-Net's SE-ResNet-IBN code (torchvision conventions, SE
  without biases); its one release is SE-ResNet-101-IBN-a.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from reidlab.models.backbones.layers import BasicBlock, Bottleneck, StrideIn
from reidlab.registry import BACKBONES

BlockType = Literal["basic", "bottleneck"]
IBNType = Literal["a", "b"]


class ResNet(nn.Module):
    """ResNet / ResNeXt backbone with optional SE and IBN-a / IBN-b, returning the last map.

    IBN-a (Pan et al., ECCV 2018) replaces ``bn1`` of every block of layer1-3 (first block
    included, layer4 excluded) by :class:`~reidlab.models.backbones.layers.IBN` (IN on the
    first half of the channels). IBN-b puts an affine InstanceNorm in place of the stem's
    ``bn1`` and after the residual sum of the last block of layer1 and layer2 (never the
    first block of a layer, as in the public code); ``ibn_b_blocks="all"`` puts it after the
    sum of every block of layer1 and layer2 (the notebook's code). SE modules gate every
    block's branch output before the sum; with IBN both apply.

    Args:
        block: ``"basic"`` (ResNet-18/34) or ``"bottleneck"``.
        layers: blocks in layer1..layer4.
        groups: groups of the bottleneck 3x3 convolution (ResNeXt cardinality).
        width_per_group: bottleneck width per group at planes = 64.
        base_width: channels of the stem and of layer1; layer i has ``base_width * 2**i``
            planes (64 in every published ResNet; smaller for CPU-sized experiments).
        se: add Squeeze-and-Excitation to every block.
        se_reduction: SE reduction ratio.
        se_bias: SE layers with biases (Cadene SENet) or without (IBN-Net SE-ResNet-IBN).
        ibn: None, ``"a"`` or ``"b"``.
        ibn_b_blocks: ``"last"`` (IBN-Net) or ``"all"`` blocks of layer1-2 get IBN-b's IN.
        last_stride: stride of layer4 (1 keeps H/16, the re-ID convention; 2 gives H/32).
        stride_in: bottleneck convolution carrying the stride, ``"conv2"`` (torchvision,
            IBN-Net) or ``"conv1"`` (Caffe SE-ResNet release).
        stem_pool_ceil_mode: stem max-pool ``MaxPool2d(3, 2, ceil_mode=True)`` without
            padding (Caffe-converted SENet) instead of ``MaxPool2d(3, 2, padding=1)``.
        zero_init_residual: start the last batch norm of every residual branch (``bn3``
            of a bottleneck, ``bn2`` of a basic block) with zero scale, so that each block
            begins as the identity (Goyal et al., "Accurate, Large Minibatch SGD", 2017,
            section 5.1). For training from scratch; pretrained weights replace it.
        with_classifier: add the 1000-way ImageNet ``fc`` (parameter counts, ``classify``);
            never used by :meth:`forward`.
        num_classes: outputs of ``fc``.

    Shape:
        forward: (B, 3, H, W) -> (B, C, H/16, W/16) with last_stride 1, (B, C, H/32, W/32)
        with 2 (ceil division), C = ``out_channels`` (512 basic, 2048 bottleneck).
    """

    def __init__(
        self,
        *,
        block: BlockType = "bottleneck",
        layers: tuple[int, int, int, int] = (3, 4, 6, 3),
        groups: int = 1,
        width_per_group: int = 64,
        base_width: int = 64,
        se: bool = False,
        se_reduction: int = 16,
        se_bias: bool = True,
        ibn: IBNType | None = None,
        ibn_b_blocks: Literal["last", "all"] = "last",
        last_stride: int = 2,
        stride_in: StrideIn = "conv2",
        stem_pool_ceil_mode: bool = False,
        zero_init_residual: bool = False,
        with_classifier: bool = False,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if block not in ("basic", "bottleneck"):
            raise ValueError(f"block must be 'basic' or 'bottleneck', got {block!r}")
        if ibn not in (None, "a", "b"):
            raise ValueError(f"ibn must be None, 'a' or 'b', got {ibn!r}")
        if ibn_b_blocks not in ("last", "all"):
            raise ValueError(f"ibn_b_blocks must be 'last' or 'all', got {ibn_b_blocks!r}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers must be four positive block counts, got {layers!r}")
        if block == "basic" and (groups != 1 or width_per_group != 64):
            raise ValueError("basic blocks support only groups=1, width_per_group=64")
        self.block, self.layers, self.groups = block, tuple(layers), groups
        self.ibn, self.se, self.stride_in = ibn, se, stride_in
        self.stem_pool_ceil_mode = stem_pool_ceil_mode
        self.last_stride = last_stride
        expansion = Bottleneck.expansion if block == "bottleneck" else BasicBlock.expansion

        self.conv1 = nn.Conv2d(3, base_width, 7, 2, 3, bias=False)
        self.bn1: nn.Module = (
            nn.InstanceNorm2d(base_width, affine=True)
            if ibn == "b"
            else nn.BatchNorm2d(base_width)
        )
        pad = 0 if stem_pool_ceil_mode else 1
        self.maxpool = nn.MaxPool2d(3, 2, padding=pad, ceil_mode=stem_pool_ceil_mode)

        block_cls: type[BasicBlock | Bottleneck] = BasicBlock
        shared: dict[str, Any] = dict(se=se, se_reduction=se_reduction, se_bias=se_bias)
        if block == "bottleneck":
            block_cls = Bottleneck
            shared.update(groups=groups, width_per_group=width_per_group, stride_in=stride_in)
        in_channels = base_width
        stages: list[nn.Sequential] = []
        widths = [base_width * 2**i for i in range(4)]
        config = zip(widths, layers, (1, 2, 2, last_stride), strict=True)
        for i, (planes, n, stride) in enumerate(config):
            out_channels = planes * expansion
            blocks: list[nn.Module] = []
            for j in range(n):
                downsample = None
                if j == 0 and (stride != 1 or in_channels != out_channels):
                    downsample = nn.Sequential(
                        nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                        nn.BatchNorm2d(out_channels),
                    )
                ibn_a = ibn == "a" and i < 3
                in_after_add = ibn == "b" and i < 2 and (
                    ibn_b_blocks == "all" or 0 < j == n - 1)
                blocks.append(
                    block_cls(
                        in_channels,
                        planes,
                        stride if j == 0 else 1,
                        downsample,
                        ibn_a=ibn_a,
                        in_after_add=in_after_add,
                        **shared,
                    )
                )
                in_channels = out_channels
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = in_channels
        self.fc = nn.Linear(in_channels, num_classes) if with_classifier else None
        self._init_weights()
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck | BasicBlock):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck) else m.bn2.weight)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.InstanceNorm2d) and m.affine:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map images (B, 3, H, W) to the last feature map (B, out_channels, h, w)."""
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, 64 * e, H/4, W/4)
        x = self.layer2(x)  # (B, 128 * e, H/8, W/8)
        x = self.layer3(x)  # (B, 256 * e, H/16, W/16)
        return self.layer4(x)  # (B, 512 * e, H/16 or H/32, ...)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (B, num_classes): global average pool of ``forward`` then ``fc``."""
        if self.fc is None:
            raise RuntimeError("built without a classifier; pass with_classifier=True")
        return self.fc(self.forward(x).mean(dim=(2, 3)))


# Depths and widths.
_R18: dict[str, Any] = dict(block="basic", layers=(2, 2, 2, 2))
_R34: dict[str, Any] = dict(block="basic", layers=(3, 4, 6, 3))
_R50: dict[str, Any] = dict(block="bottleneck", layers=(3, 4, 6, 3))
_R101: dict[str, Any] = dict(block="bottleneck", layers=(3, 4, 23, 3))
_X101: dict[str, Any] = dict(_R101, groups=32, width_per_group=8)
# Release conventions (see the module docstring).
_SE_CAFFE: dict[str, Any] = dict(se=True, stride_in="conv1", stem_pool_ceil_mode=True)
_SE_NEXT: dict[str, Any] = dict(se=True, stem_pool_ceil_mode=True)
_A: dict[str, Any] = dict(ibn="a")
_B: dict[str, Any] = dict(ibn="b")
_SE_A: dict[str, Any] = dict(ibn="a", se=True, se_bias=False)
_SE_B: dict[str, Any] = dict(ibn="b", se=True, se_bias=False)


def _build(*parts: dict[str, Any], **kwargs: Any) -> ResNet:
    options: dict[str, Any] = {}
    for part in (*parts, kwargs):
        options.update(part)
    return ResNet(**options)


# Each builder takes ResNet's keyword arguments (last_stride, with_classifier, overrides).
@BACKBONES.register("resnet18")
def resnet18(**kw: Any) -> ResNet:
    return _build(_R18, **kw)


@BACKBONES.register("resnet18_w32")
def resnet18_w32(**kw: Any) -> ResNet:
    """ResNet-18 at half width (32 stem channels, 256 output channels): a CPU-sized network
    trained from scratch by the synthetic configs; no public weights exist for it."""
    return _build(_R18, {"base_width": 32}, **kw)  # model.width, if given, wins


@BACKBONES.register("resnet34")
def resnet34(**kw: Any) -> ResNet:
    return _build(_R34, **kw)


@BACKBONES.register("resnet50")
def resnet50(**kw: Any) -> ResNet:
    return _build(_R50, **kw)


@BACKBONES.register("se_resnet50")
def se_resnet50(**kw: Any) -> ResNet:
    return _build(_R50, _SE_CAFFE, **kw)


@BACKBONES.register("ibn_a_resnet50")
def ibn_a_resnet50(**kw: Any) -> ResNet:
    return _build(_R50, _A, **kw)


@BACKBONES.register("ibn_b_resnet50")
def ibn_b_resnet50(**kw: Any) -> ResNet:
    return _build(_R50, _B, **kw)


@BACKBONES.register("se_ibn_a_resnet50")
def se_ibn_a_resnet50(**kw: Any) -> ResNet:
    return _build(_R50, _SE_A, **kw)


@BACKBONES.register("se_ibn_b_resnet50")
def se_ibn_b_resnet50(**kw: Any) -> ResNet:
    return _build(_R50, _SE_B, **kw)


@BACKBONES.register("resnet101")
def resnet101(**kw: Any) -> ResNet:
    return _build(_R101, **kw)


@BACKBONES.register("se_resnet101")
def se_resnet101(**kw: Any) -> ResNet:
    return _build(_R101, _SE_CAFFE, **kw)


@BACKBONES.register("ibn_a_resnet101")
def ibn_a_resnet101(**kw: Any) -> ResNet:
    return _build(_R101, _A, **kw)


@BACKBONES.register("ibn_b_resnet101")
def ibn_b_resnet101(**kw: Any) -> ResNet:
    return _build(_R101, _B, **kw)


@BACKBONES.register("se_ibn_a_resnet101")
def se_ibn_a_resnet101(**kw: Any) -> ResNet:
    return _build(_R101, _SE_A, **kw)


@BACKBONES.register("se_ibn_b_resnet101")
def se_ibn_b_resnet101(**kw: Any) -> ResNet:
    return _build(_R101, _SE_B, **kw)


@BACKBONES.register("resnext101_32x8d")
def resnext101_32x8d(**kw: Any) -> ResNet:
    return _build(_X101, **kw)


@BACKBONES.register("se_resnext101_32x8d")
def se_resnext101_32x8d(**kw: Any) -> ResNet:
    return _build(_X101, _SE_NEXT, **kw)


@BACKBONES.register("ibn_a_resnext101_32x8d")
def ibn_a_resnext101_32x8d(**kw: Any) -> ResNet:
    return _build(_X101, _A, **kw)


@BACKBONES.register("ibn_b_resnext101_32x8d")
def ibn_b_resnext101_32x8d(**kw: Any) -> ResNet:
    return _build(_X101, _B, **kw)


@BACKBONES.register("se_ibn_a_resnext101_32x8d")
def se_ibn_a_resnext101_32x8d(**kw: Any) -> ResNet:
    return _build(_X101, _SE_A, **kw)


@BACKBONES.register("se_ibn_b_resnext101_32x8d")
def se_ibn_b_resnext101_32x8d(**kw: Any) -> ResNet:
    return _build(_X101, _SE_B, **kw)
