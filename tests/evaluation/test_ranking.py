"""rank(): against a stable full-sort reference, a hand-worked example and invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reidlab.evaluation import RankResult, rank


def random_case(seed: int, num_q: int = 40, num_g: int = 300, levels: int | None = 6):
    """Random labels with junk, distractors and many exact ties (integer distances)."""
    rng = np.random.default_rng(seed)
    q_pids = rng.integers(1, 12, num_q)
    q_camids = rng.integers(0, 3, num_q)
    g_pids = rng.integers(-1, 14, num_g)  # -1 junk, 0 distractor, 12..13 never queried
    g_camids = rng.integers(0, 3, num_g)
    if levels is None:
        distmat = rng.random((num_q, num_g)).astype(np.float32)
    else:
        distmat = rng.integers(0, levels, (num_q, num_g)).astype(np.float32)
    return distmat, q_pids, g_pids, q_camids, g_camids


def assert_same(result: RankResult, reference) -> None:
    cmc, mAP, mINP, num_valid = reference
    np.testing.assert_array_equal(result.cmc, cmc)
    assert result.mAP == pytest.approx(mAP, rel=1e-12, abs=0)
    assert result.mINP == pytest.approx(mINP, rel=1e-12, abs=0)
    assert result.num_valid_queries == num_valid


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("levels", [2, 7, None])
def test_matches_full_sort_reference(seed: int, levels: int | None, full_sort_rank) -> None:
    case = random_case(seed, levels=levels)
    assert_same(rank(*case, max_rank=20), full_sort_rank(*case, max_rank=20))


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.float16])
def test_dtypes_keep_exact_order(dtype, full_sort_rank) -> None:
    distmat, *labels = random_case(3, levels=50)
    distmat = (distmat - 25).astype(dtype)  # negative values too
    assert_same(rank(distmat, *labels, max_rank=10), full_sort_rank(distmat, *labels, max_rank=10))


def test_negative_zero_equals_zero() -> None:
    distmat = np.array([[0.0, -0.0, 0.0]], dtype=np.float32)
    distmat[0, 0] = -0.0
    q = np.array([1]), np.array([0])
    g_pids, g_cams = np.array([2, 1, 2]), np.array([1, 1, 1])
    # ties: gallery order 0, 1, 2, so the match is 2nd
    result = rank(distmat, q[0], g_pids, q[1], g_cams, max_rank=3)
    np.testing.assert_array_equal(result.cmc, [0.0, 1.0, 1.0])


def test_hand_worked_example() -> None:
    # gallery:   g0      g1      g2      g3       g4      g5
    g_pids = np.array([2, 1, 1, -1, 1, 0])
    g_camids = np.array([1, 0, 1, 1, 2, 1])
    q_pids, q_camids = np.array([1, 2, 3]), np.array([0, 0, 0])
    distmat = np.array(
        [
            [0.1, 0.2, 0.3, 0.05, 0.35, 0.4],
            [0.3, 0.1, 0.2, 0.0, 0.4, 0.5],
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        ]
    )
    # q0 (pid 1, cam 0): g1 same pid + cam and g3 junk are dropped; valid order
    #   g0 (wrong), g2 (match), g4 (match), g5 (distractor): matches at ranks 2 and 3.
    #   AP = (1/2 + 2/3) / 2 = 7/12, INP = 2/3, first hit at rank 2.
    # q1 (pid 2, cam 0): g3 dropped; order g1, g2, g0 (match), g4, g5: match at rank 3.
    #   AP = 1/3, INP = 1/3, first hit at rank 3.
    # q2 (pid 3): no match, skipped.
    # mAP = (7/12 + 1/3) / 2 = 11/24, mINP = (2/3 + 1/3) / 2 = 1/2, CMC = [0, 1/2, 1, 1].
    result = rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=4)
    np.testing.assert_allclose(result.cmc, [0.0, 0.5, 1.0, 1.0])
    assert result.mAP == pytest.approx(11 / 24)
    assert result.mINP == pytest.approx(0.5)
    assert result.num_valid_queries == 2
    assert result["mAP"] == result.mAP
    assert set(dict(result)) == {"cmc", "mAP", "mINP", "num_valid_queries"}


def test_chunking_invariance() -> None:
    case = random_case(7, levels=4)
    whole = rank(*case, chunk_size=10_000)
    one = rank(*case, chunk_size=1)
    np.testing.assert_array_equal(whole.cmc, one.cmc)
    assert (whole.mAP, whole.mINP) == (one.mAP, one.mINP)


def test_torch_input_and_column_permutation_of_distinct_values() -> None:
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(8, levels=None)
    base = rank(torch.from_numpy(distmat), q_pids, g_pids, q_camids, g_camids)
    perm = np.random.default_rng(0).permutation(len(g_pids))
    moved = rank(distmat[:, perm], q_pids, g_pids[perm], q_camids, g_camids[perm])
    np.testing.assert_array_equal(base.cmc, moved.cmc)
    assert base.mAP == pytest.approx(moved.mAP, rel=1e-12)


def test_same_camera_matches_are_excluded_not_counted() -> None:
    # g0: pid 1 cam 0, g1: pid 2 cam 1, g2: pid 2 cam 0
    g_pids, g_camids = np.array([1, 2, 2]), np.array([0, 1, 0])
    q_pids, q_camids = np.array([1, 2]), np.array([0, 0])
    distmat = np.array([[0.1, 0.2, 0.3], [0.2, 0.3, 0.05]])
    # q0's only same-pid image shares its camera: q0 is skipped.
    # q1: g2 (same pid and camera, closest) is dropped, not counted; g0 wrong; g1 at rank 2.
    result = rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=3)
    assert result.num_valid_queries == 1
    np.testing.assert_array_equal(result.cmc, [0.0, 1.0, 1.0])
    assert (result.mAP, result.mINP) == (0.5, 0.5)


def test_errors() -> None:
    distmat, q_pids, g_pids, q_camids, g_camids = random_case(0)
    with pytest.raises(ValueError, match="g_camids"):
        rank(distmat, q_pids, g_pids, q_camids, g_camids[:-1])
    with pytest.raises(ValueError, match="shape"):
        rank(distmat[:, :-1], q_pids, g_pids, q_camids, g_camids)
    with pytest.raises(ValueError, match="no query has a valid match"):
        rank(distmat, q_pids + 100, g_pids, q_camids, g_camids)
    bad = distmat.copy()
    bad[:] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rank(bad, q_pids, g_pids, q_camids, g_camids)


def test_memory_mapped_distmat(tmp_path, full_sort_rank) -> None:
    distmat, *labels = random_case(9, levels=None)
    np.save(tmp_path / "d.npy", distmat)
    mapped = np.load(tmp_path / "d.npy", mmap_mode="r")
    assert_same(rank(mapped, *labels, chunk_size=7), full_sort_rank(distmat, *labels))
