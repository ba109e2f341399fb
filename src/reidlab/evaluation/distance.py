"""Pairwise distances and exact nearest-neighbour search, computed in bounded-memory chunks.

Every neighbour list here is exact and breaks ties by the lower index, so it agrees with a
stable full sort of the same distances (``np.argsort(..., kind="stable")``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

Metric = Literal["cosine", "euclidean"]
ArrayLike = np.ndarray | torch.Tensor
DeviceLike = str | torch.device | None

#: Distance entries one chunk may hold (float32: 256 MiB).
CHUNK_ELEMENTS = 1 << 26


def as_tensor(x: ArrayLike | Sequence[float], name: str) -> torch.Tensor:
    """A torch view of ``x`` (no copy for tensors and contiguous numpy arrays)."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
    return torch.from_numpy(np.ascontiguousarray(arr))


def as_features(x: ArrayLike, name: str) -> torch.Tensor:
    """``x`` as a 2-D floating tensor (float16/bfloat16/integers promoted to float32)."""
    t = as_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D (num_images, dim) array, got {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t


def resolve_device(device: DeviceLike) -> torch.device:
    return torch.device(device) if device is not None else torch.device("cpu")


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (N, D) scaled to unit L2 norm (all-zero rows stay zero)."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class PreparedGallery:
    """Gallery features ready for repeated distance blocks (normalised or with norms)."""

    feats: torch.Tensor  # (G, D)
    sqnorm: torch.Tensor | None  # (G,), euclidean only
    metric: Metric


def prepare_gallery(g: torch.Tensor, metric: Metric) -> PreparedGallery:
    if metric == "cosine":
        return PreparedGallery(l2_normalize(g), None, metric)
    if metric == "euclidean":
        return PreparedGallery(g, (g * g).sum(1), metric)
    raise ValueError(f"metric: expected 'cosine' or 'euclidean', got {metric!r}")


def distance_block(q: torch.Tensor, gallery: PreparedGallery) -> torch.Tensor:
    """Distances (B, G) from query rows ``q`` (B, D) to a prepared gallery.

    ``euclidean`` is the squared Euclidean distance ``|q|^2 + |g|^2 - 2 q.g`` clamped at 0
    (the convention of reid-strong-baseline and fast-reid); ``cosine`` is ``1 - cos(q, g)``.
    """
    g = gallery.feats
    # The GEMM is computed as g q^T (G, B): with a tall gallery MKL runs this layout about
    # 1.4x faster than q g^T; one pass then writes the (B, G) result contiguously.
    out = torch.empty(q.shape[0], g.shape[0], dtype=g.dtype, device=g.device)
    if gallery.metric == "cosine":  # 1 - cos
        sim = torch.mm(g, l2_normalize(q).T).T
        return torch.sub(torch.ones((), dtype=g.dtype, device=g.device), sim, out=out)
    assert gallery.sqnorm is not None
    dot = torch.mm(g, q.T).T  # (B, G)
    torch.add(gallery.sqnorm[None, :], dot, alpha=-2.0, out=out)
    return out.add_((q * q).sum(1, keepdim=True)).clamp_min_(0.0)


def pairwise_distance(x: ArrayLike, y: ArrayLike, metric: Metric = "euclidean") -> torch.Tensor:
    """All distances (M, N) between rows of ``x`` (M, D) and ``y`` (N, D), in one block.

    The same arithmetic as the chunked paths of :func:`~reidlab.evaluation.evaluate`, so a
    matrix from here ranks identically. Materialises M x N values: use it where that fits.
    """
    xt, yt = as_features(x, "x"), as_features(y, "y")
    dtype = torch.promote_types(xt.dtype, yt.dtype)
    return distance_block(xt.to(dtype), prepare_gallery(yt.to(dtype), metric))


def rows_per_chunk(num_cols: int, chunk_size: int | None, cap: int = CHUNK_ELEMENTS) -> int:
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size: expected a positive integer, got {chunk_size}")
        return chunk_size
    return max(1, cap // max(num_cols, 1))


def le_nonzero(values: np.ndarray, thr: np.ndarray, scratch: list[np.ndarray]) -> np.ndarray:
    """Flat (row-major, ascending) indices of ``values <= thr`` (``thr`` broadcasts).

    The mask goes into a recycled buffer (``scratch[0]``): a fresh large allocation per
    call costs more than the comparison itself.
    """
    if scratch[0].size < values.size:
        scratch[0] = np.empty(values.size, dtype=bool)
    mask = scratch[0][: values.size].reshape(values.shape)
    np.less_equal(values, thr, out=mask)
    return np.flatnonzero(mask)


def sort_pairs(values: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row of (value, index) pairs by value, equal values by lower index.

    float32 rows are sorted once on a packed int64 key (order-preserving value bits, then
    the index, which must lie in [0, 2**32)); other dtypes use ``np.lexsort``.
    """
    if values.dtype == np.float32:
        bits = (values + np.float32(0)).view(np.int32).astype(np.int64)  # -0.0 -> 0.0
        key = (np.where(bits < 0, bits ^ 0x7FFFFFFF, bits) << 32) | index
        key.sort(axis=1)
        bits = key >> 32
        bits = np.where(bits < 0, bits ^ 0x7FFFFFFF, bits).astype(np.int32)
        return bits.view(np.float32), key & 0xFFFFFFFF
    order = np.lexsort((index, values), axis=-1)
    return np.take_along_axis(values, order, 1), np.take_along_axis(index, order, 1)


def smallest_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` smallest entries of each row of ``values`` (B, N), ties by lower column.

    Returns ``(values, columns)``, both (B, min(k, N)), ascending: exactly the first ``k``
    columns of a stable full sort. A partial sort proposes ``k + 1`` candidates in an
    arbitrary tie order; rows whose ``k``-th and ``k + 1``-th values are equal (a tie
    across the cut) fall back to a stable sort of the row.
    """
    if k >= values.shape[1]:
        order = np.argsort(values, axis=1, kind="stable")
        return np.take_along_axis(values, order, 1), order
    idx = np.argpartition(values, k, axis=1)[:, : k + 1]
    v, idx = sort_pairs(np.take_along_axis(values, idx, 1), idx)
    tied = np.flatnonzero(v[:, k - 1] == v[:, k])
    v, idx = v[:, :k].copy(), idx[:, :k].copy()
    if len(tied):
        order = np.argsort(values[tied], axis=1, kind="stable")[:, :k]
        v[tied], idx[tied] = np.take_along_axis(values[tied], order, 1), order
    return v, idx


def merge_smallest(
    values: list[np.ndarray], index: list[np.ndarray], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-part exact candidate lists (disjoint indices) into the exact top ``k``."""
    v, i = sort_pairs(np.concatenate(values, 1), np.concatenate(index, 1))
    return v[:, :k], i[:, :k]


def duplicate_groups(x: torch.Tensor) -> np.ndarray | None:
    """For each row of ``x`` (N, D), the lowest index of an identical row; ``None`` when all
    rows differ. Identical rows are at distance exactly 0, which the expanded
    ``|a|^2 + |b|^2 - 2 a.b`` only reproduces up to round-off.

    Rows are hashed exactly (wrapping integer arithmetic on their bits, -0.0 read as 0.0);
    only rows whose hashes collide are compared in full.
    """
    arr = np.ascontiguousarray(x.detach().cpu().numpy())
    n = arr.shape[0]
    word = np.int32 if arr.itemsize == 4 else np.int64
    weights = np.random.default_rng(0).integers(1, 1 << 62, arr.shape[1], dtype=np.int64) | 1
    hashes = np.empty(n, dtype=np.int64)
    for s in range(0, n, 4096):
        bits = (arr[s : s + 4096] + 0.0).view(word).astype(np.int64)
        hashes[s : s + 4096] = (bits * weights).sum(1)  # wraps modulo 2**64, exactly
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    maybe = np.nonzero(counts[inverse.ravel()] > 1)[0]
    if len(maybe) == 0:
        return None
    rows = np.ascontiguousarray(arr[maybe] + 0.0)
    _, first, same = np.unique(
        rows.view(np.dtype((np.void, rows.itemsize * rows.shape[1]))).ravel(),
        return_index=True,
        return_inverse=True,
    )
    groups = np.arange(n)
    groups[maybe] = maybe[first[same.ravel()]]
    if np.array_equal(groups, np.arange(n)):
        return None
    return groups


class _RunningSmallest:
    """Exact running ``k`` smallest (value, index) of each of ``n`` lists, fed tile by tile.

    A tile only offers entries no larger than a list's current ``k``-th value (no other
    entry can enter the list), found with one comparison pass; lists not yet full, or with
    many such entries, take the tile's exact top ``k`` instead.
    """

    def __init__(self, n: int, k: int, dtype: np.dtype) -> None:
        self.n, self.k = n, k
        self.values = np.full((n, k), np.inf, dtype=dtype)
        self.index = np.full((n, k), n, dtype=np.int64)
        self.scratch = [np.empty(0, dtype=bool)]

    def offer(self, lo: int, d: np.ndarray, offset: int, along_rows: bool) -> None:
        """Offer tile ``d`` (R, C). With ``along_rows`` list ``lo + r`` receives
        ``(d[r, c], offset + c)``; otherwise list ``lo + c`` receives ``(d[r, c], offset + r)``."""
        k = self.k
        m = d.shape[0] if along_rows else d.shape[1]
        kth = self.values[lo : lo + m, -1]
        fresh = np.isinf(kth)
        thr = np.where(fresh, -np.inf, kth).astype(d.dtype)
        flat = le_nonzero(d, thr[:, None] if along_rows else thr[None, :], self.scratch)
        r = flat // d.shape[1]
        c = flat - r * d.shape[1]
        owner, other = (r, c) if along_rows else (c, r)
        counts = np.bincount(owner, minlength=m)
        heavy = fresh | (counts > 4 * k)
        active = np.flatnonzero(heavy | (counts > 0))
        if len(active) == 0:
            return
        slot = np.full(m, -1)
        slot[active] = np.arange(len(active))
        parts_v, parts_i = [self.values[lo + active]], [self.index[lo + active]]
        rows = np.flatnonzero(heavy)
        if len(rows):
            sub = d[rows] if along_rows else np.ascontiguousarray(d[:, rows].T)
            hv, hi = smallest_k(sub, k)
            pv = np.full((len(active), hv.shape[1]), np.inf, dtype=d.dtype)
            pi = np.full(pv.shape, self.n, dtype=np.int64)
            pv[slot[rows]], pi[slot[rows]] = hv, hi + offset
            parts_v.append(pv)
            parts_i.append(pi)
        light = ~heavy[owner]
        if light.any():
            ow, ot, val = owner[light], other[light], d.reshape(-1)[flat[light]]
            if not along_rows:  # group by list; stable keeps row order within a list
                order = np.argsort(ow, kind="stable")
                ow, ot, val = ow[order], ot[order], val[order]
            cl = np.bincount(ow, minlength=m)
            pos = np.arange(len(ow)) - (np.cumsum(cl) - cl)[ow]
            pv = np.full((len(active), cl.max()), np.inf, dtype=d.dtype)
            pi = np.full(pv.shape, self.n, dtype=np.int64)
            pv[slot[ow], pos], pi[slot[ow], pos] = val, ot + offset
            parts_v.append(pv)
            parts_i.append(pi)
        self.values[lo + active], self.index[lo + active] = merge_smallest(parts_v, parts_i, k)


@dataclass
class SelfNeighbours:
    """Exact nearest neighbours of every row of a feature set within the same set.

    Attributes:
        indices: (N, k) int64, nearest first, ties by lower index (row ``i`` starts with
            ``i`` unless an identical row has a lower index).
        distances: (N, k) squared Euclidean distances of those neighbours.
        row_max: (N,) largest squared distance from each row to all N rows.
        cross: (split, N - split) squared distances from rows ``< split`` to rows
            ``>= split``, when a split was asked for, else ``None``.

    All are numpy arrays, in the features' float dtype.
    """

    indices: np.ndarray
    distances: np.ndarray
    row_max: np.ndarray
    cross: np.ndarray | None


def self_neighbours(
    feats: torch.Tensor,
    k: int,
    *,
    split: int | None = None,
    block_size: int = 2048,
    device: DeviceLike = None,
) -> SelfNeighbours:
    """Exact k-nearest-neighbour lists, row maxima and an optional cross block of the N x N
    squared Euclidean distance matrix of ``feats`` (N, D), without materialising it.

    The matrix is visited once in ``block_size`` x ``block_size`` tiles of its upper
    triangle; each tile serves its rows and (transposed) its columns, so the work is half a
    full N x N product and ``d(i, j)`` and ``d(j, i)`` are the same number. Self distances
    (and those of identical rows) are exactly 0 and negative round-off is clamped to 0.
    Peak memory is a few tiles plus the (N, k) lists and the optional cross block.
    """
    dev = resolve_device(device)
    x = feats.to(dev)
    finite = np.isfinite(x.numpy()).all() if x.device.type == "cpu" else torch.isfinite(x).all()
    if not finite:
        raise ValueError("features contain NaN or infinite values")
    n = x.shape[0]
    k = min(k, n)
    if split is not None and not 0 < split < n:
        raise ValueError(f"split must be in 1..{n - 1}, got {split}")
    sq = (x * x).sum(1)
    sq_np = sq.cpu().numpy()
    dup_np = duplicate_groups(x)
    dtype = np.float32 if x.dtype == torch.float32 else np.float64
    lists = _RunningSmallest(n, k, np.dtype(dtype))
    row_max = np.full(n, -np.inf, dtype=dtype)
    cross = np.empty((split, n - split), dtype=dtype) if split is not None else None
    upper = np.triu(np.ones((block_size, block_size), dtype=bool))
    blocks = -(-n // block_size)
    tiles, done, reported = blocks * (blocks + 1) // 2, 0, 0
    for a0 in range(0, n, block_size):
        a1 = min(a0 + block_size, n)
        for b0 in range(a0, n, block_size):
            b1 = min(b0 + block_size, n)
            d = torch.addmm(sq[None, b0:b1], x[a0:a1], x[b0:b1].T, alpha=-2.0).cpu().numpy()
            np.add(d, sq_np[a0:a1, None], out=d)
            np.maximum(d, 0.0, out=d)  # (a1 - a0, b1 - b0)
            if dup_np is not None:
                d[dup_np[a0:a1, None] == dup_np[None, b0:b1]] = 0.0
            if b0 == a0:
                m = a1 - a0
                d = np.where(upper[:m, :m], d, d.T)
                np.fill_diagonal(d, 0.0)
            np.maximum(row_max[a0:a1], d.max(1), out=row_max[a0:a1])
            lists.offer(a0, d, b0, along_rows=True)
            if b0 != a0:
                np.maximum(row_max[b0:b1], d.max(0), out=row_max[b0:b1])
                lists.offer(b0, d, a0, along_rows=False)
            if cross is not None and split is not None and a0 < split < b1:
                r1, c0 = min(a1, split), max(b0, split)
                cross[a0:r1, c0 - split : b1 - split] = d[: r1 - a0, c0 - b0 :]
        done += blocks - a0 // block_size
        if tiles >= 100 and 10 * done >= (reported + 1) * tiles:
            reported = 10 * done // tiles
            logger.info("exact %d-NN of %d images: %d%% of the tiles done", k, n, 10 * reported)
    return SelfNeighbours(lists.index, lists.values, row_max, cross)
