"""Images/s of reidlab's train data path, each option, against a plain per-image PIL one.

Writes synthetic JPEGs (smooth colour fields, stripes and noise; ``--stored`` HxW, default
256x128), then times, at 1 and 2 loader worker processes, full epochs of training batches
at ``--size`` (default 256x128) from:

* plain: a per-image PIL pipeline written as ReID code bases usually do it (open, resize,
  flip, pad, crop, to tensor, normalise, random erasing), random shuffling;
* each reidlab option (``data.augment_on`` x ``data.cache``), through ``build_train_data``
  with PK batches; the ``device`` path's batch augmentation runs in this process on the
  CPU (the training device here) and is timed with it.

The main process runs one torch thread, so "1 worker" is about one core of decoding and
augmentation (plus the main process's collation or batch augmentation). The ratio is
against the plain pipeline at the same worker count. The cache fill (decoding each image
once; for ``disk`` in the first pass only, later ones reuse the file) is timed apart.

    python benchmarks/data.py [--images N] [--epochs E] [--repeats R] [--stored HxW]
        [--size HxW]
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from reidlab.config import load_config
from reidlab.data.pipeline import build_train_data
from reidlab.data.records import ImageRecord, ReIDDataset

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def write_jpegs(folder: Path, n: int, height: int, width: int,
                per_id: int = 8) -> list[ImageRecord]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    records = []
    for i in range(n):
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (y / height)[..., None]
        img = c0 * (1 - t) + c1 * t
        img += 40 * np.sin(x / rng.uniform(2, 8) + y / rng.uniform(4, 16))[..., None]
        img += rng.normal(0, 8, img.shape)
        path = folder / f"{i // per_id:04d}_c{i % 6 + 1}s1_{i:06d}_00.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        records.append(ImageRecord(str(path), i // per_id, i % 6, "bench"))
    return records


class PlainPIL(Dataset):
    """The reference: one image at a time in PIL and NumPy, torch only for the tensor."""

    def __init__(self, paths: list[str], height: int, width: int, pad: int = 10) -> None:
        self.paths, self.height, self.width, self.pad = paths, height, width, pad

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        h, w, p = self.height, self.width, self.pad
        img = Image.open(self.paths[i]).convert("RGB").resize((w, h), Image.Resampling.BILINEAR)
        if random.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        arr = np.pad(np.asarray(img), ((p, p), (p, p), (0, 0)))
        top, left = random.randint(0, 2 * p), random.randint(0, 2 * p)
        arr = arr[top:top + h, left:left + w]
        t = torch.from_numpy(((arr.astype(np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1))
        if random.random() < 0.5:  # random erasing, Zhong et al. AAAI 2020
            for _ in range(100):
                area = random.uniform(0.02, 0.4) * h * w
                ratio = random.uniform(0.3, 1 / 0.3)
                eh, ew = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
                if eh < h and ew < w:
                    y0, x0 = random.randint(0, h - eh), random.randint(0, w - ew)
                    t[:, y0:y0 + eh, x0:x0 + ew] = 0
                    break
        return t.contiguous()


def timed(loader, epochs: int, batch_size: int) -> float:
    """Images/s over ``epochs`` epochs, not counting the first batch (worker start-up)."""
    n, start = 0, None
    for _ in range(epochs):
        for b in loader:
            images = b[0] if isinstance(b, (list, tuple)) else b
            assert images.dtype == torch.float32 and images.shape[0] == batch_size
            if start is None:
                start = time.perf_counter()
                continue
            n += len(images)
    assert start is not None
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--stored", default="256x128", help="HxW of the JPEG files")
    parser.add_argument("--size", default="256x128", help="HxW of the training images")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="passes; the best is printed")
    ns = parser.parse_args()
    sh, sw = map(int, ns.stored.split("x"))
    th, tw = map(int, ns.size.split("x"))
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "img").mkdir()
        records = write_jpegs(root / "img", ns.images, sh, sw)
        dataset = ReIDDataset("bench", train=records)
        # best of --repeats passes over every pipeline: other load on shared cores only
        # ever slows a pass down
        best: dict[tuple[str, int], float] = {}
        fills: dict[tuple[str, int], float] = {}
        for _ in range(ns.repeats):
            for workers in (1, 2):
                loader = DataLoader(PlainPIL([r.path for r in records], th, tw),
                                    batch_size=ns.batch, shuffle=True, drop_last=True,
                                    num_workers=workers, persistent_workers=True)
                key = ("plain PIL per-image", workers)
                best[key] = max(best.get(key, 0.0), timed(loader, ns.epochs, ns.batch))
                del loader
                for augment_on in ("workers", "device"):
                    for cache in ("none", "memory", "disk"):
                        cfg = load_config(None, [
                            f"data.height={th}", f"data.width={tw}",
                            f"data.batch_size={ns.batch}", f"data.num_workers={workers}",
                            f"data.cache={cache}", f"data.augment_on={augment_on}",
                            f"data.cache_dir={root / 'cache'}", "device=cpu"])
                        start = time.perf_counter()
                        data = build_train_data(cfg, [dataset])
                        key = (f"reidlab {augment_on}, cache {cache}", workers)
                        if cache != "none":
                            fills.setdefault(key, time.perf_counter() - start)
                        best[key] = max(best.get(key, 0.0), timed(data.loader, ns.epochs,
                                                                  ns.batch))
                        del data
        plain = {w: best[("plain PIL per-image", w)] for w in (1, 2)}
        rows = [(label, w, speed, fills.get((label, w))) for (label, w), speed in best.items()]
        rows.sort(key=lambda r: r[1])
    print(f"{ns.images} JPEGs stored at {sh}x{sw}, batches of {ns.batch} at {th}x{tw}, "
          f"{ns.epochs} epochs, best of {ns.repeats} passes, main process on 1 torch thread")
    print(f"{'pipeline':<32}{'workers':>8}{'images/s':>10}{'ratio':>8}{'fill s':>8}")
    for label, workers, speed, fill in rows:
        fill_s = f"{fill:8.1f}" if fill is not None else f"{'':>8}"
        print(f"{label:<32}{workers:>8}{speed:>10.0f}{speed / plain[workers]:>8.2f}{fill_s}")


if __name__ == "__main__":
    main()
