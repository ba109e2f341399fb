"""Features in, metrics out: distances, optional query expansion and re-ranking, ranking;
and the per-query nearest gallery images for pictures."""

from __future__ import annotations

import numpy as np
import torch

from reidlab.evaluation.distance import (
    ArrayLike,
    DeviceLike,
    Metric,
    as_features,
    as_tensor,
    distance_block,
    l2_normalize,
    prepare_gallery,
    resolve_device,
    rows_per_chunk,
    smallest_k,
)
from reidlab.evaluation.ranking import Ranker, RankResult, rank
from reidlab.evaluation.rerank import re_rank

#: Distance entries per query chunk when ranking from features (float32: 128 MiB).
EVAL_CHUNK_ELEMENTS = 1 << 25


def evaluate(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    metric: Metric = "cosine",
    rerank: bool = False,
    *,
    max_rank: int = 50,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    rerank_distance: str = "squared",
    query_expansion: int = 0,
    qe_alpha: float = 3.0,
    chunk_size: int | None = None,
    block_size: int = 2048,
    device: DeviceLike = None,
) -> RankResult:
    """CMC / mAP / mINP of query against gallery features (Market-1501 protocol).

    Without re-ranking the Q x G distance matrix is never materialised: each chunk of
    queries is turned into distances and ranked at once (:class:`Ranker`), so memory is
    the features plus one chunk. Results equal :func:`rank` on
    :func:`pairwise_distance` of the same features.

    Args:
        q_feats: (Q, D) query features, numpy or torch.
        g_feats: (G, D) gallery features.
        q_pids, q_camids: (Q,) query identities and cameras.
        g_pids, g_camids: (G,) gallery identities and cameras (pid -1: junk).
        metric: ``"cosine"`` (1 - cos) or ``"euclidean"`` (squared Euclidean).
        rerank: apply k-reciprocal re-ranking (Zhong et al., CVPR 2017). It works on the
            squared Euclidean distance; with ``metric="cosine"`` the features are
            L2-normalised first. Materialises the (Q, G) re-ranked distance.
        max_rank: CMC length.
        k1, k2, lambda_value: re-ranking parameters (paper defaults 20, 6, 0.3).
        rerank_distance: re-ranking from the ``"squared"`` or plain ``"euclidean"`` distance.
        query_expansion: alpha-QE neighbours (Radenovic et al., TPAMI 2018); 0 is off.
            Expanded queries are unit vectors, so with it the gallery is L2-normalised too.
        qe_alpha: alpha-QE exponent.
        chunk_size: queries per chunk (default: about 32 Mi distances per chunk).
        block_size: tile size of the re-ranking neighbour search.
        device: torch device for distances and ranking (default CPU).

    Returns:
        :class:`RankResult`.
    """
    dev = resolve_device(device)
    q, g = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats has dim {q.shape[1]} but g_feats has dim {g.shape[1]}")
    for t, name, what in ((q, "q_feats", "query"), (g, "g_feats", "gallery image")):
        if t.shape[0] == 0:
            raise ValueError(f"{name} is empty: no {what} features to evaluate")
        check_finite_features(t, name, what)
    for name, labels, n in (
        ("q_pids", q_pids, q.shape[0]),
        ("q_camids", q_camids, q.shape[0]),
        ("g_pids", g_pids, g.shape[0]),
        ("g_camids", g_camids, g.shape[0]),
    ):
        if len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries but there are {n} features")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric: expected 'cosine' or 'euclidean', got {metric!r}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    q, g = q.to(dtype), g.to(dtype)
    if query_expansion > 0:
        q = alpha_query_expansion(q, g, query_expansion, qe_alpha, device=dev)
        g = l2_normalize(g.to(dev))
    if rerank:
        if metric == "cosine":
            q, g = l2_normalize(q.to(dev)), l2_normalize(g.to(dev))
        dist = re_rank(q, g, k1, k2, lambda_value, distance=rerank_distance,
                       block_size=block_size, device=dev)
        return rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank, device=dev)
    ranker = Ranker(q_pids, g_pids, q_camids, g_camids, max_rank, dev)
    gallery = prepare_gallery(g.to(dev), metric)
    step = rows_per_chunk(g.shape[0], chunk_size, EVAL_CHUNK_ELEMENTS)
    for s in range(0, q.shape[0], step):
        ranker.update(distance_block(q[s : s + step].to(dev), gallery), s)
    return ranker.compute()


def check_finite_features(feats: torch.Tensor, name: str, what: str) -> None:
    """Raise naming the first row of ``feats`` (N, D) with a NaN or infinite value."""
    bad = ~torch.isfinite(feats)
    if bool(bad.any()):
        row, col = (int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{name}: {what} {row} has a non-finite feature value "
                         f"({float(feats[row, col])} in dimension {col})")


def topk(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    k: int = 10,
    metric: Metric = "cosine",
    *,
    q_pids: ArrayLike | None = None,
    g_pids: ArrayLike | None = None,
    q_camids: ArrayLike | None = None,
    g_camids: ArrayLike | None = None,
    chunk_size: int | None = None,
    device: DeviceLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest gallery images of every query, computed in chunks of queries.

    Args:
        q_feats: (Q, D) query features (numpy or torch).
        g_feats: (G, D) gallery features.
        k: neighbours per query.
        metric: ``"cosine"`` (1 - cos) or ``"euclidean"`` (squared).
        q_pids, g_pids, q_camids, g_camids: when all four are given, gallery images the
            Market-1501 protocol excludes for a query (junk pid -1, or same pid and same
            camera) are left out of its list, as in :func:`~reidlab.evaluation.rank`.
        chunk_size: queries per chunk (default: about 64 Mi distances per chunk).
        device: torch device for the distance blocks (default CPU).

    Returns:
        ``(indices, distances)``, both (Q, k): gallery indices nearest first (ties by lower
        index) and their distances. Where fewer than ``k`` gallery images are allowed,
        the row ends with index -1 and distance ``inf``.
    """
    dev = resolve_device(device)
    q, g = as_features(q_feats, "q_feats"), as_features(g_feats, "g_feats")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"q_feats has dim {q.shape[1]} but g_feats has dim {g.shape[1]}")
    given = [x is not None for x in (q_pids, g_pids, q_camids, g_camids)]
    if any(given) and not all(given):
        raise ValueError("topk: give all of q_pids, g_pids, q_camids, g_camids, or none")
    labels = None
    if q_pids is not None and g_pids is not None and q_camids is not None and g_camids is not None:
        labels = [
            as_tensor(x, n).to(dev)
            for x, n in (
                (q_pids, "q_pids"),
                (g_pids, "g_pids"),
                (q_camids, "q_camids"),
                (g_camids, "g_camids"),
            )
        ]
    gallery = prepare_gallery(g.to(dev), metric)
    num_q, num_g = q.shape[0], g.shape[0]
    k_eff = min(k, num_g)
    out_i = np.full((num_q, k), -1, dtype=np.int64)
    out_v = np.full((num_q, k), np.inf, dtype=np.float64)
    step = rows_per_chunk(num_g, chunk_size)
    for s in range(0, num_q, step):
        d = distance_block(q[s : s + step].to(dev, gallery.feats.dtype), gallery)
        if labels is not None:
            qp, gp, qc, gc = labels
            banned = (gp[None, :] == -1) | (
                (gp[None, :] == qp[s : s + step, None]) & (gc[None, :] == qc[s : s + step, None])
            )
            d.masked_fill_(banned, float("inf"))
        v, i = smallest_k(d.cpu().numpy(), k_eff)
        out_i[s : s + step, :k_eff] = np.where(np.isposinf(v), -1, i)
        out_v[s : s + step, :k_eff] = v
    return out_i, out_v


def alpha_query_expansion(
    q_feats: ArrayLike,
    g_feats: ArrayLike,
    num_neighbours: int,
    alpha: float = 3.0,
    *,
    chunk_size: int | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """alpha-weighted query expansion (alpha-QE; Radenovic, Tolias and Chum, TPAMI 2018).

    Each L2-normalised query ``q`` is replaced by ``normalize(q + sum_i w_i g_i)`` over its
    ``num_neighbours`` most cosine-similar L2-normalised gallery images ``g_i`` (ties by
    lower index), with ``w_i = max(cos(q, g_i), 0) ** alpha``; the query itself has
    weight 1 (its similarity to itself).

    Args:
        q_feats: (Q, D) query features.
        g_feats: (G, D) gallery features.
        num_neighbours: gallery neighbours averaged in (0 returns the normalised queries).
        alpha: exponent on the similarities.

    Returns:
        (Q, D) expanded, L2-normalised query features (torch, on ``device``).
    """
    dev = resolve_device(device)
    q = l2_normalize(as_features(q_feats, "q_feats").to(dev))
    g = l2_normalize(as_features(g_feats, "g_feats").to(dev, q.dtype))
    n = min(num_neighbours, g.shape[0])
    if n <= 0:
        return q
    out = torch.empty_like(q)
    step = rows_per_chunk(g.shape[0], chunk_size)
    for s in range(0, q.shape[0], step):
        qc = q[s : s + step]
        neg_sim, nearest = smallest_k(torch.mm(qc, g.T).neg_().cpu().numpy(), n)
        w = torch.from_numpy(-neg_sim).to(dev).clamp_min(0.0).pow(alpha)  # (B, n)
        idx = torch.from_numpy(nearest).to(dev)
        expanded = qc + torch.einsum("bn,bnd->bd", w, g[idx])
        out[s : s + step] = l2_normalize(expanded)
    return out
