"""Dataset parsers, registered by name in :data:`reidlab.registry.DATASETS`.

``market1501`` (Zheng et al., ICCV 2015), ``dukemtmc`` (Zheng et al., ICCV 2017; Ristani
et al., ECCV Workshops 2016), ``msmt17`` (Wei et al., CVPR 2018; V1 and V2) and the built-in
``synthetic`` dataset, and your own images as ``folder`` or ``csv`` (see ``custom.py``).
Each builder is ``fn(root, **options) -> ReIDDataset``; ``root`` may
be the dataset folder or a parent holding it under its official name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reidlab.data.datasets import (  # noqa: F401 (registers)
    custom,
    dukemtmc,
    market1501,
    msmt17,
    synthetic,
)
from reidlab.data.datasets.base import (
    DISTRACTOR_PID,
    JUNK_PID,
    DatasetFormatError,
    DatasetLayoutError,
)
from reidlab.data.records import ImageRecord, ReIDDataset, split_stats
from reidlab.registry import DATASETS

__all__ = [
    "DatasetFormatError",
    "DatasetLayoutError",
    "combine_train",
    "dataset_info",
    "format_info_table",
    "load_dataset",
]

SPLITS = ("train", "query", "gallery")
# Datasets whose query/gallery pid 0 marks distractor boxes rather than an identity.
_DISTRACTOR_DATASETS = ("market1501", "dukemtmc", "synthetic")


def load_dataset(name: str, root: str | Path, **options: Any) -> ReIDDataset:
    """Parse the dataset registered as ``name``.

    Args:
        name: a registered dataset name (``market1501``, ``dukemtmc``, ``msmt17``,
            ``synthetic``).
        root: the dataset folder, or a parent holding it under its official folder name.
        **options: the builder's own keyword arguments (``msmt17``: ``version``;
            ``synthetic``: ``ids``, ``seed``, ``domain``).

    Raises:
        KeyError: an unknown name (naming the nearest registered one).
        DatasetLayoutError: the root does not hold the dataset (naming what is missing).
        DatasetFormatError: a file name or list line does not parse (naming it).
    """
    dataset = DATASETS.get(name)(root, **options)
    if not isinstance(dataset, ReIDDataset):
        raise TypeError(f"dataset builder {name!r} returned {type(dataset).__name__}")
    return dataset


def _is_distractor_dataset(dataset: ReIDDataset) -> bool:
    return dataset.name.startswith(_DISTRACTOR_DATASETS)


def dataset_info(name: str, root: str | Path, **options: Any) -> dict[str, dict[str, int]]:
    """Per-split statistics of a dataset, as the papers' dataset tables count them.

    Returns:
        ``{"train": {"ids", "images", "cameras", "junk", "distractors"}, "query": {...},
        "gallery": {...}}``. ``images`` and ``cameras`` count every record; ``ids`` counts
        true identities only, so junk (pid -1) and distractor (pid 0 of Market-1501 style
        datasets) boxes are counted apart, as ``junk`` and ``distractors``. Market-1501
        gives 751/12,936/6, 750/3,368/6 and 750/19,732/6 (2,793 distractors, 3,819 junk).
    """
    dataset = load_dataset(name, root, **options)
    distractors = _is_distractor_dataset(dataset)
    info = {}
    for split in SPLITS:
        records: list[ImageRecord] = getattr(dataset, split)
        special = {JUNK_PID, DISTRACTOR_PID} if distractors and split != "train" else {JUNK_PID}
        stats = split_stats(records)
        stats["ids"] = split_stats([r for r in records if r.pid not in special])["ids"]
        stats["junk"] = sum(r.pid == JUNK_PID for r in records) if split != "train" else 0
        stats["distractors"] = (
            sum(r.pid == DISTRACTOR_PID for r in records) if DISTRACTOR_PID in special else 0
        )
        info[split] = stats
    return info


def format_info_table(info: dict[str, dict[str, int]]) -> str:
    """A plain text table of :func:`dataset_info`'s result, one row per split.

    Junk and distractor columns appear only when some split has such boxes.
    """
    columns = ["ids", "images", "cameras"]
    columns += [c for c in ("distractors", "junk") if any(s.get(c, 0) for s in info.values())]
    rows = [["split", *columns]]
    rows += [[split, *(f"{stats.get(c, 0):,}" for c in columns)] for split, stats in info.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def combine_train(datasets: list[ReIDDataset]) -> tuple[list[ImageRecord], list[int]]:
    """Join the train splits of several datasets for joint training.

    Each dataset's relabelled train pids are offset by the number of train ids before it,
    and its camids by the number of train cameras (largest camid + 1) before it, so that
    neither identities nor cameras of different datasets collide. ``domain`` is kept.

    Returns:
        The joined records (pids ``0 .. sum(N_i) - 1``) and each dataset's pid offset.
    """
    records: list[ImageRecord] = []
    offsets = []
    pid_offset = cam_offset = 0
    for dataset in datasets:
        if not dataset.train:
            raise ValueError(f"combine_train: dataset {dataset.name!r} has no train images")
        offsets.append(pid_offset)
        records += [
            ImageRecord(r.path, r.pid + pid_offset, r.camid + cam_offset, r.domain)
            for r in dataset.train
        ]
        pid_offset += max(r.pid for r in dataset.train) + 1
        cam_offset += max(r.camid for r in dataset.train) + 1
    return records, offsets
