"""evaluate(), topk() and alpha-QE against explicit distance matrices and plain loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import (
    alpha_query_expansion,
    evaluate,
    pairwise_distance,
    rank,
    re_rank,
    topk,
)


def labelled_features(seed: int, num_q: int = 50, num_g: int = 240, dim: int = 24):
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((15, dim))
    q_pids, g_pids = rng.integers(1, 15, num_q), rng.integers(-1, 15, num_g)
    q = centroids[q_pids] + 0.8 * rng.standard_normal((num_q, dim))
    g = centroids[np.maximum(g_pids, 0)] + 0.8 * rng.standard_normal((num_g, dim))
    return q, g, q_pids, g_pids, rng.integers(0, 4, num_q), rng.integers(0, 4, num_g)


def same(a, b) -> None:
    np.testing.assert_array_equal(a.cmc, b.cmc)
    assert a.mAP == pytest.approx(b.mAP, rel=1e-12)
    assert a.mINP == pytest.approx(b.mINP, rel=1e-12)
    assert a.num_valid_queries == b.num_valid_queries


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_evaluate_equals_rank_on_explicit_matrix(metric) -> None:
    q, g, *labels = labelled_features(0)
    expected = rank(pairwise_distance(q, g, metric), *labels, max_rank=10)
    same(evaluate(q, g, *labels, metric=metric, max_rank=10, chunk_size=7), expected)
    same(evaluate(torch.from_numpy(q), g, *labels, metric=metric, max_rank=10), expected)


def test_pairwise_distance_values() -> None:
    q, g, *_ = labelled_features(1, 5, 7)
    sq = ((q[:, None] - g[None]) ** 2).sum(-1)
    cos = 1 - (q @ g.T) / np.linalg.norm(q, axis=1)[:, None] / np.linalg.norm(g, axis=1)[None]
    np.testing.assert_allclose(pairwise_distance(q, g, "euclidean").numpy(), sq, rtol=1e-10)
    np.testing.assert_allclose(pairwise_distance(q, g, "cosine").numpy(), cos, atol=1e-12)


def test_evaluate_with_rerank_equals_rank_of_re_rank() -> None:
    q, g, *labels = labelled_features(2)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = rank(re_rank(qn, gn, 10, 3, 0.4), *labels)
    same(evaluate(q, g, *labels, rerank=True, k1=10, k2=3, lambda_value=0.4), expected)


def plain_alpha_qe(q, g, n, alpha):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    out = []
    for x in qn:
        sims = gn @ x
        top = np.argsort(-sims, kind="stable")[:n]
        y = x + (np.maximum(sims[top], 0) ** alpha) @ gn[top]
        out.append(y / np.linalg.norm(y))
    return np.array(out)


@pytest.mark.parametrize("n,alpha", [(1, 3.0), (5, 3.0), (10, 1.5)])
def test_alpha_query_expansion_matches_plain_loop(n, alpha) -> None:
    q, g, *_ = labelled_features(3)
    got = alpha_query_expansion(q, g, n, alpha, chunk_size=8).numpy()
    np.testing.assert_allclose(got, plain_alpha_qe(q, g, n, alpha), atol=1e-12)


def test_evaluate_with_query_expansion() -> None:
    q, g, *labels = labelled_features(4)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = rank(pairwise_distance(plain_alpha_qe(q, g, 4, 3.0), gn, "cosine"), *labels)
    got = evaluate(q, g, *labels, query_expansion=4, qe_alpha=3.0)
    assert got.mAP == pytest.approx(expected.mAP, rel=1e-9)
    np.testing.assert_array_equal(got.cmc, expected.cmc)


def test_topk_matches_stable_sort_and_excludes() -> None:
    q, g, q_pids, g_pids, q_cams, g_cams = labelled_features(5)
    g[7] = g[3]  # a tie, broken by the lower index
    idx, dist = topk(q, g, 12, "euclidean", chunk_size=5)
    full = pairwise_distance(q, g, "euclidean").numpy()
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :12])
    np.testing.assert_allclose(dist, np.take_along_axis(full, idx, 1))
    idx, _ = topk(
        q, g, 12, "euclidean", q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams
    )
    for i in range(len(q)):
        banned = (g_pids == -1) | ((g_pids == q_pids[i]) & (g_cams == q_cams[i]))
        order = np.argsort(np.where(banned, np.inf, full[i]), kind="stable")
        np.testing.assert_array_equal(idx[i], order[:12])


def test_topk_pads_when_too_few_allowed() -> None:
    q, g = np.eye(2, 3), np.eye(3)
    idx, dist = topk(
        q,
        g,
        4,
        q_pids=np.array([1, 2]),
        g_pids=np.array([1, -1, 3]),
        q_camids=np.array([0, 0]),
        g_camids=np.array([0, 1, 1]),
    )
    np.testing.assert_array_equal(idx, [[2, -1, -1, -1], [0, 2, -1, -1]])
    assert np.isinf(dist[0, 1:]).all()


def test_evaluate_errors() -> None:
    q, g, *labels = labelled_features(6)
    with pytest.raises(ValueError, match="q_pids"):
        evaluate(q, g, labels[0][:-1], *labels[1:])
    with pytest.raises(ValueError, match="metric"):
        evaluate(q, g, *labels, metric="manhattan")
    with pytest.raises(ValueError, match="dim"):
        evaluate(q, g[:, :5], *labels)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu() -> None:
    q, g, *labels = labelled_features(7, 80, 400)
    cpu = evaluate(q, g, *labels, metric="euclidean")
    same(evaluate(q, g, *labels, metric="euclidean", device="cuda"), cpu)
    dist = pairwise_distance(q, g, "euclidean")
    same(rank(dist.cuda(), *labels, device="cuda"), rank(dist, *labels))
    np.testing.assert_allclose(re_rank(q, g, device="cuda"), re_rank(q, g), rtol=0, atol=1e-10)
