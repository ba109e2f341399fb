"""Building blocks of the ResNet family: residual blocks, IBN-a normalisation, SE gating.

One basic and one bottleneck block class; keyword options select the published variants
(He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; Xie et al.,
"Aggregated Residual Transformations for Deep Neural Networks", CVPR 2017; Hu et al.,
"Squeeze-and-Excitation Networks", CVPR 2018; Pan et al., "Two at Once: Enhancing Learning
and Generalization Capacities via IBN-Net", ECCV 2018). Submodule names follow the
torchvision / IBN-Net key layout (``conv1``, ``bn1.IN``, ``IN``, ``downsample.0``) so that
their checkpoints load without renaming; SE layers are ``se.fc1`` / ``se.fc2``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

StrideIn = Literal["conv1", "conv2"]


class IBN(nn.Module):
    """Instance-Batch Normalisation of IBN-a (Pan et al., ECCV 2018).

    The first ``int(channels * ratio)`` channels are instance-normalised (affine), the rest
    batch-normalised, as in the public IBN-Net code (``IBN(planes, ratio=0.5)``).

    Args:
        channels: number of input channels C.
        ratio: share of channels given to InstanceNorm.

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, channels: int, ratio: float = 0.5) -> None:
        super().__init__()
        self.in_channels = int(channels * ratio)  # IBN-Net's `half`
        self.IN = nn.InstanceNorm2d(self.in_channels, affine=True)
        self.BN = nn.BatchNorm2d(channels - self.in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(x, [self.in_channels, x.shape[1] - self.in_channels], dim=1)
        return torch.cat((self.IN(a.contiguous()), self.BN(b.contiguous())), dim=1)


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation channel gating (Hu et al., CVPR 2018).

    Global average pool, ``fc1`` (C -> C // reduction), ReLU, ``fc2`` (-> C), sigmoid, and
    a channel-wise product with the input. The Caffe-derived SENet release has biases in both
    layers (stored as 1x1 convolutions); IBN-Net's SE-ResNet-IBN has none (linear layers).

    Args:
        channels: number of channels C.
        reduction: bottleneck ratio r.
        bias: whether ``fc1`` and ``fc2`` carry a bias.

    Shape:
        (B, C, H, W) -> (B, C, H, W)
    """

    def __init__(self, channels: int, reduction: int = 16, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // reduction, bias=bias)
        self.fc2 = nn.Linear(channels // reduction, channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))  # (B, C)
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))  # (B, C)
        return x * g[:, :, None, None]


def _norm(channels: int, ibn_a: bool) -> nn.Module:
    return IBN(channels) if ibn_a else nn.BatchNorm2d(channels)


class _Residual(nn.Module):
    """Shared tail of both blocks: SE on the branch, residual sum, optional IN, ReLU."""

    se: SqueezeExcite | None
    IN: nn.InstanceNorm2d | None
    downsample: nn.Module | None

    def _finish(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.se is not None:
            out = self.se(out)
        identity = x if self.downsample is None else self.downsample(x)
        out = out + identity
        if self.IN is not None:  # IBN-b: after the sum, before the last ReLU
            out = self.IN(out)
        return torch.relu(out)


class BasicBlock(_Residual):
    """Two 3x3 convolutions (ResNet-18/34; He et al., CVPR 2016).

    Args:
        in_channels: input channels.
        planes: output channels (expansion 1).
        stride: spatial stride of ``conv1``.
        downsample: projection of the shortcut, or None for identity.
        ibn_a: split ``bn1`` into IN and BN halves (IBN-a).
        in_after_add: InstanceNorm after the residual sum (IBN-b).
        se: add an SE module on the branch output.
        se_reduction: SE ratio r.
        se_bias: SE layers with bias.

    Shape:
        (B, in_channels, H, W) -> (B, planes, H / stride, W / stride)
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        ibn_a: bool = False,
        in_after_add: bool = False,
        se: bool = False,
        se_reduction: int = 16,
        se_bias: bool = True,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = _norm(planes, ibn_a)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SqueezeExcite(planes, se_reduction, se_bias) if se else None
        self.IN = nn.InstanceNorm2d(planes, affine=True) if in_after_add else None
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self._finish(out, x)


class Bottleneck(_Residual):
    """1x1 - 3x3 (grouped) - 1x1 bottleneck (He et al., CVPR 2016; Xie et al., CVPR 2017).

    The inner width is ``int(planes * width_per_group / 64) * groups`` (ResNeXt "32x8d":
    groups 32, width_per_group 8). The stride sits in the 3x3 ``conv2`` (torchvision "v1.5",
    IBN-Net, SE-ResNeXt) or in the first 1x1 ``conv1`` (original Caffe ResNet and the
    Caffe-converted SE-ResNet release).

    Args:
        in_channels: input channels.
        planes: output channels / 4.
        stride: spatial stride of the block.
        downsample: projection of the shortcut, or None for identity.
        groups: groups of the 3x3 convolution (cardinality).
        width_per_group: channels per group at planes = 64.
        stride_in: which convolution carries the stride, ``"conv1"`` or ``"conv2"``.
        ibn_a: split ``bn1`` into IN and BN halves (IBN-a).
        in_after_add: InstanceNorm after the residual sum (IBN-b).
        se: add an SE module on the branch output (before the sum).
        se_reduction: SE ratio r.
        se_bias: SE layers with bias.

    Shape:
        (B, in_channels, H, W) -> (B, 4 * planes, H / stride, W / stride)
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        stride_in: StrideIn = "conv2",
        ibn_a: bool = False,
        in_after_add: bool = False,
        se: bool = False,
        se_reduction: int = 16,
        se_bias: bool = True,
    ) -> None:
        super().__init__()
        if stride_in not in ("conv1", "conv2"):
            raise ValueError(f"stride_in must be 'conv1' or 'conv2', got {stride_in!r}")
        width = int(planes * width_per_group / 64) * groups
        out_channels = planes * self.expansion
        s1, s2 = (stride, 1) if stride_in == "conv1" else (1, stride)
        self.conv1 = nn.Conv2d(in_channels, width, 1, s1, bias=False)
        self.bn1 = _norm(width, ibn_a)
        self.conv2 = nn.Conv2d(width, width, 3, s2, 1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcite(out_channels, se_reduction, se_bias) if se else None
        self.IN = nn.InstanceNorm2d(out_channels, affine=True) if in_after_add else None
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self._finish(out, x)
