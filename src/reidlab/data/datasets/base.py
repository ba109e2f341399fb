"""Shared pieces of the dataset parsers: root resolution, file listing, relabelling.

Every parser accepts either the dataset folder itself or a parent folder holding it under
one of its official names (``data/`` holding ``Market-1501-v15.09.15/``), also one level
deeper (``data/market1501/Market-1501-v15.09.15/``, the layout some toolkits use). A root
that holds none of them raises :class:`DatasetLayoutError` naming the root, the expected
entries and those missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from reidlab.data.records import ImageRecord, ReIDDataset

JUNK_PID = -1
"""Market-1501 / DukeMTMC-reID pid of junk boxes (bad detections), never a true match."""
DISTRACTOR_PID = 0
"""Market-1501 / DukeMTMC-reID pid of distractor boxes (background, other people)."""

JPEG_SUFFIXES = (".jpg", ".jpeg")


class DatasetLayoutError(FileNotFoundError):
    """A dataset root does not hold the expected folders and files."""


class DatasetFormatError(ValueError):
    """A dataset file name or list line does not follow the dataset's format."""


@dataclass(frozen=True)
class NameFormat:
    """How image file names encode identity and camera: a regular expression with named
    groups ``pid`` and ``cam`` (1-based), and an example name for error messages."""

    pattern: re.Pattern[str]
    example: str


@dataclass(frozen=True)
class Layout:
    """The entries a dataset folder must hold; names ending in ``/`` are folders."""

    label: str
    entries: tuple[str, ...]

    def missing(self, folder: Path) -> list[str]:
        return [e for e in self.entries if find_entry(folder, e) is None]


def find_entry(folder: Path, entry: str) -> Path | None:
    """The path of ``entry`` (``name/`` for a folder) in ``folder``, matched exactly or,
    failing that, ignoring case (``mask_train_V2`` for ``mask_train_v2``); None if absent."""
    is_dir = entry.endswith("/")
    name = entry.rstrip("/")
    exact = folder / name
    if exact.is_dir() if is_dir else exact.is_file():
        return exact
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    for other in sorted(names):
        path = folder / other
        if other.lower() == name.lower() and (path.is_dir() if is_dir else path.is_file()):
            return path
    return None


def require_entry(folder: Path, entry: str) -> Path:
    """Like :func:`find_entry` but raising :class:`DatasetLayoutError` when absent."""
    path = find_entry(folder, entry)
    if path is None:
        raise DatasetLayoutError(f"{folder} has no {entry}")
    return path


def _candidates(root: Path, folder_names: Sequence[str]) -> list[Path]:
    out = [root]
    for name in folder_names:
        child = find_entry(root, name + "/")
        if child is None:
            continue
        out.append(child)
        for inner in folder_names:
            grandchild = find_entry(child, inner + "/")
            if grandchild is not None:
                out.append(grandchild)
    return list(dict.fromkeys(out))


def resolve_dataset_dir(
    root: str | Path, dataset: str, folder_names: Sequence[str], layouts: Sequence[Layout]
) -> tuple[Path, list[Layout]]:
    """Find the dataset folder at or under ``root``.

    Args:
        root: the dataset folder itself, or a parent holding it under one of ``folder_names``
            (also one level deeper).
        dataset: the dataset's name, for error messages.
        folder_names: the official folder names, in order of preference.
        layouts: the alternative layouts the folder may follow (e.g. MSMT17 V1 and V2).

    Returns:
        The first matching folder (absolute) and the layouts it satisfies completely.

    Raises:
        DatasetLayoutError: naming the root, the expected entries and what is missing.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{dataset}: root {str(root)!r} does not exist or is not a folder; expected "
            f"{_describe(layouts)}, in the root itself or in a subfolder named "
            f"{' or '.join(folder_names)}"
        )
    candidates = _candidates(root, folder_names)
    for folder in candidates:
        complete = [layout for layout in layouts if not layout.missing(folder)]
        if complete:
            return folder.resolve(), complete
    report = []
    for folder in candidates:
        best = min(layouts, key=lambda layout: len(layout.missing(folder)))
        label = f" ({best.label})" if len(layouts) > 1 else ""
        report.append(f"{folder} lacks {', '.join(best.missing(folder))}{label}")
    raise DatasetLayoutError(
        f"{dataset}: no dataset found at root {str(root)!r}; expected {_describe(layouts)}, "
        f"in the root itself or in a subfolder named {' or '.join(folder_names)}; "
        + "; ".join(report)
    )


def _describe(layouts: Sequence[Layout]) -> str:
    parts = [
        (f"{layout.label}: " if len(layouts) > 1 else "") + ", ".join(layout.entries)
        for layout in layouts
    ]
    return " or ".join(parts)


def list_jpegs(folder: Path) -> list[Path]:
    """The JPEG files of ``folder`` in sorted name order; other files (``Thumbs.db``) are
    skipped. An empty folder raises: a dataset split is never silently empty."""
    paths = sorted(
        folder / name
        for name in os.listdir(folder)
        if name.lower().endswith(JPEG_SUFFIXES) and (folder / name).is_file()
    )
    if not paths:
        raise DatasetLayoutError(f"{folder} holds no .jpg images")
    return paths


def parse_named_images(
    folder: Path,
    name_format: NameFormat,
    *,
    domain: str,
    num_cameras: int | None,
    max_pid: int | None,
    exclude_pids: Iterable[int] = (),
) -> list[ImageRecord]:
    """Records of a folder whose file names encode ``pid`` and camera (1-based).

    Args:
        folder: the image folder.
        name_format: how file names encode pid and camera.
        domain: the dataset name written into each record.
        num_cameras: cameras are checked to lie in ``1..num_cameras`` (None: only ``>= 1``).
        max_pid: pids are checked to be junk (-1) or in ``0..max_pid`` (None: only ``>= -1``).
        exclude_pids: pids left out of the split (junk, distractors).

    Returns:
        One record per image with a 0-based camid, in file-name order.

    Raises:
        DatasetFormatError: naming the file whose name does not parse or is out of range.
    """
    exclude = set(exclude_pids)
    records = []
    for path in list_jpegs(folder):
        match = name_format.pattern.fullmatch(path.name)
        if match is None:
            raise DatasetFormatError(
                f"{path}: file name does not follow the {domain} format "
                f"(like {name_format.example})"
            )
        pid, cam = int(match["pid"]), int(match["cam"])
        if pid < JUNK_PID or (max_pid is not None and pid > max_pid):
            limit = f"0..{max_pid}" if max_pid is not None else ">= 0"
            raise DatasetFormatError(f"{path}: pid {pid} is outside -1 (junk) and {limit}")
        if cam < 1 or (num_cameras is not None and cam > num_cameras):
            limit = f"1..{num_cameras}" if num_cameras is not None else ">= 1"
            raise DatasetFormatError(f"{path}: camera {cam} is outside {limit}")
        if pid in exclude:
            continue
        records.append(ImageRecord(str(path), pid, cam - 1, domain))
    return records


def relabel(records: list[ImageRecord]) -> list[ImageRecord]:
    """Map pids to ``0 .. N-1`` in sorted order of the original pid (for training labels)."""
    mapping = {pid: label for label, pid in enumerate(sorted({r.pid for r in records}))}
    return [ImageRecord(r.path, mapping[r.pid], r.camid, r.domain) for r in records]


def parse_bbox_layout(
    dataset_dir: Path,
    name_format: NameFormat,
    *,
    name: str,
    num_cameras: int | None,
    max_pid: int | None,
) -> ReIDDataset:
    """Parse the Market-1501 folder layout (also DukeMTMC-reID's).

    ``bounding_box_train/`` becomes the relabelled train split without junk (-1) and
    distractor (0) boxes; ``query/`` keeps original pids without junk and distractors;
    ``bounding_box_test/`` (the gallery) keeps every box, junk and distractors included,
    as the official protocol of Zheng et al. (ICCV 2015) does: the evaluation must ignore
    gallery pid -1 itself and count pid 0 as a non-match.
    """
    special = (JUNK_PID, DISTRACTOR_PID)

    def split(entry: str, exclude: tuple[int, ...]) -> list[ImageRecord]:
        folder = require_entry(dataset_dir, entry)
        return parse_named_images(
            folder,
            name_format,
            domain=name,
            num_cameras=num_cameras,
            max_pid=max_pid,
            exclude_pids=exclude,
        )

    train = split("bounding_box_train/", special)
    if not train:
        raise DatasetLayoutError(f"{dataset_dir}/bounding_box_train holds only junk images")
    return ReIDDataset(
        name=name,
        train=relabel(train),
        query=split("query/", special),
        gallery=split("bounding_box_test/", ()),
    )


BBOX_LAYOUT = Layout("Market-1501 layout", ("bounding_box_train/", "query/", "bounding_box_test/"))
