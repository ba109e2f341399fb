"""Pseudo identities from target-domain distances: the DBSCAN ``eps`` rule, DBSCAN on a
sparse precomputed distance, noise dropping and renumbering, and the scores a clustering
is judged by when the true identities are known (purity, NMI, Hungarian accuracy).

The ``eps`` rule and DBSCAN settings are those of SSG (Fu et al., "Self-similarity
Grouping: A Simple Unsupervised Cross Domain Adaptation Approach for Person
Re-identification", ICCV 2019): ``eps`` is the mean of the smallest ``rho = 1.6e-3``
fraction of the pairwise distances, ``min_samples = 4``, and the distances are k-reciprocal
Jaccard distances (Zhong et al., CVPR 2017).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from reidlab.evaluation import jaccard_distance
from reidlab.evaluation.distance import self_neighbours

log = logging.getLogger("reidlab")

RHO = 1.6e-3
MIN_SAMPLES = 4


def target_distance(feats: torch.Tensor, k1: int = 20, k2: int = 6,
                    lambda_value: float = 0.0) -> sp.csr_matrix:
    """The clustering distance of target images, sparse: absent entries are far.

    ``lambda_value = 0`` gives the k-reciprocal Jaccard distance (SSG); a positive value
    the re-ranked distance ``(1 - lambda) J + lambda d / max_l d(i, l)`` of Zhong et al.
    (the notebook's code used k1 20, k2 6, lambda 0.3), with ``d`` the squared Euclidean
    distance. The blend is computed on the pairs whose Jaccard distance is below 1; every
    other pair is at least ``1 - lambda`` away and is left absent (see
    :func:`dbscan_labels`, which refuses an ``eps`` that large).

    Args:
        feats: (N, D) features, L2-normalised as the test features are.

    Returns:
        (N, N) ``scipy.sparse.csr_matrix`` of the stored distances (explicit zeros kept).
    """
    if not 0.0 <= lambda_value < 1.0:
        raise ValueError(f"adapt.lambda_value must be in [0, 1), got {lambda_value}")
    jac = jaccard_distance(feats, k1, k2)
    jac.data = np.clip(jac.data, 0.0, 1.0)  # round-off gives -1e-16 for identical encodings
    if lambda_value == 0.0:
        return jac
    x = feats.float()
    row_max = self_neighbours(x, 1).row_max.astype(np.float64)
    row_max = np.where(row_max > 0, row_max, 1.0)
    coo = jac.tocoo()
    xs = x.cpu().numpy().astype(np.float64)
    sq = np.einsum("nd,nd->n", xs, xs)
    d = np.maximum(sq[coo.row] + sq[coo.col] - 2 * np.einsum("pd,pd->p", xs[coo.row],
                                                             xs[coo.col]), 0.0)
    value = (1 - lambda_value) * coo.data + lambda_value * d / row_max[coo.row]
    return sp.csr_matrix((value, (coo.row, coo.col)), shape=jac.shape)


def dbscan_eps(dist: sp.spmatrix, rho: float = RHO, min_count: int = 20,
               absent: float = 1.0) -> float:
    """The mean of the smallest ``round(rho * P)`` distances among the ``P = N (N - 1) / 2``
    pairs ``i < j`` (at least ``min_count`` of them, as the notebook's code has it).

    Args:
        dist: (N, N) sparse distances; pairs not stored are at distance ``absent``.
        rho: the fraction of pairs (SSG: 1.6e-3).
        min_count: the fewest distances averaged.
        absent: the distance of a pair that is not stored (1 for the Jaccard distance).
    """
    n = dist.shape[0]
    if dist.shape != (n, n) or n < 2:
        raise ValueError(f"dbscan_eps: needs a square distance of 2 or more images, got "
                         f"{dist.shape}")
    pairs = n * (n - 1) // 2
    count = min(pairs, max(int(round(rho * pairs)), min_count))
    coo = sp.triu(dist, k=1).tocoo()
    values = np.sort(coo.data)[:count]
    if len(values) < count:  # fewer stored pairs than asked: the rest are `absent` away
        values = np.concatenate([values, np.full(count - len(values), absent)])
    eps = float(values.mean())
    log.info("DBSCAN eps %.4f: the mean of the smallest %d of %d pairwise distances",
             eps, count, pairs)
    return eps


def dbscan_labels(dist: sp.spmatrix, eps: float, min_samples: int = MIN_SAMPLES,
                  far: float = 1.0) -> np.ndarray:
    """DBSCAN (Ester et al., KDD 1996; scikit-learn) on a sparse precomputed distance.

    Stored entries up to ``eps`` are neighbours, explicit zeros included; absent entries
    never are. Each image is its own neighbour (the diagonal is stored as 0).

    Args:
        dist: (N, N) sparse distances.
        eps: the neighbourhood radius.
        min_samples: neighbours (itself included) that make a core point.
        far: the smallest distance an absent pair may have; ``eps`` must stay below it.

    Returns:
        (N,) labels, ``-1`` for noise, clusters ``0 .. K-1``.
    """
    from sklearn.cluster import DBSCAN

    if not 0 < eps < far:
        raise ValueError(f"DBSCAN eps {eps:.4f} must be in (0, {far}): pairs not stored in "
                         "the sparse distance are at least that far")
    m = sp.csr_matrix(dist, dtype=np.float64, copy=True)
    m.setdiag(0.0)  # an explicit zero: every image neighbours itself
    m.sort_indices()
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(m)
    return np.asarray(labels, dtype=np.int64)


@dataclass
class PseudoLabels:
    """The kept images of a clustering and their renumbered labels.

    Attributes:
        keep: (N,) bool, False for noise (label -1).
        labels: (N,) int64, ``0 .. num_clusters - 1`` for kept images, -1 for the others;
            clusters numbered by their original label's order.
        num_clusters: K.
    """

    keep: np.ndarray
    labels: np.ndarray
    num_clusters: int

    @property
    def kept_fraction(self) -> float:
        return float(self.keep.mean()) if len(self.keep) else 0.0


def renumber(labels: np.ndarray) -> PseudoLabels:
    """Drop noise (``-1``) and renumber the remaining clusters ``0 .. K-1``, in the order of
    their labels (any ids: DEC's, DBSCAN's, with gaps)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"renumber: labels must be (N,), got {labels.shape}")
    keep = labels >= 0
    out = np.full(labels.shape, -1, dtype=np.int64)
    uniq, inverse = np.unique(labels[keep], return_inverse=True)
    out[keep] = inverse
    return PseudoLabels(keep, out, len(uniq))


def _contingency(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    pred, true = np.asarray(pred), np.asarray(true)
    if pred.shape != true.shape or pred.ndim != 1 or len(pred) == 0:
        raise ValueError(f"clustering scores need two (N,) label arrays, N > 0; got "
                         f"{pred.shape} and {true.shape}")
    _, p = np.unique(pred, return_inverse=True)
    _, t = np.unique(true, return_inverse=True)
    table = np.zeros((p.max() + 1, t.max() + 1), dtype=np.int64)
    np.add.at(table, (p, t), 1)
    return table  # (clusters, classes)


def purity(pred: np.ndarray, true: np.ndarray) -> float:
    """Cluster purity: each cluster counted for its most frequent true class, over N."""
    table = _contingency(pred, true)
    return float(table.max(axis=1).sum() / table.sum())


def nmi(pred: np.ndarray, true: np.ndarray) -> float:
    """Normalised mutual information (scikit-learn, arithmetic mean normalisation)."""
    from sklearn.metrics import normalized_mutual_info_score

    _contingency(pred, true)
    return float(normalized_mutual_info_score(true, pred))


def cluster_accuracy(pred: np.ndarray, true: np.ndarray) -> float:
    """Unsupervised clustering accuracy (Xie et al., ICML 2016): the accuracy of the best
    one-to-one map from clusters to classes, found by the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``); unmatched clusters count as errors."""
    from scipy.optimize import linear_sum_assignment

    table = _contingency(pred, true)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())
