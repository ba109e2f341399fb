"""Property tests of the ranking metrics (hypothesis): mAP, mINP and CMC lie in [0, 1],
CMC never decreases, permuting the gallery changes nothing, a perfect ranking scores 1,
and the results equal a plain full-sort reference; NaN distances are refused."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reidlab.evaluation import rank

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def protocols(draw):
    """Gallery pids/cams (junk -1 and distractors 0 included) and queries that each have
    at least one true match seen by another camera; distinct distances (no ties)."""
    num_ids = draw(st.integers(1, 5))
    g_pids = draw(st.lists(st.integers(-1, num_ids), min_size=2, max_size=14))
    g_cams = draw(st.lists(st.integers(0, 3), min_size=len(g_pids), max_size=len(g_pids)))
    g_pids, g_cams = np.array(g_pids), np.array(g_cams)
    real = [i for i, p in enumerate(g_pids) if p > 0]
    if not real:
        g_pids[0], real = 1, [0]
    picks = draw(st.lists(st.sampled_from(real), min_size=1, max_size=6))
    q_pids = g_pids[picks]
    q_cams = (g_cams[picks] + 1 + draw(st.integers(0, 2))) % 4  # another camera
    seed = draw(st.integers(0, 2**31 - 1))
    dist = np.random.default_rng(seed).permutation(len(q_pids) * len(g_pids)).reshape(
        len(q_pids), len(g_pids)).astype(np.float64)
    return dist, q_pids, g_pids, q_cams, g_cams


@SETTINGS
@given(case=protocols(), seed=st.integers(0, 1000))
def test_ranges_monotone_cmc_permutation_and_reference(case, seed, full_sort_rank):
    dist, qp, gp, qc, gc = case
    res = rank(dist, qp, gp, qc, gc, max_rank=5)
    assert 0.0 <= res.mAP <= 1.0 and 0.0 <= res.mINP <= 1.0
    assert np.all((res.cmc >= 0) & (res.cmc <= 1)) and np.all(np.diff(res.cmc) >= 0)
    cmc, ap, inp, valid = full_sort_rank(dist, qp, gp, qc, gc, max_rank=5)
    np.testing.assert_allclose(res.cmc, cmc)
    assert res.mAP == pytest.approx(ap) and res.mINP == pytest.approx(inp)
    assert res.num_valid_queries == valid
    perm = np.random.default_rng(seed).permutation(len(gp))
    shuffled = rank(dist[:, perm], qp, gp[perm], qc, gc[perm], max_rank=5)
    np.testing.assert_allclose(shuffled.cmc, res.cmc)
    assert shuffled.mAP == pytest.approx(res.mAP) and shuffled.mINP == pytest.approx(res.mINP)


@SETTINGS
@given(case=protocols())
def test_a_perfect_ranking_scores_one(case):
    dist, qp, gp, qc, gc = case
    match = (gp[None, :] == qp[:, None]) & (gp[None, :] > 0)
    perfect = dist + np.where(match, 0.0, dist.size + 1.0)  # every match before any other
    res = rank(perfect, qp, gp, qc, gc, max_rank=5)
    assert res.mAP == 1.0 and res.mINP == 1.0 and np.all(res.cmc == 1.0)


@SETTINGS
@given(case=protocols(), where=st.integers(0, 10_000), value=st.sampled_from(
    [np.nan, np.inf, -np.inf]))
def test_a_non_finite_distance_is_refused_naming_it(case, where, value):
    dist, qp, gp, qc, gc = case
    r, c = divmod(where % dist.size, dist.shape[1])
    dist = dist.copy()
    dist[r, c] = value
    with pytest.raises(ValueError, match=f"distance of query {r} to gallery image {c} is"):
        rank(dist, qp, gp, qc, gc)


def test_nan_non_matches_no_longer_score_a_perfect_map():
    """The issue's case: the non-matches' distances are NaN."""
    dist = np.array([[0.5, np.nan, np.nan]])
    with pytest.raises(ValueError, match="query 0 to gallery image 1 is nan"):
        rank(dist, np.array([1]), np.array([1, 2, 3]), np.array([0]), np.array([1, 1, 1]))


def test_empty_query_or_gallery_and_wrong_labels_are_one_sentence():
    with pytest.raises(ValueError, match="0 query and 3 gallery images"):
        rank(np.zeros((0, 3)), np.array([], dtype=int), np.array([1, 2, 3]),
             np.array([], dtype=int), np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match="q_pids: expected a 1-D integer array, got float64"):
        rank(np.zeros((1, 3)), np.array([1.5]), np.array([1, 2, 3]), np.array([0]),
             np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"distmat has shape \(1, 2\)"):
        rank(np.zeros((1, 2)), np.array([1]), np.array([1, 2, 3]), np.array([0]),
             np.zeros(3, dtype=int))
