"""Dataset validation: each bad image and each layout error, named by file (and CSV line);
the cache keyed by size and mtime; ``reidlab data check``; a run that stops or skips."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab.cli import main
from reidlab.data import image_check
from reidlab.data.check import DataCheckError, check_dataset, validate_dataset
from reidlab.data.datasets import load_dataset
from reidlab.data.image_check import CACHE_NAME, check_images, inspect_image

from .test_custom import FOLDER, make_csv_tree, make_folder, write_csv


def noise_image(fmt: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("content", "kind"), [
    (b"", "zero-byte"),
    (b"GIF? no, just some text that is not an image", "not-an-image"),
    (noise_image("JPEG")[:900], "truncated"),
    (noise_image("PNG")[:3000], "truncated"),
    (noise_image("JPEG")[:20], "truncated"),
])
def test_inspect_image_names_each_kind_of_bad_file(tmp_path, content, kind):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    finding = inspect_image(path)
    assert finding is not None and finding[0] == kind


def test_inspect_image_accepts_whole_images_and_flags_unreadable_ones(tmp_path):
    for fmt in ("JPEG", "PNG"):
        (tmp_path / fmt).write_bytes(noise_image(fmt))
        assert inspect_image(tmp_path / fmt) is None
    (tmp_path / "dir.jpg").mkdir()  # read_bytes fails: an I/O error, whoever runs the test
    assert inspect_image(tmp_path / "dir.jpg")[0] == "unreadable"
    assert inspect_image(tmp_path / "gone.jpg")[0] == "missing"


def test_check_images_caches_by_size_and_mtime(tmp_path, monkeypatch):
    paths = []
    for i in range(4):
        paths.append(tmp_path / f"{i}.jpg")
        paths[-1].write_bytes(noise_image("JPEG", i))
    paths[3].write_bytes(b"")
    opened: list[str] = []
    real = image_check.inspect_image
    monkeypatch.setattr(image_check, "inspect_image", lambda p: opened.append(p) or real(p))
    first = check_images([str(p) for p in paths], progress=False)
    assert set(first) == {str(paths[3])} and len(opened) == 4
    assert (tmp_path / CACHE_NAME).is_file()
    opened.clear()
    assert check_images([str(p) for p in paths], progress=False) == first
    assert opened == []  # all four from the cache
    paths[1].write_bytes(noise_image("JPEG", 1)[:700])  # new size: opened again, now truncated
    os.utime(paths[2], ns=(1, 1))  # same size, other mtime: opened again, still fine
    again = check_images([str(p) for p in paths], progress=False)
    assert sorted(opened) == sorted([str(paths[1]), str(paths[2])])
    assert set(again) == {str(paths[1]), str(paths[3])} and again[str(paths[1])][0] == "truncated"


def bad_folder(root: Path) -> Path:
    make_folder(root, FOLDER)
    (root / "gallery" / "5" / "1_g.jpg").write_bytes(b"")  # zero-byte
    (root / "train" / "12" / "2_e.jpg").write_bytes(noise_image("JPEG")[:900])  # truncated
    return root


def test_check_dataset_reports_layout_and_images(tmp_path):
    root = make_folder(tmp_path, FOLDER)
    (root / "train" / "20").mkdir()
    (root / "train" / "20" / "0_only.jpg").write_bytes(noise_image("JPEG"))  # single-image id
    (root / "query" / "77").mkdir()
    (root / "query" / "77" / "0_lost.jpg").write_bytes(noise_image("JPEG"))  # no gallery match
    (root / "gallery" / "40" / "3_g.png").write_bytes(b"not a png")
    report = check_dataset(load_dataset("folder", root), progress=False)
    found = {(p.kind, Path(p.path).name, p.split) for p in report.problems}
    assert found == {("single-image-id", "0_only.jpg", "train"),
                     ("query-id-not-in-gallery", "0_lost.jpg", "query"),
                     ("not-an-image", "3_g.png", "gallery")}
    assert report.images == (5 + 1) + (2 + 1) + 4


def test_check_dataset_names_csv_lines_and_empty_splits(tmp_path):
    make_csv_tree(tmp_path)
    (tmp_path / "img" / "g2.jpg").write_bytes(b"")
    write_csv(tmp_path / "query.csv", ["path,pid,camid"])
    report = check_dataset(load_dataset("csv", tmp_path), progress=False)
    lines = report.lines()
    assert any(line.startswith("query: empty-split") for line in lines)
    zero = [p for p in report.problems if p.kind == "zero-byte"]
    assert len(zero) == 1 and zero[0].where.endswith("gallery.csv:3")
    assert "gallery.csv:3 (" in str(zero[0]) and "g2.jpg" in str(zero[0])


def test_validate_stops_naming_the_files_or_skips_them(tmp_path):
    ds = load_dataset("folder", bad_folder(tmp_path))
    with pytest.raises(DataCheckError) as err:
        validate_dataset(ds, progress=False)
    text = str(err.value)
    assert "2 bad entries" in text and "data.skip_bad_images=true" in text
    assert str(tmp_path / "gallery" / "5" / "1_g.jpg") in text
    assert str(tmp_path / "train" / "12" / "2_e.jpg") in text
    kept, skipped = validate_dataset(ds, skip_bad=True, progress=False)
    assert len(skipped) == 2
    assert (len(kept.train), len(kept.query), len(kept.gallery)) == (4, 2, 3)
    assert sorted({r.pid for r in kept.train}) == [0, 1]


def test_an_empty_split_cannot_be_skipped(tmp_path):
    make_csv_tree(tmp_path)
    write_csv(tmp_path / "gallery.csv", ["path,pid,camid"])
    with pytest.raises(DataCheckError, match="the gallery split has no images"):
        validate_dataset(load_dataset("csv", tmp_path), skip_bad=True, progress=False)


def test_cli_data_check_lists_every_bad_file(tmp_path, capsys):
    root = bad_folder(tmp_path)
    assert main(["data", "check", "--dataset", "folder", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"gallery: zero-byte: {root / 'gallery' / '5' / '1_g.jpg'}: zero-byte file" in out
    assert f"train: truncated: {root / 'train' / '12' / '2_e.jpg'}" in out
    assert "11 images checked, 2 problems" in out
    (root / "gallery" / "5" / "1_g.jpg").write_bytes(noise_image("JPEG"))
    (root / "train" / "12" / "2_e.jpg").write_bytes(noise_image("JPEG"))
    assert main(["data", "check", "--dataset", "folder", "--root", str(root)]) == 0


def test_cli_data_check_on_a_builtin_dataset(tiny_synthetic, capsys):
    assert main(["data", "check", "--dataset", "market1501", "--root", str(tiny_synthetic)]) == 0
    assert ", 0 problems" in capsys.readouterr().out


def synthetic_folder(src: Path, dst: Path) -> Path:
    """The tiny synthetic set rewritten in the folder layout (junk and distractors left out)."""
    ds = load_dataset("market1501", src)
    for split, records in (("train", ds.train), ("query", ds.query), ("gallery", ds.gallery)):
        for i, r in enumerate(records):
            if r.pid <= 0 and split != "train":
                continue
            out = dst / split / str(r.pid) / f"{r.camid}_{i:04d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(Path(r.path).read_bytes())
    return dst


def run_args(root: Path, out: Path) -> list[str]:
    return ["train", "data.train=[folder]", f"data.roots={{folder: {root}}}", "data.height=64",
            "data.width=32", "data.batch_size=16", "data.num_workers=0", "model.backbone=resnet18",
            "solver.epochs=1", "solver.warmup_epochs=0", "solver.eval_period=1",
            "solver.checkpoint_period=1", f"output_dir={out}"]


def test_a_run_stops_on_a_bad_image_before_training_or_skips_it(tiny_synthetic, tmp_path,
                                                                 capsys):
    root = synthetic_folder(tiny_synthetic, tmp_path / "mine")
    bad = sorted((root / "gallery").rglob("*.jpg"))[0]
    bad.write_bytes(bad.read_bytes()[:300])
    assert main(run_args(root, tmp_path / "stopped")) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated" in err
    assert not list((tmp_path / "stopped").glob("checkpoints/*"))  # no epoch ran
    assert main([*run_args(root, tmp_path / "skipped"), "data.skip_bad_images=true"]) == 0
    metrics = json.loads((tmp_path / "skipped" / "metrics.json").read_text())
    assert metrics["skipped_images"] == 1 and str(bad) in metrics["skipped_files"][0]
    assert "folder" in metrics and 0 <= metrics["folder"]["mAP"] <= 1
    log = (tmp_path / "skipped" / "train.log").read_text()
    assert "skipped 1 bad entries" in log and str(bad) in log


def test_a_folder_dataset_trains_jointly_with_a_named_one(tiny_synthetic, tmp_path):
    root = synthetic_folder(tiny_synthetic, tmp_path / "mine")
    args = [a for a in run_args(root, tmp_path / "joint") if not a.startswith("data.roots")]
    args[1] = "data.train=[folder, synthetic]"
    args += [f"data.roots={{folder: {root}, synthetic: {tiny_synthetic}}}",
             "data.synthetic.ids=12", "data.test=[folder, synthetic]"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "joint" / "metrics.json").read_text())
    assert {"folder", "synthetic-a", "save_best"} <= set(metrics)
    assert "skipped_images" not in metrics  # only written with data.skip_bad_images
