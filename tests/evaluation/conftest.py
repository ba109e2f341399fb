"""Plain, slow reference implementations the evaluation tests compare against.

They are handed to the tests as fixtures (``full_sort_rank`` ...), written for clarity, not
speed, and share no code with ``reidlab.evaluation``.
"""

from __future__ import annotations

import numpy as np
import pytest


def _full_sort_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """Market-1501 CMC / mAP / mINP by a stable full sort of every query's row."""
    cmcs, aps, inps = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        junk = g_pids[order] == -1
        same = (g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i])
        matches = (g_pids[order] == q_pids[i])[~(junk | same)].astype(np.int64)
        if not matches.any():
            continue
        hit = np.minimum(matches.cumsum(), 1)
        hit = np.concatenate([hit, np.ones(max(0, max_rank - len(hit)), dtype=np.int64)])
        cmcs.append(hit[:max_rank])
        positions = np.nonzero(matches)[0]  # 0-based ranks of the true matches
        precision = np.arange(1, len(positions) + 1) / (positions + 1.0)
        aps.append(precision.mean())
        inps.append(len(positions) / (positions[-1] + 1.0))
    cmc = np.asarray(cmcs).sum(0) / len(cmcs)
    return cmc, float(np.mean(aps)), float(np.mean(inps)), len(cmcs)


@pytest.fixture
def full_sort_rank():
    return _full_sort_rank


def _reference_re_ranking(q, g, k1, k2, lambda_value, squared=True):
    """The authors' re_ranking (Zhong et al., CVPR 2017) transcribed plainly, in float64.

    Returns the final (Q, G) distance and the (Q+G, Q+G) Jaccard distance of all rows.
    Ties in the initial ranking are broken by index (a stable sort).
    """
    feat = np.concatenate([q, g]).astype(np.float64)
    n, num_q = len(feat), len(q)
    dist = ((feat[:, None, :] - feat[None, :, :]) ** 2).sum(-1)
    if not squared:  # the notebook's tools/test.py starts from the plain distance
        dist = np.sqrt(dist)
    dist = np.transpose(dist / np.max(dist, axis=0))
    initial_rank = np.argsort(dist, axis=1, kind="stable")
    V = np.zeros((n, n))
    half = int(np.around(k1 / 2))
    for i in range(n):
        forward = initial_rank[i, : k1 + 1]
        backward = initial_rank[forward, : k1 + 1]
        reciprocal = forward[np.where(backward == i)[0]]
        expansion = reciprocal
        for candidate in reciprocal:
            c_forward = initial_rank[candidate, : half + 1]
            c_backward = initial_rank[c_forward, : half + 1]
            c_reciprocal = c_forward[np.where(c_backward == candidate)[0]]
            if len(np.intersect1d(c_reciprocal, reciprocal)) > 2 / 3 * len(c_reciprocal):
                expansion = np.append(expansion, c_reciprocal)
        expansion = np.unique(expansion)
        weight = np.exp(-dist[i, expansion])
        V[i, expansion] = weight / np.sum(weight)
    if k2 != 1:
        V = np.stack([V[initial_rank[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((n, n))
    for i in range(n):
        overlap = np.minimum(V[i][None, :], V).sum(axis=1)
        jaccard[i] = 1 - overlap / (2 - overlap)
    final = jaccard[:num_q] * (1 - lambda_value) + dist[:num_q] * lambda_value
    return final[:, num_q:], jaccard


@pytest.fixture
def reference_re_ranking():
    return _reference_re_ranking


def _clustered_features(seed: int, n: int, dim: int = 16, ids: int = 30, noise: float = 0.6):
    """Random identity centroids plus noise: neighbourhoods with real k-reciprocal structure."""
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((ids, dim))
    labels = rng.integers(0, ids, n)
    return centroids[labels] + noise * rng.standard_normal((n, dim)), labels


@pytest.fixture
def clustered_features():
    return _clustered_features
