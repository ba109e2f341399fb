"""Dataset validation shared by ``reidlab data check`` and the start of every run.

Two kinds of check:

* images, for every dataset: each file is opened and decoded once (see
  :mod:`reidlab.data.image_check`, cached beside the images), and zero-byte, truncated,
  non-image, unreadable and missing files are reported;
* layout, for your own datasets (``folder``, ``csv``): entries the parser could not use
  (non-image files, names without a camera, duplicate paths), training identities with a
  single image (no positive pair for the triplet loss), query identities absent from the
  gallery (a query that can never be matched) and empty splits.

Every finding names the file (and for a CSV the line). A run stops on the first check
that finds anything unless ``data.skip_bad_images`` is true: the bad entries are then left
out, and their count and names are logged (and written into ``metrics.json``). An empty
split cannot be skipped.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace

from reidlab.data.datasets.base import relabel
from reidlab.data.datasets.custom import SPLITS, CustomDataset, Problem
from reidlab.data.image_check import check_images
from reidlab.data.records import ImageRecord, ReIDDataset

log = logging.getLogger("reidlab")

#: How many findings an error message lists before "and N more".
LISTED = 10


class DataCheckError(ValueError):
    """A dataset has bad entries and ``data.skip_bad_images`` is false (or cannot help)."""


@dataclass
class CheckReport:
    """The findings of :func:`check_dataset`, in the order the checks ran."""

    dataset: str
    images: int
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def lines(self) -> list[str]:
        return [f"{p.split or '-'}: {p.kind}: {p}" for p in self.problems]


def _records(dataset: ReIDDataset) -> list[tuple[str, ImageRecord]]:
    return [(split, r) for split in SPLITS for r in getattr(dataset, split)]


def layout_problems(dataset: ReIDDataset) -> list[Problem]:
    """The layout findings of a ``folder`` or ``csv`` dataset (none for the others)."""
    if not isinstance(dataset, CustomDataset):
        return []
    problems = list(dataset.problems)
    where = dataset.sources
    for split in SPLITS:
        if not getattr(dataset, split):
            problems.append(Problem("empty-split", split, f"the {split} split has no images",
                                    split=split))
    counts = Counter(r.pid for r in dataset.train)
    for r in dataset.train:
        if counts[r.pid] == 1:
            problems.append(Problem("single-image-id", r.path, "the only training image of its "
                                    "identity (no positive pair)", where.get(r.path, ""), "train"))
    gallery_pids = {r.pid for r in dataset.gallery}
    for r in dataset.query:
        if r.pid not in gallery_pids:
            problems.append(Problem("query-id-not-in-gallery", r.path, f"query pid {r.pid} has "
                                    "no gallery image", where.get(r.path, ""), "query"))
    return problems


def image_problems(dataset: ReIDDataset, *, use_cache: bool = True, workers: int | None = None,
                   progress: bool = True) -> list[Problem]:
    """Every bad image file of the dataset's three splits (see :func:`check_images`)."""
    records = _records(dataset)
    found = check_images([r.path for _, r in records], workers=workers, use_cache=use_cache,
                         progress=progress, desc=f"checking {dataset.name} images")
    where = dataset.sources if isinstance(dataset, CustomDataset) else {}
    problems, named = [], set()
    for split, r in records:
        if r.path in found and (split, r.path) not in named:
            named.add((split, r.path))
            kind, detail = found[r.path]
            problems.append(Problem(kind, r.path, detail, where.get(r.path, ""), split))
    return problems


def check_dataset(dataset: ReIDDataset, *, images: bool = True, use_cache: bool = True,
                  workers: int | None = None, progress: bool = True) -> CheckReport:
    """All findings for ``dataset``: layout first, then (``images``) every image opened."""
    problems = layout_problems(dataset)
    if images:
        problems += image_problems(dataset, use_cache=use_cache, workers=workers,
                                   progress=progress)
    return CheckReport(dataset.name, len(_records(dataset)), problems)


def _listing(problems: list[Problem]) -> str:
    shown = "; ".join(str(p) for p in problems[:LISTED])
    more = len(problems) - LISTED
    return shown + (f"; and {more} more (reidlab data check lists them all)" if more > 0 else "")


def without(dataset: ReIDDataset, problems: list[Problem]) -> ReIDDataset:
    """``dataset`` without the records the findings name (train relabelled again), and with
    the query images whose identity no longer has a gallery image left out too."""
    bad = {(p.split, p.path) for p in problems}
    keep = {s: [r for r in getattr(dataset, s) if (s, r.path) not in bad] for s in SPLITS}
    gallery_pids = {r.pid for r in keep["gallery"]}
    if isinstance(dataset, CustomDataset):
        keep["query"] = [r for r in keep["query"] if r.pid in gallery_pids]
    return replace(dataset, train=relabel(keep["train"]), query=keep["query"],
                   gallery=keep["gallery"])


def validate_dataset(dataset: ReIDDataset, *, skip_bad: bool = False,
                     progress: bool = True) -> tuple[ReIDDataset, list[Problem]]:
    """The check a run makes before it trains or tests on ``dataset``.

    Args:
        dataset: as parsed.
        skip_bad: leave bad entries out (``data.skip_bad_images``) instead of stopping.
        progress: show the image check's progress bar.

    Returns:
        The dataset to use (``dataset`` itself when nothing was found) and what was left out.

    Raises:
        DataCheckError: something was found and ``skip_bad`` is false, or a split is empty
            (before or after skipping); the message names the files (the first ten).
    """
    report = check_dataset(dataset, progress=progress)
    if report.ok:
        return dataset, []
    fatal = [p for p in report.problems if p.kind == "empty-split"]
    if fatal or not skip_bad:
        hint = "" if fatal else " (data.skip_bad_images=true leaves them out)"
        listed = fatal or report.problems
        raise DataCheckError(f"dataset {dataset.name}: {len(listed)} bad entr"
                             f"{'y' if len(listed) == 1 else 'ies'}{hint}: {_listing(listed)}")
    cleaned = without(dataset, report.problems)
    for split in SPLITS:
        if not getattr(cleaned, split):
            raise DataCheckError(f"dataset {dataset.name}: no {split} images are left once the "
                                 f"bad entries are skipped: {_listing(report.problems)}")
    log.warning("dataset %s: skipped %d bad entries (data.skip_bad_images): %s", dataset.name,
                len(report.problems), "; ".join(str(p) for p in report.problems))
    return cleaned, report.problems


#: metrics.json keys of what the dataset check left out (beside the test sets' entries).
SKIPPED_KEYS = ("skipped_images", "skipped_files")


def skipped_record(skipped: list[str]) -> dict[str, object]:
    """The ``metrics.json`` entries for the entries left out of a run's datasets: their
    count and their descriptions (each naming the file), duplicates removed."""
    unique = list(dict.fromkeys(skipped))
    return {"skipped_images": len(unique), "skipped_files": unique}
