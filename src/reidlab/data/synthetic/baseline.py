"""A raw-pixel retrieval baseline, to check that the synthetic dataset is not trivial.

Images are downsampled, flattened and L2-normalised; queries rank the gallery by cosine
distance and are scored with the Market-1501 protocol (Zheng et al., ICCV 2015): gallery
images of the query's identity seen by the query's camera, and junk images (pid -1), are
left out; distractors (pid 0) count as wrong matches.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from reidlab.evaluation import rank

_NAME = re.compile(r"^(-1|\d{4})_c(\d)s\d+_\d{6}_\d{2}\.jpg$")


def read_split(folder: Path) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """Paths, pids and 0-based camera ids of the Market-1501-named images in ``folder``."""
    if not folder.is_dir():
        raise FileNotFoundError(f"no image folder {folder}")
    paths, pids, cams = [], [], []
    for path in sorted(folder.glob("*.jpg")):
        m = _NAME.match(path.name)
        if m is None:
            raise ValueError(f"{path}: name does not follow pid_c<cam>s<seq>_<frame>_<bbox>.jpg")
        paths.append(path)
        pids.append(int(m.group(1)))
        cams.append(int(m.group(2)) - 1)
    if not paths:
        raise FileNotFoundError(f"no .jpg images in {folder}")
    return paths, np.asarray(pids), np.asarray(cams)


def pixel_features(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """(N, H*W*3) float32: each image resized to ``size`` (H, W), flattened, L2-normalised."""
    h, w = size
    feats = np.stack(
        [
            np.asarray(
                Image.open(p).convert("RGB").resize((w, h), Image.Resampling.BILINEAR),
                dtype=np.float32,
            ).reshape(-1)
            for p in paths
        ]
    )
    return feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)


def raw_pixel_baseline(root: Path, size: tuple[int, int] = (32, 16)) -> dict[str, float]:
    """Rank the gallery of the Market-1501-layout dataset at ``root`` by raw pixels.

    Args:
        root: folder holding ``query/`` and ``bounding_box_test/``.
        size: (H, W) the images are downsampled to before flattening.

    Returns:
        ``{"mAP": ..., "rank1": ...}`` as fractions in [0, 1].
    """
    root = Path(root)
    q_paths, q_pids, q_cams = read_split(root / "query")
    g_paths, g_pids, g_cams = read_split(root / "bounding_box_test")
    q, g = pixel_features(q_paths, size), pixel_features(g_paths, size)
    distmat = 1.0 - q @ g.T  # (Q, G) cosine distance
    result = rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=1)
    return {"mAP": float(result.mAP), "rank1": float(result.cmc[0])}
