"""Exact selection primitives and the tiled self-neighbour search against full sorts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation.distance import (
    duplicate_groups,
    self_neighbours,
    smallest_k,
    sort_pairs,
)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sort_pairs_orders_by_value_then_index(dtype) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(-3, 3, (20, 30)).astype(dtype)
    values[0, :3] = [-0.0, 0.0, np.inf]
    index = np.stack([rng.permutation(1000)[:30] for _ in range(20)])
    v, i = sort_pairs(values, index)
    for r in range(20):
        order = np.lexsort((index[r], values[r]))
        np.testing.assert_array_equal(i[r], index[r][order])
        np.testing.assert_array_equal(v[r], values[r][order])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 29, 40])
def test_smallest_k_is_a_stable_sort_prefix(dtype, k) -> None:
    values = np.random.default_rng(k).integers(0, 4, (50, 30)).astype(dtype)  # many ties
    v, i = smallest_k(values, k)
    order = np.argsort(values, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(i, order)
    np.testing.assert_array_equal(v, np.take_along_axis(values, order, 1))


def test_duplicate_groups() -> None:
    x = torch.randn(10, 4)
    assert duplicate_groups(x) is None
    x[7] = x[2]
    x[9] = x[2]
    x[5, 0] = -0.0
    x[6] = x[5]
    x[6, 0] = 0.0  # -0.0 and 0.0 are the same value
    np.testing.assert_array_equal(duplicate_groups(x), [0, 1, 2, 3, 4, 5, 5, 2, 8, 2])


@pytest.mark.parametrize("block_size", [7, 32, 1000])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_self_neighbours_matches_brute_force(block_size, dtype) -> None:
    rng = np.random.default_rng(block_size)
    centroids = rng.standard_normal((8, 6))
    x = torch.from_numpy(centroids[rng.integers(0, 8, 90)] + 0.3 * rng.standard_normal((90, 6)))
    x[40] = x[11]  # exact duplicates: distance 0, tie by index
    x = x.to(dtype)
    knn = self_neighbours(x, 12, split=25, block_size=block_size)
    xd = x.double()
    full = ((xd[:, None] - xd[None]) ** 2).sum(-1).numpy()
    order = np.argsort(full, axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(knn.indices, order)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    np.testing.assert_allclose(knn.distances, np.take_along_axis(full, order, 1), atol=tol)
    np.testing.assert_allclose(knn.row_max, full.max(1), rtol=tol)
    np.testing.assert_allclose(knn.cross, full[:25, 25:], atol=tol)
    assert knn.indices[40, 0] == 11 and knn.indices[11, 1] == 40


def test_self_neighbours_rejects_non_finite() -> None:
    x = torch.zeros(5, 3)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        self_neighbours(x, 2)
