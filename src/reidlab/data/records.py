"""Image records and dataset splits shared by every dataset parser."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ImageRecord:
    """One image: its file, identity, camera (0-based) and the dataset it came from."""

    path: str
    pid: int
    camid: int
    domain: str


@dataclass
class ReIDDataset:
    """The three splits of a ReID dataset.

    ``train`` pids are relabelled to ``0 .. num_train_ids - 1``; ``query`` and ``gallery``
    keep the dataset's own pids (distractors 0 and junk -1 kept in the gallery, as the
    official protocols use them).
    """

    name: str
    train: list[ImageRecord] = field(default_factory=list)
    query: list[ImageRecord] = field(default_factory=list)
    gallery: list[ImageRecord] = field(default_factory=list)
    #: Entries left out by the dataset check (``data.skip_bad_images``), each naming its file.
    skipped: list[str] = field(default_factory=list)

    @property
    def num_train_ids(self) -> int:
        return len({r.pid for r in self.train})


def split_stats(records: list[ImageRecord]) -> dict[str, int]:
    """ids / images / cameras of one split, as the papers' dataset tables count them."""
    return {
        "ids": len({r.pid for r in records}),
        "images": len(records),
        "cameras": len({r.camid for r in records}),
    }
