"""From the data config to data loaders: datasets, PK sampling, seeded augmentation.

The train data path has two switches: ``data.cache`` (decode every image once, into
memory or a memory-mapped file, see :mod:`reidlab.data.cache`) and ``data.augment_on``
(``workers``: the per-image transforms in the loader workers; ``device``: workers only
gather ``uint8`` images and the augmentation runs on whole batches on the training
device, :mod:`reidlab.data.batch_transforms`). Both paths draw each sample's
augmentation from its own seed, so they give the same batches. ``data.backend: dali``
decodes on the GPU instead (:mod:`reidlab.data.dali`), with the same augmentation.

In a distributed run (a process group is joined) each process's loader yields its share of
every global batch (:class:`~reidlab.data.sampler.RandomIdentitySampler`, whole
identities), and each sample keeps the augmentation seed of its position in the global
batch: the processes together draw exactly the batches of one process.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reidlab.config import Config, DataConfig
from reidlab.data.batch_transforms import BatchAugment, DeviceAugmentLoader
from reidlab.data.cache import build_image_cache
from reidlab.data.check import validate_dataset
from reidlab.data.dali import DaliTrainLoader
from reidlab.data.datasets import combine_train, load_dataset
from reidlab.data.loader import ImageDataset, ImageStore, load_resized
from reidlab.data.records import ImageRecord, ReIDDataset
from reidlab.data.sampler import RandomIdentitySampler
from reidlab.data.transforms import build_transforms
from reidlab.engine.collectives import rank_zero_first, world


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
    dataset = load_dataset(name, dataset_root(cfg, name), **options)
    # Every image opened once (cached beside the dataset) before anything trains on it.
    checked, skipped = validate_dataset(dataset, skip_bad=cfg.skip_bad_images)
    checked.skipped = [str(p) for p in skipped]
    return checked


class SeededSampler(Sampler):
    """Pairs every index of an epoch-aware sampler with its own augmentation seed, so the
    random transforms of a sample depend only on (seed, epoch, position), never on worker
    count, on where a run was resumed or on how many processes share each batch (the
    position is the sample's place in the epoch's global batches)."""

    def __init__(self, sampler: RandomIdentitySampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch to draw; ``start``: the first position yielded (a run resumed
        in the middle of an epoch skips the samples it has trained on)."""
        self.epoch = epoch
        self.start = start
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = zlib.crc32(f"{self.seed}:{self.epoch}".encode()) * 1_000_003
        for position, index in enumerate(self.sampler):
            if position >= self.start:
                yield index, (base + self.global_position(position)) % (2**63)

    def global_position(self, position: int) -> int:
        """Where this replica's ``position``-th sample lies in the epoch of one process."""
        s = self.sampler
        if s.world_size == 1 or s.split != "identities":
            return position
        share = s.local_batch_size
        return position // share * s.batch_size + s.rank * share + position % share

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


class RawTrainDataset(Dataset):
    """Reads ``(index, seed)`` pairs and returns ``(uint8 (3, H, W) image, pid, camid,
    index, seed)``: the image at the training resolution (from the cache when there is
    one), its augmentation left to :class:`~reidlab.data.batch_transforms.BatchAugment`."""

    def __init__(self, records: list[ImageRecord], height: int, width: int,
                 images: ImageStore | None = None) -> None:
        self.records, self.height, self.width, self.images = records, height, width, images

    def __getitem__(self, item: tuple[int, int]):
        index, seed = item
        r = self.records[index]
        if self.images is not None:
            image = self.images[index]
        else:
            image = load_resized(r.path, self.height, self.width)
        return image, r.pid, r.camid, index, seed

    def __len__(self) -> int:
        return len(self.records)


def cache_folder(cfg: DataConfig) -> Path:
    """``data.cache_dir``, else ``<data.root>/cache``."""
    return Path(cfg.cache_dir) if cfg.cache_dir else Path(cfg.root) / "cache"


@dataclass
class TrainData:
    loader: DataLoader | DeviceAugmentLoader | DaliTrainLoader
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
    skipped: list[str] = field(default_factory=list)  # left out by the dataset check


def build_train_data(cfg: Config, datasets: list[ReIDDataset], rank: int | None = None,
                     world_size: int | None = None,
                     device: torch.device | None = None) -> TrainData:
    """The train loader of ``datasets`` as ``cfg.data`` and ``cfg.augment`` say.

    Args:
        rank, world_size: this process's share of each global batch (default: those of
            the process group, ``(0, 1)`` without one).
        device: where ``data.augment_on=device`` and ``data.backend=dali`` put the batches
            (default: ``cfg.device``).
    """
    records, _ = combine_train(datasets)
    if not records:
        names = ", ".join(d.name for d in datasets)
        raise ValueError(f"no training images in {names}")
    d = cfg.data
    group = world()
    rank = group[0] if rank is None else rank
    world_size = group[1] if world_size is None else world_size
    # data.batch_size is the global batch: each process takes whole identities of it
    pk = RandomIdentitySampler([r.pid for r in records], d.batch_size, d.num_instances,
                               seed=cfg.seed, rank=rank, world_size=world_size,
                               split="identities")
    sampler = SeededSampler(pk, cfg.seed)
    num_classes = len({r.pid for r in records})
    if d.backend == "dali":
        return TrainData(DaliTrainLoader(records, sampler, cfg.augment, d.height, d.width,
                                         _device(cfg, device), pk.local_batch_size,
                                         d.num_workers), sampler, num_classes, records)
    with rank_zero_first():  # a disk cache is written once, by rank 0, then read
        images = build_image_cache(records, d.height, d.width, d.cache, cache_folder(d),
                                   num_workers=d.num_workers)
    dataset: Dataset
    if d.augment_on == "device":
        dataset = RawTrainDataset(records, d.height, d.width, images)
    else:
        transform = build_transforms(cfg.augment, d.height, d.width, train=True)
        dataset = SeededDataset(ImageDataset(records, transform, images=images))
    loader: DataLoader | DeviceAugmentLoader = DataLoader(
        dataset,
        batch_size=pk.local_batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=d.num_workers,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=d.num_workers > 0,
    )
    if d.augment_on == "device":
        loader = DeviceAugmentLoader(loader, BatchAugment(cfg.augment, d.height, d.width),
                                     _device(cfg, device))
    return TrainData(loader, sampler, num_classes, records)


def _device(cfg: Config, device: torch.device | None) -> torch.device:
    if device is not None:
        return device
    from reidlab.engine.context import resolve_device  # engine imports data

    return resolve_device(cfg.device)


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
        sets.append(TestSet(ds.name, loader, len(ds.query), ds.query, ds.gallery, ds.skipped))
    return sets
