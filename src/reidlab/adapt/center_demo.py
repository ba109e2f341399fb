"""``reidlab center-demo``: the center loss picture of Wen et al. on real digits.

Wen, Zhang, Li and Qiao, "A Discriminative Feature Learning Approach for Deep Face
Recognition", ECCV 2016, Fig. 2 and 3: a network whose last hidden layer is 2-D, trained
with softmax alone and with softmax + lambda center loss; the center loss pulls each class
into a tight blob. Here: scikit-learn's 1,797 8x8 digits (a stratified 70/30 split), an
MLP ``64-256-128-2`` with PReLUs, a linear classifier on the 2-D feature, and the ReID
:class:`~reidlab.losses.center.CenterLoss` trained as ReID training trains it (its own SGD
at ``center_lr``, its gradient multiplied by ``1 / lambda`` before that step; Luo et al.,
CVPRW 2019). Both runs start from the same weights and batches. The picture shows the
held-out digits; each run's intra-class / inter-class distance ratio (mean distance of a
feature to its class mean, over the mean distance between class means) is measured there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from reidlab.adapt.digits import load_digit_pixels
from reidlab.losses.center import CenterLoss


def embedding_net() -> nn.Sequential:
    """The MLP mapping a (B, 64) digit to its (B, 2) feature."""
    return nn.Sequential(nn.Linear(64, 256), nn.PReLU(), nn.Linear(256, 128), nn.PReLU(),
                         nn.Linear(128, 2))


def distance_ratio(feats: np.ndarray, labels: np.ndarray) -> float:
    """Mean distance of each feature (N, D) to its class mean, over the mean distance
    between the class means: smaller is more compact, relative to the class spacing."""
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ValueError("distance_ratio needs at least two classes")
    means = np.stack([feats[labels == c].mean(0) for c in classes])
    index = np.searchsorted(classes, labels)
    intra = np.linalg.norm(feats - means[index], axis=1).mean()
    diff = np.linalg.norm(means[:, None] - means[None], axis=-1)
    inter = diff[np.triu_indices(len(classes), 1)].mean()
    return float(intra / inter)


def train_2d(x: torch.Tensor, y: torch.Tensor, center_weight: float, *, epochs: int = 60,
             batch_size: int = 64, lr: float = 1e-3, center_lr: float = 0.5,
             seed: int = 0) -> tuple[nn.Sequential, nn.Linear]:
    """Train the 2-D net and its classifier with softmax (+ ``center_weight`` x center loss
    when positive) on ``x`` (N, 64), ``y`` (N,); returns both."""
    torch.manual_seed(seed)
    net, classifier = embedding_net(), nn.Linear(2, 10)
    opt = torch.optim.Adam([*net.parameters(), *classifier.parameters()], lr=lr)
    center = CenterLoss(10, 2)
    center_opt = torch.optim.SGD(center.parameters(), lr=center_lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(batch_size):
            feats = net(x[idx])
            loss = nn.functional.cross_entropy(classifier(feats), y[idx])
            if center_weight > 0:
                loss = loss + center_weight * center(feats, y[idx])
            opt.zero_grad(set_to_none=True)
            center_opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if center_weight > 0:
                center.centers.grad.mul_(1.0 / center_weight)  # type: ignore[union-attr]
                center_opt.step()
    return net, classifier


def run_center_demo(out: Path, center_weight: float = 0.1, seed: int = 0) -> dict[str, Any]:
    """Train both nets, write ``center_loss.png`` and ``center_loss.json`` into ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.model_selection import train_test_split

    x, labels = load_digit_pixels()
    tr, te = train_test_split(np.arange(len(labels)), test_size=0.3, stratify=labels,
                              random_state=seed)
    y = torch.as_tensor(labels)
    runs = {"softmax": 0.0, f"softmax + {center_weight:g} x center loss": center_weight}
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    record: dict[str, Any] = {"center_weight": center_weight, "seed": seed, "runs": {}}
    for ax, (name, weight) in zip(axes, runs.items(), strict=True):
        net, classifier = train_2d(x[tr], y[tr], weight, seed=seed)
        with torch.no_grad():
            feats = net(x[te])
            acc = float((classifier(feats).argmax(1) == y[te]).float().mean())
        f = feats.numpy()
        ratio = distance_ratio(f, labels[te])
        record["runs"][name] = {"intra_inter_ratio": ratio, "test_accuracy": acc}
        for digit in range(10):
            m = labels[te] == digit
            ax.scatter(f[m, 0], f[m, 1], s=6, color=plt.cm.tab10(digit), label=str(digit))
        ax.set_title(f"{name}\nintra/inter {ratio:.3f}, test acc {100 * acc:.1f}%")
        ax.set_xlabel("feature 1")
        ax.set_ylabel("feature 2")
    axes[1].legend(title="digit", markerscale=3, loc="best", fontsize=8)
    fig.suptitle("2-D features of held-out digits (sklearn load_digits), Wen et al. ECCV 2016")
    fig.tight_layout()
    fig.savefig(out / "center_loss.png", dpi=110)
    plt.close(fig)
    (out / "center_loss.json").write_text(json.dumps(record, indent=2))
    return record
