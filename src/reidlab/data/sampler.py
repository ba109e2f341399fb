"""PK identity sampler: batches of P identities x K images, optionally split over replicas."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class RandomIdentitySampler(Sampler[int]):
    """Sample dataset indices so that every batch holds ``P`` identities x ``K`` images.

    The PK sampling of Hermans et al. ("In Defense of the Triplet Loss for Person
    Re-Identification", arXiv 1703.07737, 2017), as in the Bag of Tricks baseline (Luo et
    al., CVPRW 2019 / TMM 2019), with ``P = batch_size / num_instances``.

    One epoch: each identity's images are shuffled (an identity with fewer than ``K``
    images is first drawn ``K`` times with replacement) and cut into groups of ``K``, the
    last incomplete group dropped; batches of ``P`` distinct identities then each take one
    group of each of their ``P`` identities, until too few identities have groups left.
    An epoch therefore sees nearly every image once; the indices come out batch after
    batch, each identity's ``K`` images together, so a ``DataLoader`` with the same
    ``batch_size`` (and ``shuffle=False``) forms the PK batches.

    Unlike the classic implementation, whose number of batches depends on the random
    choice of identities (with ``P = 2`` and group counts ``(2, 1, 1)`` it makes 1 or 2
    batches) and whose ``__len__`` is only an upper bound, every epoch here has the
    maximum number of batches the group counts allow, a number fixed at construction:
    ``__len__`` is exact and the same every epoch (which ignite's fixed ``epoch_length``
    and equal-length replicas need). The identities of a batch are drawn uniformly among
    those with groups left, except that, near the end of an epoch, identities that would
    otherwise be left with unusable groups are forced in.

    The order depends only on ``(seed, epoch)``: call :meth:`set_epoch` before each epoch.

    Distributed training: each of ``world_size`` replicas builds the same epoch (the
    identities in sorted order, the shuffle from ``(seed, epoch)`` alone). With
    ``split="identities"`` (what reidlab trains with) ``batch_size`` is the global batch:
    every step's batch of ``P`` identities is cut into ``world_size`` shares of
    ``P / world_size`` whole identities (``K`` images each), replica ``rank`` taking share
    ``rank``, so the replicas together see exactly the one-process batch and no image twice
    in a step. With ``split="batches"`` the replicas keep the first ``world_size *
    (num_batches // world_size)`` batches and take every ``world_size``-th from batch
    ``rank`` on (disjoint whole batches; ``batch_size`` is then one replica's).

    Args:
        pids: the identity of each dataset index.
        batch_size: images per batch (per replica), a multiple of ``num_instances``.
        num_instances: ``K``, images per identity in a batch.
        seed: seeds the shuffle, together with the epoch.
        rank: this replica's rank in ``[0, world_size)``.
        world_size: the number of replicas.
        split: how replicas share an epoch: ``"identities"`` of each global batch or
            whole ``"batches"``.
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int = 64,
        num_instances: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        split: str = "batches",
    ) -> None:
        if num_instances < 1:
            raise ValueError(f"num_instances must be positive, got {num_instances}")
        if batch_size < num_instances or batch_size % num_instances:
            raise ValueError(
                f"batch_size ({batch_size}) must be a positive multiple of num_instances "
                f"({num_instances})"
            )
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got {rank} and {world_size}")
        if split not in ("identities", "batches"):
            raise ValueError(f"split must be 'identities' or 'batches', got {split!r}")
        if split == "identities" and (batch_size // num_instances) % world_size:
            raise ValueError(
                f"data.batch_size {batch_size} / num_instances {num_instances} = "
                f"{batch_size // num_instances} identities a step do not split evenly over "
                f"{world_size} processes"
            )
        self.split = split
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.num_pids_per_batch = batch_size // num_instances
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

        index_of: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            index_of.setdefault(int(pid), []).append(index)
        self._indices = [np.asarray(index_of[p]) for p in sorted(index_of)]
        if len(self._indices) < self.num_pids_per_batch:
            raise ValueError(
                f"the dataset has {len(self._indices)} identities, fewer than the "
                f"{self.num_pids_per_batch} a batch needs (batch_size {batch_size} / "
                f"num_instances {num_instances})"
            )
        self._groups = np.array(
            [max(len(ix), num_instances) // num_instances for ix in self._indices]
        )
        self.total_batches = _max_batches(self._groups, self.num_pids_per_batch)
        self.num_batches = (self.total_batches if split == "identities"
                            else self.total_batches // world_size)
        #: images this replica yields a step (the DataLoader's batch_size)
        self.local_batch_size = batch_size // world_size if split == "identities" else batch_size
        if self.num_batches == 0:
            raise ValueError(
                f"an epoch makes {self.total_batches} batches, fewer than world_size "
                f"({world_size}): every replica needs at least one"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order :meth:`__iter__` yields."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.local_batch_size

    def __iter__(self) -> Iterator[int]:
        batches = self._epoch_batches()
        if self.split == "identities":
            share = self.local_batch_size
            for batch in batches:
                yield from batch[self.rank * share : (self.rank + 1) * share]
            return
        kept = batches[: self.num_batches * self.world_size]
        for batch in kept[self.rank :: self.world_size]:
            yield from batch

    def _epoch_batches(self) -> list[list[int]]:
        """All batches of the current epoch, the same on every replica."""
        rng = np.random.default_rng([self.seed, self.epoch])
        k, p = self.num_instances, self.num_pids_per_batch
        groups: list[list[np.ndarray]] = []
        for ix in self._indices:
            chosen = rng.choice(ix, size=k, replace=True) if len(ix) < k else rng.permutation(ix)
            n = len(chosen) // k
            groups.append([chosen[j * k : (j + 1) * k] for j in range(n)])

        left = self._groups.copy()  # groups each identity has left
        batches: list[list[int]] = []
        for remaining in range(self.total_batches, 0, -1):
            # `remaining` batches of p distinct ids can still be made iff
            # sum(min(left, remaining)) >= p * remaining. Choosing S keeps this true for
            # remaining - 1 iff S holds all but `slack` of the ids with left >= remaining.
            slack = int(np.minimum(left, remaining).sum()) - p * remaining
            full = np.flatnonzero(left >= remaining)
            n_forced = max(0, len(full) - slack)
            forced = rng.choice(full, size=n_forced, replace=False) if n_forced else full[:0]
            others = np.setdiff1d(np.flatnonzero(left > 0), forced)
            free = rng.choice(others, size=p - n_forced, replace=False)
            chosen_ids = rng.permutation(np.concatenate([forced, free]))
            batch: list[int] = []
            for pid_pos in chosen_ids:
                left[pid_pos] -= 1
                batch.extend(int(i) for i in groups[pid_pos][left[pid_pos]])
            batches.append(batch)
        return batches

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(ids={len(self._indices)}, batch_size={self.batch_size}, "
            f"num_instances={self.num_instances}, batches={self.num_batches}, "
            f"seed={self.seed}, rank={self.rank}, world_size={self.world_size})"
        )


def _max_batches(groups: np.ndarray, p: int) -> int:
    """The most batches of ``p`` distinct identities that ``groups[i]`` groups per identity
    allow: the largest ``b`` with ``sum_i min(groups_i, b) >= p * b`` (the condition is
    monotone in ``b``, and sufficient: deal the groups column by column into a ``b x p``
    grid, identity by identity, and no identity lands twice in one row)."""
    lo, hi = 0, int(groups.sum()) // p
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(groups, mid).sum()) >= p * mid:
            lo = mid
        else:
            hi = mid - 1
    return lo
