"""From the data config to data loaders: datasets, PK sampling, seeded augmentation."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reidlab.config import Config, DataConfig
from reidlab.data.datasets import combine_train, load_dataset
from reidlab.data.loader import ImageDataset
from reidlab.data.records import ImageRecord, ReIDDataset
from reidlab.data.sampler import RandomIdentitySampler
from reidlab.data.transforms import build_transforms


def dataset_root(cfg: DataConfig, name: str) -> Path:
    """``data.roots[name]`` if given, else ``data.root`` (each parser finds its official
    folder below it; the synthetic set is generated into a folder named after its
    parameters)."""
    return Path(cfg.roots.get(name, cfg.root))


def load_named(cfg: DataConfig, name: str) -> ReIDDataset:
    """Parse dataset ``name`` under its root; the synthetic ones (``synthetic``,
    ``synthetic-a``, ``-b``, ``-c``) with the size and seed of ``data.synthetic``, and
    ``synthetic`` in the domain ``data.synthetic.domain``."""
    options: dict[str, object] = {}
    if name.startswith("synthetic"):
        s = cfg.synthetic
        options = {"ids": s.ids, "seed": s.seed}
        if name == "synthetic":
            options["domain"] = s.domain
    return load_dataset(name, dataset_root(cfg, name), **options)


class SeededSampler(Sampler):
    """Pairs every index of an epoch-aware sampler with its own augmentation seed, so the
    random transforms of a sample depend only on (seed, epoch, position), never on worker
    count or on where a run was resumed."""

    def __init__(self, sampler: RandomIdentitySampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = zlib.crc32(f"{self.seed}:{self.epoch}".encode()) * 1_000_003
        for position, index in enumerate(self.sampler):
            yield index, (base + position) % (2**63)

    def __len__(self) -> int:
        return len(self.sampler)


class SeededDataset(Dataset):
    """Reads ``(index, seed)`` pairs: seeds torch's generator, then returns ``base[index]``."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        torch.manual_seed(seed)
        return self.base[index]

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]


@dataclass
class TrainData:
    loader: DataLoader
    sampler: SeededSampler
    num_classes: int
    records: list[ImageRecord]


@dataclass
class TestSet:
    name: str
    loader: DataLoader
    num_query: int
    query: list[ImageRecord]
    gallery: list[ImageRecord]


def build_train_data(cfg: Config, datasets: list[ReIDDataset], rank: int = 0,
                     world_size: int = 1) -> TrainData:
    records, _ = combine_train(datasets)
    if not records:
        names = ", ".join(d.name for d in datasets)
        raise ValueError(f"no training images in {names}")
    d = cfg.data
    sampler = SeededSampler(
        RandomIdentitySampler([r.pid for r in records], d.batch_size, d.num_instances,
                              seed=cfg.seed, rank=rank, world_size=world_size),
        cfg.seed,
    )
    dataset = SeededDataset(
        ImageDataset(records, build_transforms(cfg.augment, d.height, d.width, train=True))
    )
    loader = DataLoader(
        dataset,
        batch_size=d.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=d.num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=d.num_workers > 0,
    )
    return TrainData(loader, sampler, len({r.pid for r in records}), records)


def build_test_sets(cfg: Config, datasets: list[ReIDDataset]) -> list[TestSet]:
    d = cfg.data
    transform = build_transforms(cfg.augment, d.height, d.width, train=False)
    sets = []
    for ds in datasets:
        records = ds.query + ds.gallery
        loader = DataLoader(
            ImageDataset(records, transform),
            batch_size=d.test_batch_size,
            shuffle=False,
            num_workers=d.num_workers,
            pin_memory=torch.cuda.is_available(),
        )
        sets.append(TestSet(ds.name, loader, len(ds.query), ds.query, ds.gallery))
    return sets
