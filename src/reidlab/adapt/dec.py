"""Deep Embedded Clustering (Xie, Girshick and Farhadi, "Unsupervised Deep Embedding for
Clustering Analysis", ICML 2016).

Soft assignment by Student's t kernel (Eq. 1), the sharpened target distribution over the
whole data set (Eq. 3), and the DEC loop: embed with a pretrained stacked autoencoder
(:mod:`reidlab.adapt.autoencoder`), initialise the centres by k-means (20 restarts), then
minimise ``KL(P || Q)`` over the encoder and the centres by SGD (lr 0.01, momentum 0.9,
batches of 256), refreshing ``P`` from the whole data set every ``update_interval``
iterations and stopping when fewer than ``tol`` (0.1%) of the hard assignments change
between two refreshes.

The DEC code that the notebook (ArronHZG/reid-baseline ``loss/dec_loss.py``) and SSG used
raises the already inverted kernel ``(1 + d^2 / alpha)^-1`` to ``-(alpha + 1) / 2``, which
gives far centres the larger weight, and computes ``P`` per mini-batch; here both follow
the paper.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from reidlab.adapt.autoencoder import StackedAutoencoder, pretrain

log = logging.getLogger("reidlab")


def soft_assign(z: torch.Tensor, centers: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Student's t soft assignment (Eq. 1).

    ``q_ij = (1 + |z_i - mu_j|^2 / alpha)^(-(alpha + 1) / 2)``, normalised over ``j``.

    Args:
        z: (N, D) embedded points.
        centers: (K, D) cluster centres.
        alpha: the kernel's degrees of freedom (1 in the paper).

    Returns:
        (N, K) assignments, each row summing to 1.
    """
    if z.ndim != 2 or centers.ndim != 2 or z.shape[1] != centers.shape[1]:
        raise ValueError(f"soft_assign: z (N, D) and centers (K, D) needed, got "
                         f"{tuple(z.shape)} and {tuple(centers.shape)}")
    if alpha <= 0:
        raise ValueError(f"soft_assign: alpha must be positive, got {alpha}")
    d2 = (z.unsqueeze(1) - centers.unsqueeze(0)).pow(2).sum(-1)  # (N, K)
    kernel = (1.0 + d2 / alpha).pow(-(alpha + 1.0) / 2.0)
    return kernel / kernel.sum(dim=1, keepdim=True)


def target_distribution(q: torch.Tensor) -> torch.Tensor:
    """The auxiliary target (Eq. 3): ``p_ij = (q_ij^2 / f_j) / sum_k (q_ik^2 / f_k)`` with
    cluster frequencies ``f_j = sum_i q_ij``, over every row of ``q`` (the whole data set,
    not a mini-batch).

    Args:
        q: (N, K) soft assignments.

    Returns:
        (N, K), each row summing to 1.
    """
    if q.ndim != 2:
        raise ValueError(f"target_distribution: q must be (N, K), got {tuple(q.shape)}")
    weight = q.pow(2) / q.sum(dim=0, keepdim=True)
    return weight / weight.sum(dim=1, keepdim=True)


def kl_loss(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """``KL(P || Q) = sum_ij p_ij log(p_ij / q_ij)`` (Eq. 2), averaged over the N rows."""
    return (p * (p.clamp_min(1e-12).log() - q.clamp_min(1e-12).log())).sum() / q.shape[0]


@dataclass
class DECResult:
    """Labels (N,), centres (K, D'), the embedding (N, D') and the iterations DEC ran."""

    labels: np.ndarray
    centers: torch.Tensor
    embedding: torch.Tensor
    iterations: int
    initial_labels: np.ndarray  # k-means on the autoencoder embedding, before DEC


def kmeans(z: np.ndarray, k: int, seed: int = 0, n_init: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """k-means (scikit-learn, ``n_init`` restarts): labels (N,) and centres (K, D)."""
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(z)
    return km.labels_.astype(np.int64), km.cluster_centers_


class DEC:
    """Deep Embedded Clustering of a data matrix.

    Args:
        num_clusters: K.
        dims: autoencoder widths after the input (the paper: ``(500, 500, 2000, 10)``).
        alpha: Student's t degrees of freedom.
        update_interval: T, iterations between refreshes of ``P``.
        tol: stop when fewer than this fraction of hard assignments change between two
            refreshes (0.1%).
        max_iters: at most this many DEC iterations.
        batch_size: mini-batch size (256).
        lr: DEC's SGD learning rate (0.01, momentum 0.9).
        layer_iters, finetune_iters: autoencoder pretraining (see
            :func:`~reidlab.adapt.autoencoder.pretrain`).
        seed: seeds pretraining, k-means and batches.
    """

    def __init__(self, num_clusters: int, dims: Sequence[int] = (500, 500, 2000, 10), *,
                 alpha: float = 1.0, update_interval: int = 140, tol: float = 1e-3,
                 max_iters: int = 10000, batch_size: int = 256, lr: float = 0.01,
                 layer_iters: int = 1000, finetune_iters: int = 3000, seed: int = 0) -> None:
        if num_clusters < 2:
            raise ValueError(f"DEC: num_clusters must be at least 2, got {num_clusters}")
        if update_interval < 1 or max_iters < 1:
            raise ValueError("DEC: update_interval and max_iters must be positive")
        self.num_clusters = num_clusters
        self.dims = list(dims)
        self.alpha = alpha
        self.update_interval = update_interval
        self.tol = tol
        self.max_iters = max_iters
        self.batch_size = batch_size
        self.lr = lr
        self.layer_iters = layer_iters
        self.finetune_iters = finetune_iters
        self.seed = seed
        self.autoencoder: StackedAutoencoder | None = None

    def pretrain(self, x: torch.Tensor) -> StackedAutoencoder:
        """Build and pretrain the autoencoder on ``x`` (N, d)."""
        torch.manual_seed(self.seed)
        self.autoencoder = pretrain(StackedAutoencoder([x.shape[1], *self.dims]), x,
                                    layer_iters=self.layer_iters,
                                    finetune_iters=self.finetune_iters,
                                    batch_size=self.batch_size, seed=self.seed)
        return self.autoencoder

    def fit(self, x: torch.Tensor) -> DECResult:
        """Cluster the rows of ``x`` (N, d); pretrains the autoencoder unless done."""
        x = x.float()
        if x.ndim != 2 or len(x) < self.num_clusters:
            raise ValueError(f"DEC.fit: needs (N, d) data with N >= {self.num_clusters}, got "
                             f"{tuple(x.shape)}")
        ae = self.autoencoder or self.pretrain(x)
        encoder = ae.encoder
        with torch.no_grad():
            z0 = encoder(x)
        init, centres = kmeans(z0.numpy(), self.num_clusters, self.seed)
        mu = nn.Parameter(torch.as_tensor(centres, dtype=torch.float32))
        opt = torch.optim.SGD([*encoder.parameters(), mu], lr=self.lr, momentum=0.9)
        gen = torch.Generator().manual_seed(self.seed)
        previous = init
        it = 0
        while it < self.max_iters:
            with torch.no_grad():
                q_all = soft_assign(encoder(x), mu, self.alpha)
            p_all = target_distribution(q_all)
            labels = q_all.argmax(1).numpy()
            changed = float((labels != previous).mean())
            if it > 0 and changed < self.tol:
                log.info("DEC converged at iteration %d: %.3f%% of assignments changed",
                         it, 100 * changed)
                break
            previous = labels
            for _ in range(self.update_interval):
                idx = torch.randint(0, len(x), (min(self.batch_size, len(x)),), generator=gen)
                opt.zero_grad(set_to_none=True)
                loss = kl_loss(soft_assign(encoder(x[idx]), mu, self.alpha), p_all[idx])
                loss.backward()
                opt.step()
                it += 1
                if it >= self.max_iters:
                    break
        with torch.no_grad():
            z = encoder(x)
            labels = soft_assign(z, mu, self.alpha).argmax(1).numpy()
        return DECResult(labels.astype(np.int64), mu.detach().clone(), z, it, init)


def dec_pseudo_labels(feats: torch.Tensor, num_clusters: int, seed: int = 0,
                      dims: Sequence[int] = (500, 500, 2000, 10)) -> np.ndarray:
    """DEC as a pseudo-labeller of target features (N, D): (N,) labels, none dropped."""
    return DEC(num_clusters, dims, seed=seed).fit(feats.detach().cpu().float()).labels
