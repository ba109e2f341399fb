"""Market-1501 (Zheng et al., "Scalable Person Re-identification: A Benchmark", ICCV 2015).

1,501 identities seen by 6 cameras on the Tsinghua campus, boxes from the DPM detector.
Official split: train 751 ids / 12,936 images; test 750 ids with 3,368 query images and a
19,732-image gallery (``bounding_box_test/``), which also holds 2,793 distractor boxes
(pid 0000) and 3,819 junk boxes (pid -1). File names such as ``0002_c1s1_000451_03.jpg``
give pid, camera (1-6), sequence, frame and box index.
"""

from __future__ import annotations

import re
from pathlib import Path

from reidlab.data.datasets.base import (
    BBOX_LAYOUT,
    NameFormat,
    parse_bbox_layout,
    resolve_dataset_dir,
)
from reidlab.data.records import ReIDDataset
from reidlab.registry import DATASETS

FOLDER_NAMES = ("Market-1501-v15.09.15", "Market-1501", "market1501")
NAME_FORMAT = NameFormat(
    re.compile(
        r"(?P<pid>-1|\d+)_c(?P<cam>\d+)s(?P<seq>\d+)_(?P<frame>\d+)_(?P<box>\d+)\.jpe?g", re.I
    ),
    "0002_c1s1_000451_03.jpg: pid, camera, sequence, frame, box",
)
NUM_CAMERAS = 6
MAX_PID = 1501


def parse_market1501(
    dataset_dir: Path,
    *,
    name: str = "market1501",
    num_cameras: int | None = NUM_CAMERAS,
    max_pid: int | None = MAX_PID,
) -> ReIDDataset:
    """Parse a folder in Market-1501 layout (also used by the synthetic dataset).

    Args:
        dataset_dir: the folder holding ``bounding_box_train/``, ``query/`` and
            ``bounding_box_test/``.
        name: the dataset name written into the records' ``domain``.
        num_cameras: cameras must lie in ``1..num_cameras``; None checks only ``>= 1``.
        max_pid: pids must be -1 or lie in ``0..max_pid``; None checks only ``>= -1``.

    Returns:
        Train relabelled to ``0..N-1`` without junk/distractors; query without them; the
        gallery with every box (the evaluation ignores junk pid -1 itself).
    """
    return parse_bbox_layout(
        dataset_dir, NAME_FORMAT, name=name, num_cameras=num_cameras, max_pid=max_pid
    )


@DATASETS.register("market1501")
def market1501(root: str | Path) -> ReIDDataset:
    """Market-1501 (Zheng et al., ICCV 2015) from ``root`` or its official subfolder."""
    dataset_dir, _ = resolve_dataset_dir(root, "market1501", FOLDER_NAMES, [BBOX_LAYOUT])
    return parse_market1501(dataset_dir)
