"""The train pipeline's seeded sampler under several processes."""

from reidlab.data.pipeline import SeededSampler
from reidlab.data.sampler import RandomIdentitySampler

PIDS = [pid for pid in range(12) for _ in range(6)]


def _pairs(rank: int, world: int, start: int = 0) -> list[tuple[int, int]]:
    pk = RandomIdentitySampler(PIDS, batch_size=16, num_instances=4, seed=3, rank=rank,
                               world_size=world, split="identities")
    sampler = SeededSampler(pk, seed=3)
    sampler.set_epoch(2, start=start)
    return list(sampler)


def test_each_share_keeps_the_one_process_seeds():
    """Every image of a global batch gets the augmentation seed it gets in one process,
    whichever rank draws it, so 2 processes augment exactly as 1 does."""
    one = _pairs(0, 1)
    shares = [_pairs(r, 2) for r in range(2)]
    rebuilt = [pair for step in range(len(one) // 16)
               for rank in range(2) for pair in shares[rank][step * 8 : (step + 1) * 8]]
    assert rebuilt == one
    assert len({seed for _, seed in one}) == len(one)


def test_a_resumed_share_continues_where_it_stopped():
    assert _pairs(1, 2, start=8) == _pairs(1, 2)[8:]
