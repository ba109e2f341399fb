"""``reidlab dec-digits``: DEC against k-means on scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` ships 1,797 real 8x8 digit images (UCI optical
recognition of handwritten digits). Three clusterings into 10 groups, each scored by the
Hungarian-matched clustering accuracy and NMI against the true digit: k-means on the raw
pixels, k-means on the pretrained autoencoder's embedding (DEC's initialisation), DEC.
The MNIST figures of Xie et al. (ICML 2016, Table 2: DEC 84.3%, k-means 53.5%) are printed
beside them for context; they are for MNIST, not for these digits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reidlab.adapt.cluster import cluster_accuracy, nmi
from reidlab.adapt.dec import DEC, kmeans

#: Xie et al., ICML 2016, Table 2 (MNIST accuracy).
MNIST_PUBLISHED = {"kmeans_pixels": 0.535, "dec": 0.843}
METHODS = {
    "kmeans_pixels": "k-means on raw pixels",
    "kmeans_embedding": "k-means on the autoencoder embedding",
    "dec": "DEC",
}


def load_digit_pixels() -> tuple[torch.Tensor, np.ndarray]:
    """The digits (1797, 64), scaled so that the mean of ``|x|^2 / d`` is 1 (the paper's
    input normalisation), and their labels (1797,)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.as_tensor(data.data, dtype=torch.float32)
    x = x / x.pow(2).sum(1).mean().div(x.shape[1]).sqrt()
    return x, np.asarray(data.target, dtype=np.int64)


def run_dec_digits(out: Path, seed: int = 0) -> dict[str, Any]:
    """Cluster the digits three ways; write ``assignments.npz`` and ``dec_digits.json``."""
    start = time.time()
    torch.manual_seed(seed)
    x, y = load_digit_pixels()
    pixels, _ = kmeans(x.numpy(), 10, seed)
    result = DEC(10, seed=seed).fit(x)
    preds = {"kmeans_pixels": pixels, "kmeans_embedding": result.initial_labels,
             "dec": result.labels}
    table = {k: {"method": METHODS[k], "accuracy": cluster_accuracy(p, y), "nmi": nmi(p, y)}
             for k, p in preds.items()}
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "assignments.npz", kmeans_pixels=pixels,
             kmeans_embedding=result.initial_labels, dec=result.labels)
    record = {"images": len(y), "seed": seed, "dec_iterations": result.iterations,
              "seconds": time.time() - start, "table": table,
              "mnist_published_accuracy": MNIST_PUBLISHED}
    (out / "dec_digits.json").write_text(json.dumps(record, indent=2))
    return record


def format_digits_table(record: dict[str, Any]) -> str:
    """The table ``reidlab dec-digits`` prints (percent)."""
    width = max(len(v) for v in METHODS.values())
    lines = [f"{'method':<{width}}  {'acc':>6}  {'NMI':>6}  {'MNIST acc (Xie et al.)':>22}"]
    for key, row in record["table"].items():
        pub = MNIST_PUBLISHED.get(key)
        ref = f"{100 * pub:.1f}" if pub is not None else "-"
        lines.append(f"{row['method']:<{width}}  {100 * row['accuracy']:6.1f}  "
                     f"{100 * row['nmi']:6.1f}  {ref:>22}")
    lines.append(f"{record['images']} digits (sklearn load_digits), seed {record['seed']}, "
                 f"{record['seconds']:.0f} s; the last column is MNIST, published")
    return "\n".join(lines)
