"""CMC, mAP and mINP under the Market-1501 protocol, in bounded memory.

Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015 (CMC and mAP);
Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook", TPAMI 2021
(mINP).

Instead of sorting every query's whole gallery, each query only needs the gallery images
that come no later than its last true match: their count fixes every true match's rank.
Those few candidates are found with one comparison pass and ordered exactly; the rest of
the row is never sorted.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from reidlab.evaluation.distance import (
    ArrayLike,
    DeviceLike,
    as_tensor,
    le_nonzero,
    resolve_device,
    rows_per_chunk,
)

#: Distance entries per chunk when ranking a given matrix (float32: 8 MiB).
RANK_CHUNK_ELEMENTS = 1 << 21


@dataclass(frozen=True)
class RankResult:
    """Retrieval metrics; also readable as a mapping (``result["mAP"]``, ``dict(result)``).

    Attributes:
        cmc: (max_rank,) float64, ``cmc[k]`` is the fraction of valid queries whose first
            true match is within the top ``k + 1``.
        mAP: mean average precision over valid queries, a fraction in [0, 1].
        mINP: mean inverse negative penalty (Ye et al., TPAMI 2021), a fraction.
        num_valid_queries: queries with at least one true match (the others are skipped).
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid_queries: int

    def keys(self) -> tuple[str, ...]:
        return ("cmc", "mAP", "mINP", "num_valid_queries")

    def __getitem__(self, key: str) -> np.ndarray | float | int:
        if key not in self.keys():
            raise KeyError(f"RankResult has no {key!r}; expected one of {self.keys()}")
        return getattr(self, key)  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def to_dict(self) -> dict[str, np.ndarray | float | int]:
        return {k: self[k] for k in self.keys()}


def _labels(x: ArrayLike, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected a 1-D integer array, got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64, copy=False)


def _candidate_places(
    rows: np.ndarray,
    cols: np.ndarray,
    vals: np.ndarray,
    num_rows: int,
    num_cols: int,
    at: np.ndarray,
) -> np.ndarray:
    """Sorted positions of candidates ``at`` when all candidates are ordered by (row,
    value, column); candidates come in (row, column) order."""
    col_bits = max(1, (num_cols - 1).bit_length())
    if vals.dtype == np.float32 and (num_rows - 1).bit_length() + col_bits <= 31:
        # one unique int64 key per candidate: row | order-preserving value bits | column
        bits = (vals + np.float32(0)).view(np.int32).astype(np.int64)  # -0.0 -> 0.0
        bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + (1 << 31)
        key = (rows << (32 + col_bits)) | (bits << col_bits) | cols
        return np.searchsorted(np.sort(key), key[at])
    order = np.lexsort((cols, vals, rows))  # any other dtype
    place = np.empty_like(order)
    place[order] = np.arange(len(order))
    return place[at]


def _comparable(d: np.ndarray) -> np.ndarray:
    """float16 as float32 and integers as int64 (exact, same order); others unchanged."""
    if d.dtype.kind == "f":
        return d.astype(np.float32) if d.itemsize < 4 else d
    if d.dtype.kind in "iub":
        return d.astype(np.int64, copy=False)
    raise TypeError(f"distmat: expected a numeric array, got dtype {d.dtype}")


class Ranker:
    """Accumulates the metrics of query chunks (``update``) and reports them (``compute``).

    Args:
        q_pids, q_camids: (Q,) query identities and cameras.
        g_pids, g_camids: (G,) gallery identities and cameras; pid -1 marks junk.
        max_rank: length of the CMC curve.
        device: where the chunks' work runs.
    """

    def __init__(
        self,
        q_pids: ArrayLike,
        g_pids: ArrayLike,
        q_camids: ArrayLike,
        g_camids: ArrayLike,
        max_rank: int = 50,
        device: DeviceLike = None,
    ) -> None:
        qp, gp = _labels(q_pids, "q_pids"), _labels(g_pids, "g_pids")
        qc, gc = _labels(q_camids, "q_camids"), _labels(g_camids, "g_camids")
        if len(qp) != len(qc):
            raise ValueError(f"q_pids has {len(qp)} entries but q_camids has {len(qc)}")
        if len(gp) != len(gc):
            raise ValueError(f"g_pids has {len(gp)} entries but g_camids has {len(gc)}")
        if max_rank < 1:
            raise ValueError(f"max_rank: expected a positive integer, got {max_rank}")
        if len(qp) == 0 or len(gp) == 0:
            raise ValueError(f"nothing to rank: {len(qp)} query and {len(gp)} gallery images "
                             "(an empty query set or gallery)")
        self.dev = resolve_device(device)
        self.num_q, self.num_g, self.max_rank = len(qp), len(gp), max_rank
        self.q_pids, self.q_camids, self.g_camids = qp, qc, gc
        # Each query's same-pid gallery images (true matches and same-camera exclusions)
        # are a contiguous run of the gallery sorted stably by pid.
        self.by_pid = np.argsort(gp, kind="stable")
        sorted_pids = gp[self.by_pid]
        self.run_start = np.searchsorted(sorted_pids, qp, side="left")
        self.run_len = np.searchsorted(sorted_pids, qp, side="right") - self.run_start
        self.run_len[qp == -1] = 0
        self.junk = (gp == -1) if (gp == -1).any() else None
        self.ap = np.zeros(self.num_q)
        self.inp = np.zeros(self.num_q)
        self.first = np.full(self.num_q, -1, dtype=np.int64)  # -1: no valid match / not seen
        self._scratch = [np.empty(0, dtype=bool)]

    def update(self, dist: ArrayLike, start: int) -> None:
        """Rank one chunk: ``dist`` (B, G) holds the distances of queries ``start .. start+B``.

        On CPU the work is numpy; on a GPU the chunk's comparison pass runs there and only
        the few candidates it leaves come back to be ordered.
        """
        b, g = dist.shape
        if g != self.num_g or start + b > self.num_q:
            raise ValueError(
                f"distance chunk of shape {tuple(dist.shape)} at query {start} does not fit "
                f"{self.num_q} queries x {self.num_g} gallery images"
            )
        _check_finite(dist, start)
        q = slice(start, start + b)
        width = int(self.run_len[q].max(initial=0))
        if width == 0:
            return
        slot = np.arange(width)
        in_run = slot[None, :] < self.run_len[q, None]  # (B, S) same-pid gallery images
        cols = self.by_pid[np.minimum(self.run_start[q, None] + slot, self.num_g - 1)]
        same_cam = self.g_camids[cols] == self.q_camids[q, None]
        pos, exc = in_run & ~same_cam, in_run & same_cam  # true matches, excluded
        num_pos = pos.sum(1)
        if not num_pos.any():
            return
        if self.dev.type == "cpu":
            d = dist.detach().cpu().numpy() if isinstance(dist, torch.Tensor) else dist
            d = np.ascontiguousarray(_comparable(d))
            pos_d = np.take_along_axis(d, cols, 1)
        else:
            dist_t = as_tensor(dist, "distmat").to(self.dev)
            if dist_t.dtype in (torch.float16, torch.bfloat16):
                dist_t = dist_t.float()
            dist_t = dist_t.contiguous()
            pos_d = dist_t.gather(1, torch.from_numpy(cols).to(self.dev)).cpu().numpy()
        low = np.finfo(pos_d.dtype).min if pos_d.dtype.kind == "f" else np.iinfo(pos_d.dtype).min
        thr = np.where(pos, pos_d, low).max(1)  # each query's last true match
        # every gallery image no farther than the last true match, (row, column) order
        if self.dev.type == "cpu":
            flat = le_nonzero(d, thr[:, None], self._scratch)
            vals = d.reshape(-1)[flat]
        else:
            thr_t = torch.from_numpy(thr).to(self.dev)[:, None]
            flat_t = torch.nonzero((dist_t <= thr_t).view(-1)).squeeze(1)
            flat, vals = flat_t.cpu().numpy(), dist_t.view(-1)[flat_t].cpu().numpy()
        keep = np.ones(len(flat), dtype=bool)
        if self.junk is not None:
            keep &= ~self.junk[flat % g]
        er, es = np.nonzero(exc)
        if len(er) and len(flat):
            ex_flat = er * g + cols[er, es]
            at = np.minimum(np.searchsorted(flat, ex_flat), len(flat) - 1)
            keep[at[flat[at] == ex_flat]] = False
        flat, vals = flat[keep], vals[keep]
        rows = flat // g
        pr, ps = np.nonzero(pos)
        at = np.searchsorted(flat, pr * g + cols[pr, ps])  # every true match is a candidate
        place = _candidate_places(rows, flat - rows * g, vals, b, g, at)
        ranks = np.full((b, width), g, dtype=np.int64)
        ranks[pr, ps] = place - np.searchsorted(rows, pr)  # 0-based rank among valid images
        ranks.sort(1)
        valid = np.flatnonzero(num_pos)
        n = num_pos[valid]
        r = ranks[valid].astype(np.float64)
        last = np.arange(len(valid)), n - 1
        precision = np.cumsum((slot[None, :] + 1.0) / (r + 1.0), axis=1)  # sequential sum
        self.ap[start + valid] = precision[last] / n
        self.inp[start + valid] = n / (r[last] + 1.0)
        self.first[start + valid] = ranks[valid, 0]

    def compute(self) -> RankResult:
        valid = self.first >= 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"no query has a valid match in the gallery ({self.num_q} queries, "
                f"{self.num_g} gallery images): every query's identity is absent or only "
                "seen by the query's own camera"
            )
        first = np.minimum(self.first[valid], self.max_rank)
        hits = np.bincount(first, minlength=self.max_rank + 1)
        cmc = np.cumsum(hits[: self.max_rank]) / num_valid
        return RankResult(
            cmc=cmc,
            mAP=float(np.mean(self.ap[valid])),
            mINP=float(np.mean(self.inp[valid])),
            num_valid_queries=num_valid,
        )


def _check_finite(dist: ArrayLike, start: int) -> None:
    """Raise at the first NaN or infinite distance: it would rank arbitrarily (NaN
    non-matches as farthest give a perfect score)."""
    if isinstance(dist, torch.Tensor):
        if not dist.is_floating_point():
            return
        bad_t = ~torch.isfinite(dist)
        if not bool(bad_t.any()):
            return
        r, c = (int(i) for i in torch.nonzero(bad_t)[0])
        value = float(dist[r, c])
    else:
        d = np.asarray(dist)
        if d.dtype.kind != "f" or np.isfinite(d).all():
            return
        r, c = (int(i) for i in np.argwhere(~np.isfinite(d))[0])
        value = float(d[r, c])
    raise ValueError(f"distance of query {start + r} to gallery image {c} is {value}: "
                     "distances must be finite (NaN or infinite features?)")


def rank(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_camids: ArrayLike,
    g_camids: ArrayLike,
    max_rank: int = 50,
    *,
    chunk_size: int | None = None,
    device: DeviceLike = None,
) -> RankResult:
    """CMC, mAP and mINP of a query x gallery distance matrix (Market-1501 protocol).

    For each query, gallery images with the query's pid and camera are excluded, junk
    images (pid -1) are excluded, and queries without any remaining true match are
    skipped. Distractors (pid 0) are ordinary wrong matches. Equal distances are ordered by
    gallery index, as a stable sort would (``np.argsort(kind="stable")``), so results are
    deterministic and identical to a full-sort reference. AP follows Zheng et al. (ICCV
    2015); INP = (number of true matches) / (rank of the last true match) (Ye et al.,
    TPAMI 2021).

    Queries are processed in chunks; a query's gallery row is not sorted: only the images
    no farther than its last true match are gathered and ordered.

    Args:
        distmat: (Q, G) distances, numpy (a memory map works: it is read chunk by chunk)
            or torch (CPU or GPU); smaller is closer.
        q_pids, q_camids: (Q,) query identities and cameras.
        g_pids, g_camids: (G,) gallery identities and cameras.
        max_rank: length of the returned CMC curve.
        chunk_size: queries per chunk (default: about 2 Mi distances per chunk).
        device: torch device for the work (default CPU); chunks are moved there.

    Returns:
        :class:`RankResult` with ``cmc`` ((max_rank,) fractions), ``mAP``, ``mINP``
        (fractions) and ``num_valid_queries``.

    Raises:
        ValueError: mismatched lengths, NaN distances to a true match, or no query with a
            valid match.
    """
    d = distmat if isinstance(distmat, (np.ndarray, torch.Tensor)) else np.asarray(distmat)
    ranker = Ranker(q_pids, g_pids, q_camids, g_camids, max_rank, device)
    if tuple(d.shape) != (ranker.num_q, ranker.num_g):
        raise ValueError(
            f"distmat has shape {tuple(d.shape)} but there are {ranker.num_q} query and "
            f"{ranker.num_g} gallery labels"
        )
    step = rows_per_chunk(ranker.num_g, chunk_size, RANK_CHUNK_ELEMENTS)
    for s in range(0, ranker.num_q, step):
        ranker.update(d[s : s + step], s)
    return ranker.compute()
