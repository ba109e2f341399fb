from collections import Counter
from functools import cache

import pytest

from reidlab.data.sampler import RandomIdentitySampler

# identity counts from 1 image to 13, several below K = 4
COUNTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 13, 4, 4, 4, 11]
PIDS = [pid for pid, n in enumerate(COUNTS) for _ in range(n)]


def _batches(sampler: RandomIdentitySampler) -> list[list[int]]:
    out = list(sampler)
    bs = sampler.batch_size
    assert len(out) % bs == 0
    return [out[i : i + bs] for i in range(0, len(out), bs)]


@cache
def _brute_force_batches(groups: tuple[int, ...], p: int) -> int:
    """Most batches of p distinct ids, by trying every choice of ids."""
    from itertools import combinations

    live = [i for i, g in enumerate(groups) if g > 0]
    best = 0
    for chosen in combinations(live, p):
        left = list(groups)
        for i in chosen:
            left[i] -= 1
        best = max(best, 1 + _brute_force_batches(tuple(sorted(left)), p))
    return best


def test_every_batch_is_p_ids_times_k_instances():
    sampler = RandomIdentitySampler(PIDS, batch_size=16, num_instances=4, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for batch in _batches(sampler):
            assert all(0 <= i < len(PIDS) for i in batch)
            counts = Counter(PIDS[i] for i in batch)
            assert len(counts) == 4 and set(counts.values()) == {4}
            for j in range(0, 16, 4):  # each id's K images are contiguous
                assert len({PIDS[i] for i in batch[j : j + 4]}) == 1


def test_len_is_exact_and_maximal():
    for bs, k in [(16, 4), (8, 2), (12, 4), (6, 1)]:
        sampler = RandomIdentitySampler(PIDS, batch_size=bs, num_instances=k)
        groups = tuple(sorted(max(n, k) // k for n in COUNTS))
        for epoch in range(4):
            sampler.set_epoch(epoch)
            assert len(list(sampler)) == len(sampler)
        if bs // k <= 4:
            assert len(sampler) == _brute_force_batches(groups, bs // k) * bs


def test_classic_random_length_case_always_gets_both_batches():
    # P = 2, groups (2, 1, 1): a random first pick of the two single-group ids would
    # leave only one id and end the epoch after one batch
    pids = [0] * 4 + [1] * 2 + [2] * 2
    sampler = RandomIdentitySampler(pids, batch_size=4, num_instances=2)
    assert len(sampler) == 8
    for epoch in range(30):
        sampler.set_epoch(epoch)
        assert len(list(sampler)) == 8


def test_same_seed_and_epoch_give_the_same_order():
    a = RandomIdentitySampler(PIDS, batch_size=16, num_instances=4, seed=7)
    b = RandomIdentitySampler(PIDS, batch_size=16, num_instances=4, seed=7)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b) == list(a)
    b.set_epoch(3)
    assert list(a) != list(b)
    c = RandomIdentitySampler(PIDS, batch_size=16, num_instances=4, seed=8)
    c.set_epoch(2)
    assert list(a) != list(c)


def test_small_identities_are_drawn_with_replacement():
    sampler = RandomIdentitySampler(PIDS, batch_size=16, num_instances=4)
    seen_single = False
    for epoch in range(5):
        sampler.set_epoch(epoch)
        for batch in _batches(sampler):
            for j in range(0, 16, 4):
                group = batch[j : j + 4]
                pid = PIDS[group[0]]
                if COUNTS[pid] < 4:
                    assert len(set(group)) <= COUNTS[pid]
                    seen_single |= pid == 0
                else:
                    assert len(set(group)) == 4
    assert seen_single


def test_epoch_covers_the_images():
    # 8 ids x 8 images, K = 4, P = 2: 16 groups, 8 batches, every image exactly once
    pids = [pid for pid in range(8) for _ in range(8)]
    sampler = RandomIdentitySampler(pids, batch_size=8, num_instances=4, seed=1)
    assert sorted(sampler) == list(range(64))
    # irregular counts: only remainders of the groups of 4, repeats within ids of fewer
    # than 4 images, and the groups no batch can use may be missed
    sampler = RandomIdentitySampler(PIDS, batch_size=8, num_instances=4)
    groups = sum(max(n, 4) // 4 for n in COUNTS)
    unused_groups = groups - len(sampler) // 4
    missed = (
        sum(n % 4 for n in COUNTS if n >= 4)
        + sum(n - 1 for n in COUNTS if n < 4)
        + 4 * unused_groups
    )
    assert unused_groups <= 1
    for epoch in range(5):
        sampler.set_epoch(epoch)
        assert len(set(sampler)) >= len(PIDS) - missed


def test_distributed_shares_are_disjoint_and_cover_the_epoch():
    single = RandomIdentitySampler(PIDS, batch_size=8, num_instances=4, seed=5)
    single.set_epoch(1)
    ref = _batches(single)
    world = 3
    keep = len(ref) // world * world
    shares = []
    for rank in range(world):
        s = RandomIdentitySampler(
            PIDS, batch_size=8, num_instances=4, seed=5, rank=rank, world_size=world
        )
        s.set_epoch(1)
        batches = _batches(s)
        assert len(s) == len(batches) * 8 == keep // world * 8
        shares.append(batches)
    flat = [tuple(b) for share in shares for b in share]
    assert len(set(flat)) == len(flat)  # disjoint
    assert sorted(flat) == sorted(tuple(b) for b in ref[:keep])


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="multiple of num_instances"):
        RandomIdentitySampler(PIDS, batch_size=10, num_instances=4)
    with pytest.raises(ValueError, match="identities"):
        RandomIdentitySampler([0, 0, 1, 1], batch_size=12, num_instances=2)
    with pytest.raises(ValueError, match="rank"):
        RandomIdentitySampler(PIDS, rank=2, world_size=2, batch_size=8)
    with pytest.raises(ValueError, match="world_size"):
        RandomIdentitySampler(PIDS, batch_size=8, num_instances=4, world_size=100)


def test_identity_split_cuts_each_global_batch_into_whole_identities():
    bs, k, world = 16, 4, 2
    ref = RandomIdentitySampler(PIDS, batch_size=bs, num_instances=k, seed=7)
    ref.set_epoch(3)
    ref_batches = _batches(ref)
    shards = []
    for rank in range(world):
        s = RandomIdentitySampler(PIDS, batch_size=bs, num_instances=k, seed=7, rank=rank,
                                  world_size=world, split="identities")
        s.set_epoch(3)
        assert s.local_batch_size == 8 and len(s) == len(ref_batches) * 8
        out = list(s)
        shards.append([out[i : i + 8] for i in range(0, len(out), 8)])
    for step, batch in enumerate(ref_batches):
        a, b = shards[0][step], shards[1][step]
        assert a + b == batch  # together: the one-process batch, in order
        ids_a, ids_b = {PIDS[i] for i in a}, {PIDS[i] for i in b}
        assert len(ids_a) == len(ids_b) == 2 and not ids_a & ids_b  # whole, disjoint ids
        assert Counter(PIDS[i] for i in a).most_common()[-1][1] == k


def test_identity_split_needs_p_divisible_by_world_size():
    with pytest.raises(ValueError, match="split evenly"):
        RandomIdentitySampler(PIDS, batch_size=12, num_instances=4, world_size=2,
                              split="identities")
    with pytest.raises(ValueError, match="split must be"):
        RandomIdentitySampler(PIDS, batch_size=8, num_instances=4, split="ids")
