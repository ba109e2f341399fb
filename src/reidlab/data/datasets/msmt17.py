"""MSMT17 (Wei et al., "Person Transfer GAN to Bridge Domain Gap for Person
Re-Identification", CVPR 2018).

4,101 identities, 126,441 boxes (Faster R-CNN) from 15 cameras (12 outdoor, 3 indoor) on
a campus over four days of differing weather. Official split: train 1,041 ids / 32,621
images (``list_train.txt`` 30,248 + ``list_val.txt`` 2,373, joined as is standard); test
3,060 ids with 11,659 query and 82,161 gallery images. Test pids restart from 0, so unlike
Market-1501 pid 0 is a real identity and the test splits have no junk or distractors.

Two releases: V1 with image folders ``train/`` and ``test/``; V2 (faces blurred) with
``mask_train_v2/`` and ``mask_test_v2/``. Both have the list files ``list_train.txt``,
``list_val.txt``, ``list_query.txt`` and ``list_gallery.txt``, one line per image:
``0000/0000_000_01_0303morning_0015_0.jpg 0`` (path relative to the image folder, pid).
The file name's third ``_`` field is the camera (01-15).
"""

from __future__ import annotations

from pathlib import Path

from reidlab.data.datasets.base import (
    DatasetFormatError,
    DatasetLayoutError,
    Layout,
    relabel,
    require_entry,
    resolve_dataset_dir,
)
from reidlab.data.records import ImageRecord, ReIDDataset
from reidlab.registry import DATASETS

FOLDER_NAMES = ("MSMT17_V1", "MSMT17_V2", "MSMT17", "msmt17")
LIST_FILES = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
LAYOUTS = {
    "V1": Layout("V1", ("train/", "test/", *LIST_FILES)),
    "V2": Layout("V2", ("mask_train_v2/", "mask_test_v2/", *LIST_FILES)),
}
NUM_CAMERAS = 15
NUM_IDS = 4101


def read_list(list_file: Path, image_dir: Path) -> list[ImageRecord]:
    """Records of one MSMT17 list file, with images under ``image_dir``.

    Raises:
        DatasetFormatError: naming the file and line of a malformed entry.
        DatasetLayoutError: if the list is empty or its first image is missing (a sign of
            a list file paired with the wrong image folder).
    """
    records = []
    with list_file.open() as fh:
        for number, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            where = f"{list_file}:{number}"
            if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
                raise DatasetFormatError(f"{where}: expected 'relative/path.jpg pid', got {line!r}")
            rel, pid = fields[0], int(fields[1])
            parts = Path(rel).name.split("_")
            if len(parts) < 3 or not parts[2].isdigit():
                raise DatasetFormatError(
                    f"{where}: file name {Path(rel).name!r} has no camera as its third '_' field"
                )
            cam = int(parts[2])
            if not 1 <= cam <= NUM_CAMERAS:
                raise DatasetFormatError(f"{where}: camera {cam} is outside 1..{NUM_CAMERAS}")
            if not 0 <= pid < NUM_IDS:
                raise DatasetFormatError(f"{where}: pid {pid} is outside 0..{NUM_IDS - 1}")
            records.append(ImageRecord(str(image_dir / rel), pid, cam - 1, "msmt17"))
    if not records:
        raise DatasetLayoutError(f"{list_file} lists no images")
    if not Path(records[0].path).is_file():
        raise DatasetLayoutError(f"{list_file} names {records[0].path}, which does not exist")
    return records


@DATASETS.register("msmt17")
def msmt17(root: str | Path, version: str | None = None) -> ReIDDataset:
    """MSMT17 (Wei et al., CVPR 2018), release V1 or V2 detected from the folder.

    Args:
        root: the dataset folder or a parent holding ``MSMT17_V1``, ``MSMT17_V2``, ``MSMT17``
            or ``msmt17``.
        version: ``"V1"`` or ``"V2"`` to choose when a folder holds both releases' image
            folders; None detects it.

    Returns:
        Train (``list_train`` + ``list_val``) relabelled to ``0..1040``; query and gallery
        with their own pids (0-based, distinct from the train pids).
    """
    if version is not None and version not in LAYOUTS:
        raise ValueError(f"msmt17: version {version!r} is not one of 'V1', 'V2'")
    layouts = [LAYOUTS[version]] if version else list(LAYOUTS.values())
    dataset_dir, found = resolve_dataset_dir(root, "msmt17", FOLDER_NAMES, layouts)
    if len(found) > 1:
        raise DatasetLayoutError(
            f"msmt17: {dataset_dir} holds the image folders of both V1 and V2; "
            "pass version='V1' or version='V2'"
        )
    train_entry, test_entry = found[0].entries[:2]
    train_dir = require_entry(dataset_dir, train_entry)
    test_dir = require_entry(dataset_dir, test_entry)

    def split(list_name: str, image_dir: Path) -> list[ImageRecord]:
        return read_list(require_entry(dataset_dir, list_name), image_dir)

    train = split("list_train.txt", train_dir) + split("list_val.txt", train_dir)
    return ReIDDataset(
        name="msmt17",
        train=relabel(train),
        query=split("list_query.txt", test_dir),
        gallery=split("list_gallery.txt", test_dir),
    )
