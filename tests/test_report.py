"""`reidlab report` on run directories written by the test: rows, order, percent, formats."""

import json
from pathlib import Path

import pytest

from reidlab.cli import main
from reidlab.config import load_config, save_config
from reidlab.engine.rundir import RunDir
from reidlab.report import backbone_family, build_report, collect


def make_run(root: Path, name: str, overrides: list[str], metrics: dict, finished: bool = True,
             history: bool = True) -> Path:
    """A run directory as `reidlab train` leaves it: config.yaml, metrics.json, history.json,
    run.json (its status)."""
    run = root / name
    run.mkdir(parents=True)
    save_config(load_config(None, overrides), run / "config.yaml")
    (run / "metrics.json").write_text(json.dumps(metrics))
    if history:
        payload: dict = {"epochs": [{"epoch": 1, "metrics": metrics}]}
        if finished:
            payload["seconds"] = 12.5
        (run / "history.json").write_text(json.dumps(payload))
    RunDir(run).update_status(mode="supervised" if history else "test",
                              status="finished" if finished else "running")
    return run


def figures(m: float, r1: float) -> dict:
    return {"mAP": m, "rank1": r1, "rank5": r1, "rank10": r1, "mINP": m / 2, "mean": (m + r1) / 2}


def notebook(rid: str, tricks: str, m: float | None = None, r1: float | None = None,
             mean: float | None = None) -> list[str]:
    out = [f"notebook.id='{rid}'", f"notebook.tricks='{tricks}'"]
    for key, value in (("map", m), ("rank1", r1), ("mean", mean)):
        if value is not None:
            out.append(f"notebook.{key}={value}")
    return out


@pytest.fixture()
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    market = ["data.train=[market1501]"]
    # Written in an order unlike the notebook's, under names that sort unlike it too.
    make_run(root, "a/resnext", [*market, "model.backbone=resnext101_32x8d",
                                 *notebook("01", "learning weight", 88.6, 95.0, 91.81)],
             {"market1501": figures(0.25, 0.5)})
    make_run(root, "b/rerank", [*market, "model.backbone=resnet50", "test.rerank=true",
                                *notebook("02", "re-ranking", 94.2, 95.0, 94.6)],
             {"market1501": figures(0.9, 0.95)})
    make_run(root, "c/ibn12", [*market, "model.backbone=ibn_a_resnet50",
                               *notebook("12", "merge resnet50: 09", 88.3, 95.0, 91.68)],
             {"market1501": figures(0.8, 0.9)})
    make_run(root, "d/r50_03", [*market, "model.backbone=resnet50",
                                *notebook("03", "batch-size: 128", 85.0, 93.8, 89.97)],
             {"market1501": figures(0.8512, 0.9346)})
    make_run(root, "e/se101", [*market, "model.backbone=se_resnet101",
                               *notebook("02", "merge resnet101: 01", 87.5, 94.3, 90.98)],
             {"market1501": figures(0.3, 0.6)})
    make_run(root, "f/duke", ["data.train=[dukemtmc]", "model.backbone=resnet50",
                              *notebook("01", "baseline", 76.4, 86.7, 81.58)],
             {"dukemtmc": figures(0.5, 0.7)})
    make_run(root, "g/msmt", ["data.train=[msmt17]", "model.backbone=resnet50",
                              *notebook("baseline", "baseline", 45.8, 64.0)],
             {"msmt17": figures(0.4, 0.6)}, finished=False)
    # Joint run: one row per test set.
    make_run(root, "h/joint", ["data.train=[market1501, dukemtmc]", "model.backbone=resnet101",
                               *notebook("01", "learning weight | joint")],
             {"market1501": figures(0.6, 0.8), "dukemtmc": figures(0.55, 0.75)})
    # A synthetic twin row with the published Market-1501 figures, plus the raw-pixel floor.
    make_run(root, "i/twin", ["model.backbone=resnet50", "notebook.dataset=market1501",
                              "notebook.commit=8a4b8810aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                              *notebook("01/02", "baseline", 85.8, 94.2, 90.1)],
             {"synthetic-a": figures(0.1, 0.2), "synthetic-a (raw pixels)": figures(0.05, 0.06)})
    # A `reidlab test` run (no history) without a notebook section.
    make_run(root, "j/plain", ["model.backbone=resnet18"], {"synthetic-a": figures(0.2, 0.3)},
             history=False)
    (root / "k" / "not-a-run").mkdir(parents=True)  # no config.yaml / metrics.json: ignored
    return root


def test_rows_in_notebook_order(runs):
    rows, floors = collect(runs)
    assert [(r.dataset, r.backbone, r.id) for r in rows] == [
        ("market1501", "resnet50", "03"),
        ("market1501", "ibn_a_resnet50", "12"),
        ("market1501", "resnet101", "01"),
        ("market1501", "se_resnet101", "02"),
        ("market1501", "resnext101_32x8d", "01"),
        ("market1501", "resnet50", "02"),  # re-ranking rows after the training rows
        ("dukemtmc", "resnet50", "01"),
        ("dukemtmc", "resnet101", "01"),
        ("msmt17", "resnet50", "baseline"),
        ("synthetic-a", "resnet50", "01/02"),
        ("synthetic-a", "resnet18", None),  # no notebook id: last
    ]
    assert [(f.dataset, round(f.map, 6), round(f.rank1, 6)) for f in floors] == [
        ("synthetic-a", 5.0, 6.0)]


def test_figures_are_percent_and_published_beside(runs):
    rows, _ = collect(runs)
    row = rows[0]
    assert (row.map, row.rank1) == pytest.approx((85.12, 93.46))
    assert row.mean == pytest.approx((85.12 + 93.46) / 2)
    assert (row.published_map, row.published_rank1, row.published_mean) == (85.0, 93.8, 89.97)
    assert row.published_on is None and row.finished
    twin = next(r for r in rows if r.dataset == "synthetic-a" and r.id)
    assert twin.published_on == "market1501"
    msmt = next(r for r in rows if r.dataset == "msmt17")
    assert not msmt.finished and msmt.published_mean is None
    plain = rows[-1]
    assert plain.finished and plain.tricks == "j/plain"  # test run; tricks: its path


def test_text_table(runs):
    text = build_report(runs)
    lines = text.splitlines()
    assert lines[0].split() == ["dataset", "backbone", "id", "tricks", "mAP", "rank1", "mean",
                                "nb", "mAP", "nb", "rank1", "nb", "mean", "nb", "commit"]
    first = lines[2]
    assert first.startswith("market1501") and "batch-size: 128" in first
    assert first.split()[-6:] == ["85.1", "93.5", "89.29", "85.0", "93.8", "89.97"]
    assert "85.8*" in text and "synthetic-a rows: market1501" in text
    assert "raw-pixel floor on synthetic-a: mAP 5.0, rank1 6.0" in text
    assert "baseline (unfinished)" in text
    numbers = [line for line in lines if line.startswith("msmt17")][0]
    assert numbers.split()[-3:] == ["50.00", "45.8", "64.0"]  # no published mean: empty cell


def test_markdown_table(runs):
    text = build_report(runs, markdown=True)
    lines = text.splitlines()
    assert lines[0] == ("| dataset | backbone | id | tricks | mAP | rank1 | mean | nb mAP | "
                        "nb rank1 | nb mean | nb commit |")
    assert lines[1] == ("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | "
                        "---: |")
    table = [line for line in lines if line.startswith("| ")][2:]
    assert len(table) == 11
    assert table[0] == ("| market1501 | resnet50 | 03 | batch-size: 128 | 85.1 | 93.5 | 89.29 | "
                        "85.0 | 93.8 | 89.97 |  |")
    assert "learning weight \\| joint" in text  # a | inside a cell is escaped
    assert all(line.count(" | ") == 10 for line in table)
    twin = [line for line in table if line.startswith("| synthetic-a | resnet50 | 01/02")][0]
    assert twin.endswith("| 8a4b881 |")  # the commit, short
    assert "- raw-pixel floor on synthetic-a" in text and "\\* published" in text


def test_empty_or_missing_folder_is_an_error(tmp_path, capsys):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no runs under"):
        build_report(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "missing")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no runs under" in capsys.readouterr().err


def test_cli_report(runs, capsys):
    assert main(["report", str(runs), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| dataset |") and "resnext101_32x8d" in out


@pytest.mark.parametrize("name, family", [
    ("resnet50", "resnet50"), ("se_resnet50", "resnet50"), ("se_ibn_b_resnet101", "resnet101"),
    ("ibn_a_resnext101_32x8d", "resnext101_32x8d"), ("resnet18", "resnet18"),
])
def test_backbone_family(name, family):
    assert backbone_family(name) == family
