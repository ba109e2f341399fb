"""The DBSCAN eps rule, DBSCAN on sparse distances, noise dropping and renumbering, and the
clustering scores, on constructed cases worked out by hand."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from reidlab.adapt.cluster import (
    cluster_accuracy,
    dbscan_eps,
    dbscan_labels,
    nmi,
    purity,
    renumber,
    target_distance,
)


def sym(n, pairs):
    """A symmetric sparse (n, n) distance holding only ``pairs`` {(i, j): d}."""
    rows, cols, vals = [], [], []
    for (i, j), d in pairs.items():
        rows += [i, j]
        cols += [j, i]
        vals += [d, d]
    return sp.csr_matrix((vals, (rows, cols)), shape=(n, n))


def test_eps_is_the_mean_of_the_smallest_fraction_of_pairs():
    # 6 images: 15 pairs; rho 0.2 -> the 3 smallest upper-triangle distances.
    d = sym(6, {(0, 1): 0.1, (0, 2): 0.5, (1, 2): 0.2, (3, 4): 0.3, (4, 5): 0.9, (2, 5): 0.7})
    assert dbscan_eps(d, rho=0.2, min_count=1) == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    # At least min_count distances: 5 of them.
    assert dbscan_eps(d, rho=0.01, min_count=5) == pytest.approx((0.1 + 0.2 + 0.3 + 0.5 + 0.7)
                                                                  / 5)
    # More than are stored: the rest are absent, at distance `absent`.
    assert dbscan_eps(d, rho=0.6, min_count=1, absent=1.0) == pytest.approx(
        (0.1 + 0.2 + 0.3 + 0.5 + 0.7 + 0.9 + 3 * 1.0) / 9)
    # The notebook's floor of 20 is capped at the number of pairs.
    assert dbscan_eps(d, rho=1e-3, min_count=20, absent=1.0) == pytest.approx(
        (2.7 + 9 * 1.0) / 15)


def test_eps_ignores_the_lower_triangle_and_the_diagonal():
    d = sym(4, {(0, 1): 0.2, (2, 3): 0.4}) + sp.identity(4) * 0.05
    assert dbscan_eps(d, rho=0.34, min_count=1) == pytest.approx(0.3)  # round(0.34*6) = 2


def test_dbscan_on_sparse_distances_drops_noise_and_renumbers():
    pairs = {}
    for group in ([0, 1, 2, 3], [5, 6, 7, 8]):
        for a in group:
            for b in group:
                if a < b:
                    pairs[(a, b)] = 0.1
    pairs[(4, 9)] = 0.1  # a pair: too few for min_samples 4, so noise
    pairs[(3, 5)] = 0.9  # stored but beyond eps: not a neighbour
    d = sym(11, pairs)  # image 10 has no stored distance at all
    labels = dbscan_labels(d, eps=0.2, min_samples=4)
    assert labels[4] == labels[9] == labels[10] == -1
    assert len(set(labels[[0, 1, 2, 3]])) == 1 and len(set(labels[[5, 6, 7, 8]])) == 1
    assert labels[0] != labels[5] and labels[0] >= 0 and labels[5] >= 0

    pl = renumber(np.array([7, 7, -1, 3, 3, 9, -1]))
    assert pl.keep.tolist() == [True, True, False, True, True, True, False]
    assert pl.labels.tolist() == [1, 1, -1, 0, 0, 2, -1]
    assert pl.num_clusters == 3
    assert pl.kept_fraction == pytest.approx(5 / 7)


def test_each_image_neighbours_itself_without_a_stored_diagonal():
    # 4 images, each with 3 stored neighbours at 0.1, no diagonal: 4 with itself.
    d = sym(4, {(a, b): 0.1 for a in range(4) for b in range(4) if a < b})
    assert dbscan_labels(d, eps=0.2, min_samples=4).tolist() == [0, 0, 0, 0]
    assert dbscan_labels(d, eps=0.2, min_samples=5).tolist() == [-1, -1, -1, -1]


def test_dbscan_refuses_an_eps_beyond_the_absent_distance():
    with pytest.raises(ValueError, match="eps"):
        dbscan_labels(sym(4, {(0, 1): 0.1}), eps=0.8, far=0.7)


def test_clustering_scores_on_known_permutations():
    true = np.array([0, 0, 1, 1, 2, 2])
    permuted = np.array([2, 2, 0, 0, 1, 1])
    assert cluster_accuracy(permuted, true) == 1.0
    assert purity(permuted, true) == 1.0
    assert nmi(permuted, true) == pytest.approx(1.0)
    one_wrong = np.array([2, 2, 0, 1, 1, 1])
    assert cluster_accuracy(one_wrong, true) == pytest.approx(5 / 6)
    assert purity(one_wrong, true) == pytest.approx(5 / 6)
    # A split class: every cluster pure, but only one of the halves can be matched.
    split = np.array([0, 0, 1, 1, 2, 3])
    assert purity(split, true) == 1.0
    assert cluster_accuracy(split, true) == pytest.approx(5 / 6)
    # Everything in one cluster: accuracy and purity 1/3, no information.
    lump = np.zeros(6, dtype=int)
    assert cluster_accuracy(lump, true) == pytest.approx(1 / 3)
    assert nmi(lump, true) == pytest.approx(0.0)


def test_reranked_blend_matches_its_formula_on_the_stored_pairs():
    torch.manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(30, 8), dim=1)
    jac = target_distance(x, k1=5, k2=1, lambda_value=0.0)
    blend = target_distance(x, k1=5, k2=1, lambda_value=0.3)
    d = torch.cdist(x.double(), x.double()).pow(2).numpy()
    row_max = d.max(1)
    coo = jac.tocoo()
    expected = 0.7 * coo.data + 0.3 * d[coo.row, coo.col] / row_max[coo.row]
    got = np.asarray(blend[coo.row, coo.col]).ravel()
    assert np.allclose(got, expected, atol=1e-6)
    assert jac.data.min() >= 0.0 and jac.data.max() < 1.0
