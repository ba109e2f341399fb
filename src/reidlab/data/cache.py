"""The decoded-image cache (``data.cache``): every training image decoded and resized to
the training resolution once, kept as ``uint8``, so that workers only gather arrays.

``memory`` keeps one ``(N, 3, H, W)`` tensor in shared memory (every ``DataLoader`` worker
reads the same pages; 3 * H * W bytes an image: 98 KB at 256x128, about 1.3 GB for
Market-1501's 12,936 train images). ``disk`` writes it as a ``.npy`` file in the cache
folder and memory-maps it, for data sets larger than memory (joint training on
Market-1501, DukeMTMC-reID and MSMT17 is about 6 GB at 256x128): the page cache then
holds what fits. Beside the file a JSON manifest records the resolution, the decoder and
each image's path, size and modification time; a cache whose manifest differs from the
files on disk is rebuilt, never read.

Cached pixels are the float resize rounded to 8 bits, so they differ from the uncached
per-image path by at most half a grey level (1/510 before normalisation) where a resize
happens; at the stored resolution they are the decoded pixels exactly.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from reidlab.data.loader import load_resized, simplejpeg
from reidlab.data.records import ImageRecord

log = logging.getLogger("reidlab")

CacheMode = Literal["none", "memory", "disk"]
#: Bumped whenever what a cache file holds changes meaning (decode or resize rules).
FORMAT_VERSION = 1


class DecodedImages:
    """``uint8`` ``(3, H, W)`` images by record index, from memory or a memory-mapped file.

    Picklable for ``DataLoader`` workers: a memory store travels as a shared-memory tensor,
    a disk store as its path, opened again (lazily) in each process.
    """

    def __init__(self, images: torch.Tensor | None = None, path: Path | None = None) -> None:
        if (images is None) == (path is None):
            raise ValueError("DecodedImages needs exactly one of images and path")
        self._images = images
        self.path = path
        self._mapped: np.ndarray | None = None
        if path is not None:
            self._mapped = np.load(path, mmap_mode="r")
        shape = images.shape if images is not None else self._mapped.shape  # type: ignore[union-attr]
        if len(shape) != 4 or shape[1] != 3:
            raise ValueError(f"decoded-image cache {path or ''} has shape {tuple(shape)}, "
                             "expected (N, 3, H, W)")
        self.shape = tuple(int(x) for x in shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        if self._images is not None:
            return self._images[index]
        if self._mapped is None:
            self._mapped = np.load(self.path, mmap_mode="r")  # type: ignore[arg-type]
        return torch.from_numpy(np.array(self._mapped[index]))  # a copy: the map is read-only

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_mapped"] = None
        return state


class _Decode(Dataset):
    def __init__(self, records: Sequence[ImageRecord], height: int, width: int) -> None:
        self.records, self.height, self.width = records, height, width

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_resized(self.records[index].path, self.height, self.width)


def _fill(out: torch.Tensor | np.ndarray, records: Sequence[ImageRecord], height: int,
          width: int, num_workers: int) -> None:
    """Decode and resize every record into ``out`` (N, 3, H, W), ``num_workers`` processes."""
    loader = DataLoader(_Decode(records, height, width), batch_size=64,
                        num_workers=num_workers)
    start = 0
    for batch in loader:  # (b, 3, H, W) uint8
        stop = start + len(batch)
        if isinstance(out, np.ndarray):
            out[start:stop] = batch.numpy()
        else:
            out[start:stop] = batch
        start = stop


def _manifest(records: Sequence[ImageRecord], height: int, width: int) -> dict:
    """What a cache depends on: the resolution, the decoder and each file's size and mtime."""
    files = []
    for r in records:
        try:
            st = os.stat(r.path)
        except FileNotFoundError:
            raise FileNotFoundError(f"image {r.path} of the training set does not exist") from None
        files.append([r.path, st.st_size, st.st_mtime_ns])
    return {"version": FORMAT_VERSION, "height": height, "width": width,
            "decoder": "simplejpeg" if simplejpeg is not None else "pillow", "files": files}


def cache_file(records: Sequence[ImageRecord], height: int, width: int, folder: Path) -> Path:
    """The cache file of these records at this resolution: named after a digest of the
    paths, so that other record lists (another data set, a subset) get their own file."""
    digest = hashlib.sha1("\n".join(r.path for r in records).encode()).hexdigest()[:16]
    return Path(folder) / f"train-{height}x{width}-{digest}.npy"


def build_image_cache(
    records: Sequence[ImageRecord],
    height: int,
    width: int,
    mode: CacheMode,
    folder: str | Path | None = None,
    num_workers: int = 0,
) -> DecodedImages | None:
    """The decoded images of ``records`` at ``(height, width)``, or ``None`` for ``none``.

    Args:
        records: the training images, in dataset index order.
        height, width: the training resolution.
        mode: ``none``, ``memory`` (decode now, into shared memory) or ``disk`` (reuse the
            file in ``folder`` if its manifest matches the files, else decode into it).
        folder: where ``disk`` keeps its files; created when missing.
        num_workers: decoding processes (0: this one).

    Raises:
        ValueError: an unknown ``mode``, or ``disk`` without a ``folder``.
    """
    if mode == "none":
        return None
    if mode not in ("memory", "disk"):
        raise ValueError(f"data.cache: unknown mode {mode!r}; choose none, memory or disk")
    n = len(records)
    if mode == "memory":
        images = torch.empty((n, 3, height, width), dtype=torch.uint8).share_memory_()
        log.info("decoding %d images at %dx%d into memory (%.2f GB)", n, height, width,
                 images.numel() / 1e9)
        _fill(images, records, height, width, num_workers)
        return DecodedImages(images=images)
    if folder is None:
        raise ValueError("data.cache=disk needs a cache folder")
    path = cache_file(records, height, width, Path(folder))
    meta_path = path.with_suffix(".json")
    manifest = _manifest(records, height, width)
    if path.is_file() and meta_path.is_file():
        try:
            stored = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            stored = None
        if stored == manifest:
            log.info("decoded-image cache: reusing %s", path)
            return DecodedImages(path=path)
        log.info("decoded-image cache %s is stale (files or resolution changed): rebuilding",
                 path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_path.unlink(missing_ok=True)  # a file without its manifest is never read
    tmp = path.with_name(path.name + ".tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                    shape=(n, 3, height, width))
    log.info("decoding %d images at %dx%d into %s (%.2f GB)", n, height, width, path,
             out.size / 1e9)
    _fill(out, records, height, width, num_workers)
    out.flush()
    del out
    os.replace(tmp, path)
    meta_path.write_text(json.dumps(manifest))
    return DecodedImages(path=path)
