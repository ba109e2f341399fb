"""NVIDIA DALI as the decoder of the train images (``data.backend: dali``): nvJPEG on the GPU.

The PK order and the per-sample seeds stay reidlab's (:class:`~reidlab.data.pipeline.
SeededSampler`). For each batch the encoded files are read on the CPU (in threads) and fed
to a DALI pipeline through ``fn.external_source``, which decodes them on the GPU
(``fn.decoders.image`` with ``device="mixed"``) and resizes them to the training resolution
(``fn.resize``, linear with antialiasing). The augmentation is then
:class:`~reidlab.data.batch_transforms.BatchAugment`'s on the device (flip, pad and crop,
normalisation, random erasing), with the same draws as the per-image pipeline for the same
seeds. A run therefore gets the augmentations of ``data.augment_on=device``; only the
decoded and resized pixels may differ, by the decoders' rounding (nvJPEG's IDCT and DALI's
resize against libjpeg-turbo and reidlab's resize).

nvidia-dali is an optional extra (``pip install 'reidlab[dali]'``, CUDA 12), imported only
when this backend is chosen. This module has never run in reidlab's CI, which has no GPU:
its test (``tests/data/test_dali.py``) is skipped there, without nvidia.dali or CUDA.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from reidlab.config import AugmentConfig, ConfigError, DataConfig
from reidlab.data.batch_transforms import BatchAugment
from reidlab.data.records import ImageRecord

if TYPE_CHECKING:
    from reidlab.data.pipeline import SeededSampler

INSTALL = "pip install 'reidlab[dali]' (nvidia-dali-cuda120), or set data.backend=torch"


def check_backend(cfg: DataConfig, device: torch.device) -> None:
    """Raise a one-line error naming ``data.backend`` when ``dali`` is chosen and cannot run
    here (no CUDA device, or nvidia-dali not installed); nothing for the other backend.

    Raises:
        ConfigError: naming the key and what to do.
    """
    if cfg.backend != "dali":
        return
    if device.type != "cuda":
        raise ConfigError(f"data.backend=dali decodes on the GPU, but the device is "
                          f"{device.type}: set device=cuda, or data.backend=torch")
    import_dali()


def import_dali() -> Any:
    """The ``nvidia.dali`` package.

    Raises:
        ConfigError: it is not installed; the message names ``data.backend``.
    """
    try:
        import nvidia.dali
    except ImportError:
        raise ConfigError(f"data.backend=dali needs NVIDIA DALI, which is not installed: "
                          f"{INSTALL}") from None
    return nvidia.dali


def _decoder(batch_size: int, height: int, width: int, device_id: int, threads: int) -> Any:
    """A built DALI pipeline: ``batch_size`` encoded images fed as ``"encoded"`` -> (H, W, 3)
    ``uint8`` RGB images on the GPU, resized to ``height`` x ``width``."""
    import_dali()
    from nvidia.dali import fn, pipeline_def, types

    # One batch fed, one batch run: the feed and the run stay in step.
    @pipeline_def(batch_size=batch_size, num_threads=threads, device_id=device_id,
                  prefetch_queue_depth=1)
    def decode() -> Any:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        images = fn.decoders.image(encoded, device="mixed", output_type=types.RGB)
        return fn.resize(images, resize_x=width, resize_y=height,
                         interp_type=types.INTERP_LINEAR, antialias=True)

    pipe = decode()
    pipe.build()
    return pipe


class DaliTrainLoader:
    """The train loader of ``data.backend: dali``: ``(images, pids, camids, index)``
    batches of ``batch_size`` (this process's share), the images (B, 3, H, W) ``float32``
    augmented on ``device``; ``len`` is the number of whole batches of an epoch.

    Args:
        records: the training images, by dataset index.
        sampler: yields ``(index, seed)`` pairs, batch after batch.
        aug: the augmentation settings.
        height, width: the training resolution.
        device: the CUDA device that decodes and receives the batches.
        batch_size: images a batch.
        threads: DALI's CPU threads and the file readers (at least 1).
    """

    def __init__(self, records: Sequence[ImageRecord], sampler: SeededSampler,
                 aug: AugmentConfig, height: int, width: int, device: torch.device,
                 batch_size: int, threads: int = 2) -> None:
        if device.type != "cuda":
            raise ConfigError(f"data.backend=dali decodes on the GPU, but the device is "
                              f"{device.type}: set device=cuda, or data.backend=torch")
        self.records, self.sampler, self.batch_size = records, sampler, batch_size
        self.height, self.width = height, width
        index = device.index if device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", index)
        self.threads = max(1, threads)
        self.augment = BatchAugment(aug, height, width)
        self.pipe = _decoder(batch_size, height, width, index, self.threads)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        chunk: list[tuple[int, int]] = []
        with ThreadPoolExecutor(self.threads) as pool:
            for item in self.sampler:
                chunk.append(item)
                if len(chunk) == self.batch_size:
                    yield self._batch(chunk, pool)
                    chunk = []

    def _batch(self, chunk: list[tuple[int, int]],
               pool: ThreadPoolExecutor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        from nvidia.dali.plugin.pytorch import feed_ndarray

        records = [self.records[i] for i, _ in chunk]
        encoded = list(pool.map(lambda r: np.frombuffer(Path(r.path).read_bytes(), np.uint8),
                                records))
        self.pipe.feed_input("encoded", encoded)
        (decoded,) = self.pipe.run()
        hwc = torch.empty((len(chunk), self.height, self.width, 3), dtype=torch.uint8,
                          device=self.device)  # (B, H, W, 3)
        feed_ndarray(decoded.as_tensor(), hwc, cuda_stream=torch.cuda.current_stream(
            self.device))
        images = hwc.permute(0, 3, 1, 2).contiguous()  # (B, 3, H, W)
        seeds = [seed for _, seed in chunk]
        pids = torch.tensor([r.pid for r in records])
        camids = torch.tensor([r.camid for r in records])
        index = torch.tensor([i for i, _ in chunk])
        return self.augment(images, seeds), pids, camids, index
