"""The train augmentation on whole batches, as tensor operations on the training device.

:class:`BatchAugment` gives, for a batch of ``uint8`` images already at the training
resolution and one seed per sample, exactly what the per-image train pipeline of
:func:`~reidlab.data.transforms.build_transforms` gives for each image after
``torch.manual_seed(seed)``: each sample's random draws (flip, crop offsets, erasing box)
are made on the CPU from a generator seeded with its seed, in the per-image pipeline's
order, and only the pixel work runs on the device: flip, zero pad and crop as one slice
copy per sample (no padded copy of the batch), normalisation of the whole batch in place,
the erasing boxes as slice fills. A run therefore gets the same
augmentations in either path, whatever the worker count or resume point.

:class:`DeviceAugmentLoader` wraps a loader of ``(uint8 images, pids, camids, index,
seeds)`` batches and yields the ``(images, pids, camids, index)`` batches the training
step reads, augmented on the device.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from reidlab.config import AugmentConfig


@dataclass(frozen=True)
class SampleDraws:
    """One sample's random choices: mirror it, crop window origin in the padded image,
    and the erased box ``(top, left, height, width)`` or ``None``."""

    flip: bool
    top: int
    left: int
    erase: tuple[int, int, int, int] | None


def draw_sample(aug: AugmentConfig, height: int, width: int, seed: int) -> SampleDraws:
    """The draws of the per-image train pipeline for one image of ``(height, width)``
    after ``torch.manual_seed(seed)``, in its order: the flip, then (if ``aug.pad``) the
    crop's top and left, then random erasing (Zhong et al., AAAI 2020: the ``p`` draw, then
    per attempt the area and aspect draws, and the box position once one fits)."""
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand((), generator=g).item() < aug.flip_p
    top = left = aug.pad
    if aug.pad > 0:
        top = int(torch.randint(0, 2 * aug.pad + 1, (), generator=g).item())
        left = int(torch.randint(0, 2 * aug.pad + 1, (), generator=g).item())
    erase = None
    if torch.rand((), generator=g).item() < aug.erasing_p:
        lo, hi = aug.erasing_area
        a = aug.erasing_aspect
        for _ in range(100):
            target = (lo + (hi - lo) * torch.rand((), generator=g).item()) * height * width
            ratio = a + (1.0 / a - a) * torch.rand((), generator=g).item()
            h = int(round(math.sqrt(target * ratio)))
            w = int(round(math.sqrt(target / ratio)))
            if h < height and w < width:
                t = int(torch.randint(0, height - h + 1, (), generator=g).item())
                s = int(torch.randint(0, width - w + 1, (), generator=g).item())
                erase = (t, s, h, w)
                break
    return SampleDraws(flip, top, left, erase)


class BatchAugment:
    """The BoT train augmentation (Luo et al., CVPRW 2019) on a batch: flip, zero pad +
    random crop, ImageNet normalisation, random erasing with value 0 after normalisation.

    Args:
        aug: the augmentation settings (as :func:`~reidlab.data.transforms.build_transforms`).
        height, width: the training resolution the input batches already have.
    """

    def __init__(self, aug: AugmentConfig, height: int, width: int) -> None:
        self.aug, self.height, self.width = aug, height, width

    def __call__(self, images: Tensor, seeds: Tensor | list[int]) -> Tensor:
        """Augment ``images`` (B, 3, H, W) ``uint8`` on their device.

        Args:
            images: the batch at the training resolution.
            seeds: (B,) each sample's augmentation seed (on the CPU).

        Returns:
            (B, 3, H, W) ``float32`` normalised images on ``images.device``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"BatchAugment expects (B, 3, H, W) images, got {tuple(images.shape)}")
        b, _, h, w = images.shape
        if (h, w) != (self.height, self.width):
            raise ValueError(f"BatchAugment is for {self.height}x{self.width} images, got {h}x{w}")
        seed_list = seeds.tolist() if isinstance(seeds, Tensor) else list(seeds)
        if len(seed_list) != b:
            raise ValueError(f"BatchAugment got {len(seed_list)} seeds for {b} images")
        draws = [draw_sample(self.aug, h, w, int(s)) for s in seed_list]
        dev, p = images.device, self.aug.pad
        # flip, zero pad and crop in one copy per sample: the crop window of the padded
        # (mirrored) image starts at (top - p, left - p) of the mirrored image, and what
        # falls outside the image stays zero
        out = torch.zeros((b, 3, h, w), dtype=torch.uint8, device=dev)
        for i, d in enumerate(draws):
            dy, dx = d.top - p, d.left - p
            y0, y1, x0, x1 = max(0, dy), min(h, dy + h), max(0, dx), min(w, dx + w)
            if d.flip:  # columns x0..x1 of the mirrored image are w-x1..w-x0 reversed
                src = images[i, :, y0:y1, w - x1 : w - x0].flip(-1)
            else:
                src = images[i, :, y0:y1, x0:x1]
            out[i, :, y0 - dy : y1 - dy, x0 - dx : x1 - dx] = src
        x = out.float().div_(255.0)  # the per-image arithmetic, in place
        mean = torch.tensor(self.aug.mean, device=dev).view(1, 3, 1, 1)
        std = torch.tensor(self.aug.std, device=dev).view(1, 3, 1, 1)
        x.sub_(mean).div_(std)
        for i, d in enumerate(draws):
            if d.erase is not None:
                t, s, eh, ew = d.erase
                x[i, :, t : t + eh, s : s + ew] = 0.0
        return x


class DeviceAugmentLoader:
    """Iterates ``loader``'s ``(uint8 images, pids, camids, index, seeds)`` batches and
    yields ``(images, pids, camids, index)``, the images moved to ``device`` and augmented
    there by ``augment``. ``len`` is the loader's."""

    def __init__(self, loader: Iterable, augment: BatchAugment, device: torch.device) -> None:
        self.loader = loader
        self.augment = augment
        self.device = device

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        for images, pids, camids, index, seeds in self.loader:
            images = images.to(self.device, non_blocking=True)
            yield self.augment(images, seeds), pids, camids, index
