"""re_rank() and jaccard_distance() against a plain float64 transcription of the authors' code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import jaccard_distance, re_rank


@pytest.mark.parametrize("k1,k2,lam", [(20, 6, 0.3), (7, 1, 0.0), (5, 3, 1.0), (10, 20, 0.5)])
def test_re_rank_matches_transcription(
    k1, k2, lam, reference_re_ranking, clustered_features
) -> None:
    feats, _ = clustered_features(0, 260)
    q, g = feats[:60], feats[60:]
    expected, _ = reference_re_ranking(q, g, k1, k2, lam)
    got = re_rank(q, g, k1, k2, lam, block_size=64)  # several tiles, a partial last one
    assert got.shape == (60, 200) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)


def test_re_rank_float32_within_1e5(reference_re_ranking, clustered_features) -> None:
    feats, _ = clustered_features(1, 260)
    q, g = feats[:60].astype(np.float32), feats[60:].astype(np.float32)
    expected, _ = reference_re_ranking(q, g, 20, 6, 0.3)
    got = re_rank(torch.from_numpy(q), torch.from_numpy(g), block_size=100)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_re_rank_duplicate_features_tie_by_index(reference_re_ranking, clustered_features) -> None:
    feats, _ = clustered_features(2, 120, noise=0.3)
    feats[10] = feats[3]  # exact duplicates: distance 0 ties broken by index
    feats[70:73] = feats[50]
    q, g = feats[:30], feats[30:]
    expected, _ = reference_re_ranking(q, g, 6, 3, 0.3)
    np.testing.assert_allclose(re_rank(q, g, 6, 3, 0.3, block_size=32), expected, atol=1e-10)


def test_jaccard_distance_sparse_convention(reference_re_ranking, clustered_features) -> None:
    feats, _ = clustered_features(3, 150)
    _, expected = reference_re_ranking(feats[:1], feats[1:], 10, 4, 0.3)
    jac = jaccard_distance(feats, k1=10, k2=4, block_size=40)
    dense = np.ones(jac.shape)
    coo = jac.tocoo()
    dense[coo.row, coo.col] = coo.data
    np.testing.assert_allclose(dense, expected, atol=1e-10)
    # an image is at distance 0 from itself, stored explicitly (absent would mean 1)
    assert np.count_nonzero(coo.row == coo.col) == len(feats)
    np.testing.assert_allclose(jac.diagonal(), 0.0, atol=1e-12)
    rows, cols = np.array([5, 1, 7]), np.arange(100, 150)
    sub = jaccard_distance(feats, 10, 4, rows=rows, cols=cols)
    sub_dense = np.ones(sub.shape)
    c = sub.tocoo()
    sub_dense[c.row, c.col] = c.data
    np.testing.assert_allclose(sub_dense, expected[np.ix_(rows, cols)], atol=1e-10)


def test_errors(clustered_features) -> None:
    feats, _ = clustered_features(4, 20)
    with pytest.raises(ValueError, match="dim"):
        re_rank(feats[:5], feats[5:, :8])
    with pytest.raises(ValueError, match="k1"):
        re_rank(feats[:5], feats[5:], k1=0)


def test_re_rank_from_the_plain_euclidean_distance(reference_re_ranking, clustered_features):
    feats, _ = clustered_features(3, 200)
    feats = feats / np.linalg.norm(feats, axis=1, keepdims=True)  # normalised, as tested
    q, g = feats[:50], feats[50:]
    expected, _ = reference_re_ranking(q, g, 24, 6, 0.3, squared=False)
    got = re_rank(q, g, 24, 6, 0.3, distance="euclidean", block_size=64)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10)
    squared, _ = reference_re_ranking(q, g, 24, 6, 0.3)
    assert np.abs(got - squared).max() > 1e-3  # the two starting points do differ
    with pytest.raises(ValueError, match="distance"):
        re_rank(q, g, distance="cosine")
