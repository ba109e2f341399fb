"""Train and test image transforms on ``(3, H, W)`` tensors, in plain torch.

The train pipeline is the Bag of Tricks one (Luo et al., CVPRW 2019 / TMM 2019): resize,
random horizontal flip, zero padding + random crop, ImageNet normalisation, random
erasing. Randomness comes from torch's global generator, which the ``DataLoader`` seeds
differently in every worker.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from reidlab.config import AugmentConfig

Transform = Callable[[Tensor], Tensor]


def _check_image(img: Tensor, name: str) -> None:
    if img.ndim != 3:
        raise ValueError(f"{name} expects a (C, H, W) image tensor, got shape {tuple(img.shape)}")


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: Tensor) -> Tensor:
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        inner = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"{type(self).__name__}([{inner}\n])"


class ToFloat:
    """``uint8`` in ``[0, 255]`` to ``float32`` in ``[0, 1]``; float images only cast.

    Done first, so that resizing works on floats (bilinear antialiased ``interpolate``
    does not take ``uint8`` on every device) and is not rounded back to 8 bits.
    """

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img, "ToFloat")
        if img.dtype == torch.uint8:
            return img.float().div_(255.0)
        return img.float()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Resize:
    """Bilinear resize to ``(height, width)``, antialiased when shrinking (as PIL does)."""

    def __init__(self, height: int, width: int) -> None:
        if height < 1 or width < 1:
            raise ValueError(f"Resize needs a positive size, got {height} x {width}")
        self.height = height
        self.width = width

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img, "Resize")
        if img.shape[1:] == (self.height, self.width):
            return img
        if not img.is_floating_point():
            raise TypeError(f"Resize expects a float image (apply ToFloat first), got {img.dtype}")
        out = F.interpolate(
            img.unsqueeze(0),
            size=(self.height, self.width),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        return out.squeeze(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(height={self.height}, width={self.width})"


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img: Tensor) -> Tensor:
        if torch.rand(()).item() < self.p:
            return img.flip(-1)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class Pad:
    """Pad every side with ``pad`` zero pixels (torchvision's ``Pad`` default)."""

    def __init__(self, pad: int) -> None:
        if pad < 0:
            raise ValueError(f"Pad needs a non-negative pad, got {pad}")
        self.pad = pad

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img, "Pad")
        p = self.pad
        return F.pad(img, (p, p, p, p), mode="constant", value=0.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pad={self.pad})"


class RandomCrop:
    """Crop a uniformly placed ``(height, width)`` window."""

    def __init__(self, height: int, width: int) -> None:
        self.height = height
        self.width = width

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img, "RandomCrop")
        h, w = img.shape[1:]
        if h < self.height or w < self.width:
            raise ValueError(
                f"RandomCrop to {self.height} x {self.width} got a smaller image {h} x {w}"
            )
        top = int(torch.randint(0, h - self.height + 1, ()).item())
        left = int(torch.randint(0, w - self.width + 1, ()).item())
        return img[:, top : top + self.height, left : left + self.width]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(height={self.height}, width={self.width})"


class Normalize:
    """``(img - mean) / std`` per channel, on a float image in ``[0, 1]``."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != len(std) or any(s <= 0 for s in std):
            raise ValueError(
                f"Normalize needs equal-length mean and positive std, got {mean}, {std}"
            )
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img, "Normalize")
        if img.shape[0] != len(self.mean):
            raise ValueError(
                f"Normalize has {len(self.mean)} channel statistics, image has {img.shape[0]}"
            )
        mean = torch.tensor(self.mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        return (img - mean) / std

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mean={self.mean}, std={self.std})"


class RandomErasing:
    """Random erasing (Zhong et al., "Random Erasing Data Augmentation", AAAI 2020).

    With probability ``p``, up to ``attempts`` times: draw a target area uniformly from
    ``area`` (fractions of the image) and an aspect ratio ``h / w`` uniformly from
    ``[aspect, 1 / aspect]``, round ``h = sqrt(A r)`` and ``w = sqrt(A / r)``, and if the
    box fits strictly inside the image, fill it at a uniform position and stop (the BoT
    code's procedure and hyper-parameters: 0.5, (0.02, 0.4), 0.3, 100 attempts).

    The fill is ``value`` in every channel, applied after normalisation. reidlab uses 0,
    which after ImageNet normalisation is the ImageNet mean colour: the box carries no
    information and matches the average input. (The BoT code writes the CIFAR-10 means
    (0.4914, 0.4822, 0.4465) into the already normalised tensor, a light grey about half
    a standard deviation above the mean; we do not copy that artefact.)
    """

    def __init__(
        self,
        p: float = 0.5,
        area: tuple[float, float] = (0.02, 0.4),
        aspect: float = 0.3,
        value: float = 0.0,
        attempts: int = 100,
    ) -> None:
        if not 0.0 < area[0] <= area[1] <= 1.0:
            raise ValueError(f"RandomErasing area must satisfy 0 < lo <= hi <= 1, got {area}")
        if not 0.0 < aspect <= 1.0:
            raise ValueError(f"RandomErasing aspect must lie in (0, 1], got {aspect}")
        self.p = p
        self.area = (float(area[0]), float(area[1]))
        self.aspect = float(aspect)
        self.value = value
        self.attempts = attempts

    @staticmethod
    def _uniform(lo: float, hi: float) -> float:
        return lo + (hi - lo) * torch.rand(()).item()

    def __call__(self, img: Tensor) -> Tensor:
        _check_image(img, "RandomErasing")
        if torch.rand(()).item() >= self.p:
            return img
        _, h_img, w_img = img.shape
        for _ in range(self.attempts):
            target = self._uniform(*self.area) * h_img * w_img
            ratio = self._uniform(self.aspect, 1.0 / self.aspect)
            h = int(round(math.sqrt(target * ratio)))
            w = int(round(math.sqrt(target / ratio)))
            if h < h_img and w < w_img:
                top = int(torch.randint(0, h_img - h + 1, ()).item())
                left = int(torch.randint(0, w_img - w + 1, ()).item())
                img = img.clone()
                img[:, top : top + h, left : left + w] = self.value
                return img
        return img

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(p={self.p}, area={self.area}, aspect={self.aspect}, "
            f"value={self.value}, attempts={self.attempts})"
        )


def build_transforms(aug: AugmentConfig, height: int, width: int, train: bool) -> Compose:
    """The train or test pipeline for ``(3, H, W)`` ``uint8`` or ``float`` (``[0, 1]``) images.

    Train: to float, resize, flip (``aug.flip_p``), pad ``aug.pad`` + random crop (skipped
    when ``aug.pad`` is 0), normalise, random erasing (``aug.erasing_*``). Test: to float,
    resize, normalise.

    Returns:
        A :class:`Compose` giving ``float32`` ``(3, height, width)`` normalised images.
    """
    steps: list[Transform] = [ToFloat(), Resize(height, width)]
    if train:
        steps.append(RandomHorizontalFlip(aug.flip_p))
        if aug.pad > 0:
            steps += [Pad(aug.pad), RandomCrop(height, width)]
    steps.append(Normalize(aug.mean, aug.std))
    if train:
        steps.append(
            RandomErasing(p=aug.erasing_p, area=aug.erasing_area, aspect=aug.erasing_aspect)
        )
    return Compose(steps)
