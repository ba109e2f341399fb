"""Your own images as a dataset: the ``folder`` and ``csv`` formats.

``folder``: ``ROOT/{train,query,gallery}/<pid>/<camid>_<anything>.<jpg|jpeg|png>``, where
``<pid>`` is a folder named by a non-negative integer identity and ``<camid>`` the
non-negative integer camera before the file name's first ``_`` (``3/0_0001.jpg`` is
identity 3 seen by camera 0).

``csv``: ``ROOT/{train,query,gallery}.csv``, each with the header ``path,pid,camid`` (or
``path,pid``) and one image a line, paths relative to the CSV's folder. Without a
``camid`` column every image counts as its own camera: the Market-1501 protocol then
drops no gallery image of the query's identity (it drops same-identity images of the
query's camera only).

Both keep the test pids as given and relabel train pids to ``0..N-1`` in sorted order of
the given ones. Parsing raises on what makes a record impossible (a missing split, a
malformed line); what only makes a record bad (a non-image file, a file name without a
camera) is collected in ``problems`` so that :mod:`reidlab.data.check` reports every one
at once and ``data.skip_bad_images`` can leave them out.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from reidlab.data.datasets.base import DatasetFormatError, DatasetLayoutError, relabel
from reidlab.data.records import ImageRecord, ReIDDataset
from reidlab.registry import DATASETS

SPLITS = ("train", "query", "gallery")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
CSV_HEADERS = (("path", "pid", "camid"), ("path", "pid"))


@dataclass(frozen=True)
class Problem:
    """One bad entry of a dataset: what is wrong, with the file (and list line) named.

    Attributes:
        kind: a short tag (``not-an-image``, ``bad-name``, ``zero-byte``, ``truncated``,
            ``unreadable``, ``single-image-id``, ``query-id-not-in-gallery``,
            ``duplicate-path``, ``empty-split``).
        path: the image (or folder) concerned.
        detail: one sentence saying what is wrong.
        where: ``file.csv:LINE`` for an entry of a list file, else ``""``.
        split: the split the entry belongs to.
    """

    kind: str
    path: str
    detail: str
    where: str = ""
    split: str = ""

    def __str__(self) -> str:
        place = f"{self.where} ({self.path})" if self.where else self.path
        return f"{place}: {self.detail}"


@dataclass
class CustomDataset(ReIDDataset):
    """A :class:`ReIDDataset` that also remembers where each record came from.

    Attributes:
        sources: image path -> ``file.csv:LINE`` for records read from a list file.
        problems: entries the parser found bad but could name (see the module docstring).
        camid_given: False when the camera column was absent (one camera per image).
    """

    sources: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    camid_given: bool = True


def _integer(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _split_dir(root: Path, split: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        raise DatasetLayoutError(
            f"folder: {root} has no {split}/ folder; expected "
            f"{root}/{{train,query,gallery}}/<pid>/<camid>_<anything>.jpg"
        )
    return folder


def parse_folder_split(folder: Path, split: str) -> tuple[list[ImageRecord], list[Problem]]:
    """Records of one split folder ``<pid>/<camid>_<anything>.<jpg|jpeg|png>``, in sorted
    path order, and the entries that do not follow the format.

    Hidden files (``.DS_Store``) are ignored. A file outside a ``<pid>`` folder, a pid
    folder not named by an integer, a non-image suffix and a name without an integer
    camera before ``_`` are problems, not records.
    """
    records: list[ImageRecord] = []
    problems: list[Problem] = []
    for entry in sorted(os.listdir(folder)):
        path = folder / entry
        if entry.startswith("."):
            continue
        if not path.is_dir():
            problems.append(Problem("bad-name", str(path), f"a file directly in {split}/; "
                                    "images go in a folder named by their pid", split=split))
            continue
        pid = _integer(entry)
        if pid is None:
            problems.append(Problem("bad-name", str(path), "identity folder name is not a "
                                    "non-negative integer pid", split=split))
            continue
        for name in sorted(os.listdir(path)):
            file = path / name
            if name.startswith(".") or not file.is_file():
                continue
            if not name.lower().endswith(IMAGE_SUFFIXES):
                problems.append(Problem("not-an-image", str(file), "not a .jpg, .jpeg or "
                                        ".png file", split=split))
                continue
            camid = _integer(name.split("_", 1)[0]) if "_" in name else None
            if camid is None:
                problems.append(Problem("bad-name", str(file), "file name does not start "
                                        "with an integer camera id and '_' (like "
                                        "0_0001.jpg)", split=split))
                continue
            records.append(ImageRecord(str(file), pid, camid, "folder"))
    return records, problems


@DATASETS.register("folder")
def folder_dataset(root: str | Path) -> CustomDataset:
    """Your images in ``ROOT/{train,query,gallery}/<pid>/<camid>_<anything>.jpg``.

    Raises:
        DatasetLayoutError: the root or one of its split folders is missing.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetLayoutError(f"folder: root {str(base)!r} does not exist or is not a folder")
    base = base.resolve()
    splits: dict[str, list[ImageRecord]] = {}
    problems: list[Problem] = []
    for split in SPLITS:
        records, bad = parse_folder_split(_split_dir(base, split), split)
        splits[split] = records
        problems += bad
    return CustomDataset(name="folder", train=relabel(splits["train"]), query=splits["query"],
                         gallery=splits["gallery"], problems=problems)


def read_csv_split(csv_file: Path, split: str, seen: dict[str, str],
                   first_camid: int = 0) -> tuple[list[ImageRecord], list[Problem], bool]:
    """Records of one list file with the header ``path,pid[,camid]``.

    Args:
        csv_file: the list; paths are relative to its folder (absolute ones are kept).
        split: the split's name, for messages.
        seen: image path -> ``file:LINE`` of every entry read so far (updated); a path
            listed again is a ``duplicate-path`` problem and not a second record.
        first_camid: without a ``camid`` column, image ``i`` gets camera
            ``first_camid + i`` (one camera per image, distinct across splits).

    Returns:
        The records in file order, the duplicate entries, and whether camids were given.

    Raises:
        DatasetFormatError: a wrong header or a malformed line, naming the file and line.
    """
    records: list[ImageRecord] = []
    problems: list[Problem] = []
    with csv_file.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        columns = tuple(c.strip().lower() for c in header or [])
        if columns not in CSV_HEADERS:
            raise DatasetFormatError(f"{csv_file}:1: expected the header 'path,pid,camid' or "
                                     f"'path,pid', got {','.join(header or []) or 'nothing'!r}")
        has_camid = len(columns) == 3
        for row in reader:
            line = reader.line_num
            where = f"{csv_file}:{line}"
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(columns):
                raise DatasetFormatError(f"{where}: expected {len(columns)} fields "
                                         f"({','.join(columns)}), got {len(row)}: {row!r}")
            cells = [cell.strip() for cell in row]
            pid = _integer(cells[1])
            if not cells[0] or pid is None:
                raise DatasetFormatError(f"{where}: expected a path and a non-negative integer "
                                         f"pid, got {','.join(row)!r}")
            camid = _integer(cells[2]) if has_camid else first_camid + len(records)
            if camid is None:
                raise DatasetFormatError(f"{where}: camid {cells[2]!r} is not a non-negative "
                                         "integer")
            path = str((csv_file.parent / cells[0]).resolve())
            if path in seen:
                problems.append(Problem("duplicate-path", path, f"already listed at {seen[path]}",
                                        where=where, split=split))
                continue
            seen[path] = where
            records.append(ImageRecord(path, pid, camid, "csv"))
    return records, problems, has_camid


@DATASETS.register("csv")
def csv_dataset(root: str | Path) -> CustomDataset:
    """Your images listed in ``ROOT/train.csv``, ``query.csv`` and ``gallery.csv``.

    Raises:
        DatasetLayoutError: the root or one of the three files is missing.
        DatasetFormatError: a bad header or line, naming the file and line.
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetLayoutError(f"csv: root {str(base)!r} does not exist or is not a folder")
    splits: dict[str, list[ImageRecord]] = {}
    sources: dict[str, str] = {}
    problems: list[Problem] = []
    given = []
    next_camid = 0
    for split in SPLITS:
        csv_file = base.resolve() / f"{split}.csv"
        if not csv_file.is_file():
            raise DatasetLayoutError(f"csv: {base} has no {split}.csv; expected train.csv, "
                                     "query.csv and gallery.csv with the header path,pid,camid")
        records, duplicates, has_camid = read_csv_split(csv_file, split, sources, next_camid)
        next_camid += len(records) + len(duplicates)
        splits[split] = records
        problems += duplicates
        given.append(has_camid)
    if len(set(given)) > 1:
        raise DatasetFormatError(f"csv: in {base} some split files have a camid column and "
                                 "some do not; give it in all three or in none")
    return CustomDataset(name="csv", train=relabel(splits["train"]), query=splits["query"],
                         gallery=splits["gallery"], sources=sources, problems=problems,
                         camid_given=given[0])
