"""The folder and csv datasets on small generated trees, with counts worked out by hand."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from reidlab.data.datasets import DatasetFormatError, DatasetLayoutError, load_dataset
from reidlab.data.datasets.custom import CustomDataset
from reidlab.registry import DATASETS


def image_bytes(fmt: str = "JPEG", colour: tuple[int, int, int] = (90, 30, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 8), colour).save(buf, format=fmt)
    return buf.getvalue()


def make_folder(root: Path, layout: dict[str, list[str]]) -> Path:
    """``layout``: split -> relative paths ``<pid>/<camid>_<name>``; .png get PNG bytes."""
    for split, names in layout.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for name in names:
            path = root / split / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image_bytes("PNG" if name.endswith(".png") else "JPEG"))
    return root


FOLDER = {
    "train": ["3/0_a.jpg", "3/1_b.png", "12/0_c.jpg", "12/2_d.jpeg", "12/2_e.jpg"],
    "query": ["5/0_q.jpg", "40/1_q.jpg"],
    "gallery": ["5/1_g.jpg", "5/0_h.jpg", "40/3_g.png", "0/2_d.jpg"],
}


def test_both_formats_are_registered():
    assert "folder" in DATASETS and "csv" in DATASETS


def test_folder_dataset_parses_pids_cameras_and_relabels_train(tmp_path):
    ds = load_dataset("folder", make_folder(tmp_path, FOLDER))
    assert isinstance(ds, CustomDataset) and ds.problems == []
    # train pids 3 and 12 become 0 and 1 (sorted by the given pid, not by name: "12" < "3")
    train = {(Path(r.path).name, r.pid, r.camid) for r in ds.train}
    assert train == {("0_a.jpg", 0, 0), ("1_b.png", 0, 1), ("0_c.jpg", 1, 0),
                     ("2_d.jpeg", 1, 2), ("2_e.jpg", 1, 2)}
    assert sorted((r.pid, r.camid) for r in ds.query) == [(5, 0), (40, 1)]
    assert sorted((r.pid, r.camid) for r in ds.gallery) == [(0, 2), (5, 0), (5, 1), (40, 3)]
    assert ds.num_train_ids == 2


def test_folder_dataset_needs_every_split(tmp_path):
    make_folder(tmp_path, {"train": FOLDER["train"], "query": FOLDER["query"]})
    with pytest.raises(DatasetLayoutError, match="gallery/"):
        load_dataset("folder", tmp_path)


def test_folder_entries_off_the_format_are_problems_naming_the_file(tmp_path):
    make_folder(tmp_path, FOLDER)
    (tmp_path / "train" / "3" / "notes.txt").write_text("x")
    (tmp_path / "train" / "3" / "nocamera.jpg").write_bytes(image_bytes())
    (tmp_path / "train" / "bob").mkdir()
    (tmp_path / "query" / "loose.jpg").write_bytes(image_bytes())
    (tmp_path / "train" / "3" / ".DS_Store").write_text("ignored")
    ds = load_dataset("folder", tmp_path)
    found = {(p.kind, Path(p.path).name) for p in ds.problems}
    assert found == {("not-an-image", "notes.txt"), ("bad-name", "nocamera.jpg"),
                     ("bad-name", "bob"), ("bad-name", "loose.jpg")}
    assert len(ds.train) == 5  # the good records are all there


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def make_csv_tree(root: Path, camid: bool = True) -> Path:
    images = root / "img"
    images.mkdir(parents=True)
    for name in ("a", "b", "c", "d", "q1", "q2", "g1", "g2", "g3"):
        (images / f"{name}.jpg").write_bytes(image_bytes())
    head = "path,pid,camid" if camid else "path,pid"

    def rows(entries: list[tuple[str, int, int]]) -> list[str]:
        return [head] + [f"img/{n}.jpg,{p},{c}" if camid else f"img/{n}.jpg,{p}"
                         for n, p, c in entries]

    write_csv(root / "train.csv", rows([("a", 8, 0), ("b", 8, 1), ("c", 2, 0), ("d", 2, 0)]))
    write_csv(root / "query.csv", rows([("q1", 100, 0), ("q2", 101, 1)]))
    write_csv(root / "gallery.csv", rows([("g1", 100, 1), ("g2", 101, 0), ("g3", 100, 0)]))
    return root


def test_csv_dataset_with_cameras(tmp_path):
    ds = load_dataset("csv", make_csv_tree(tmp_path))
    assert ds.camid_given and ds.problems == []
    by_name = {Path(r.path).name: (r.pid, r.camid) for r in ds.train}
    assert by_name == {"a.jpg": (1, 0), "b.jpg": (1, 1), "c.jpg": (0, 0), "d.jpg": (0, 0)}
    assert [(r.pid, r.camid) for r in ds.query] == [(100, 0), (101, 1)]
    assert [(r.pid, r.camid) for r in ds.gallery] == [(100, 1), (101, 0), (100, 0)]
    assert all(Path(r.path).is_file() for r in ds.train + ds.query + ds.gallery)
    assert ds.sources[str((tmp_path / "img" / "g2.jpg").resolve())].endswith("gallery.csv:3")


def test_csv_without_camid_gives_every_image_its_own_camera(tmp_path):
    ds = load_dataset("csv", make_csv_tree(tmp_path, camid=False))
    assert not ds.camid_given
    camids = [r.camid for r in ds.train + ds.query + ds.gallery]
    assert sorted(camids) == list(range(9))  # 4 + 2 + 3 images, all distinct


@pytest.mark.parametrize(("line", "match"), [
    ("img/a.jpg,x,0", "gallery.csv:3: expected a path and a non-negative integer pid"),
    ("img/a.jpg,4", "gallery.csv:3: expected 3 fields"),
    ("img/a.jpg,4,c1", "gallery.csv:3: camid 'c1' is not a non-negative integer"),
])
def test_csv_bad_lines_name_the_file_and_line(tmp_path, line, match):
    make_csv_tree(tmp_path)
    write_csv(tmp_path / "gallery.csv", ["path,pid,camid", "img/g1.jpg,100,1", line])
    with pytest.raises(DatasetFormatError, match=match):
        load_dataset("csv", tmp_path)


def test_csv_bad_header_and_missing_file(tmp_path):
    make_csv_tree(tmp_path)
    write_csv(tmp_path / "query.csv", ["file,id", "img/q1.jpg,1"])
    with pytest.raises(DatasetFormatError, match=r"query.csv:1: expected the header"):
        load_dataset("csv", tmp_path)
    (tmp_path / "query.csv").unlink()
    with pytest.raises(DatasetLayoutError, match="no query.csv"):
        load_dataset("csv", tmp_path)


def test_csv_mixed_camid_columns_are_refused(tmp_path):
    make_csv_tree(tmp_path)
    write_csv(tmp_path / "query.csv", ["path,pid", "img/q1.jpg,100"])
    with pytest.raises(DatasetFormatError, match="some split files have a camid column"):
        load_dataset("csv", tmp_path)


def test_csv_duplicate_paths_are_problems_with_both_lines(tmp_path):
    make_csv_tree(tmp_path)
    write_csv(tmp_path / "gallery.csv", ["path,pid,camid", "img/g1.jpg,100,1", "img/q1.jpg,100,0",
                                         "img/g1.jpg,100,1"])
    ds = load_dataset("csv", tmp_path)
    dup = [(p.where.rsplit("/", 1)[-1], p.detail.rsplit("/", 1)[-1]) for p in ds.problems]
    # q1 was listed by query.csv line 2 first; g1 by gallery.csv line 2
    assert dup == [("gallery.csv:3", "query.csv:2"), ("gallery.csv:4", "gallery.csv:2")]
    assert [Path(r.path).name for r in ds.gallery] == ["g1.jpg"]
