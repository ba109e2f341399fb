"""End-to-end runs on a tiny synthetic dataset: CLI, run directory, test, resume."""

import json
from pathlib import Path

import pytest
import yaml

from reidlab.cli import main
from reidlab.config import load_config
from reidlab.engine.run import train

METRICS = {"mAP", "rank1", "rank5", "rank10", "mINP", "mean"}


def tiny_overrides(root: Path, out: Path, epochs: int = 2) -> list[str]:
    return [
        f"data.roots={{synthetic: {root}}}",
        "data.synthetic.ids=12",
        "data.height=64",
        "data.width=32",
        "data.batch_size=16",
        "data.num_instances=4",
        "data.num_workers=0",
        "data.test_batch_size=64",
        "model.backbone=resnet18",
        "solver.lr=1e-3",
        f"solver.epochs={epochs}",
        "solver.warmup_epochs=1",
        "solver.milestones=[2]",
        "solver.eval_period=1",
        "solver.checkpoint_period=1",
        "solver.log_period=1",
        f"output_dir={out}",
    ]


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"loss": {"name": "softmax_triplet_center"}}))
    return path


def test_cli_train_then_test(tiny_synthetic, tmp_path, capsys):
    config = write_config(tmp_path)
    run = tmp_path / "run"
    assert main(["train", str(config), *tiny_overrides(tiny_synthetic, run)]) == 0
    printed = capsys.readouterr().out
    assert "mAP" in printed and "synthetic" in printed

    saved = load_config(run / "config.yaml")
    assert saved.loss.name == "softmax_triplet_center" and saved.solver.epochs == 2
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"synthetic-a"}
    assert set(metrics["synthetic-a"]) == METRICS
    for value in metrics["synthetic-a"].values():
        assert 0.0 <= value <= 1.0
    m = metrics["synthetic-a"]
    assert m["mean"] == pytest.approx((m["mAP"] + m["rank1"]) / 2)
    assert m["rank1"] <= m["rank5"] <= m["rank10"]
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    assert (run / "train.log").read_text().strip()
    names = {p.name.split("_")[0] for p in (run / "checkpoints").glob("*.pt")}
    assert names == {"checkpoint", "weights", "best"}

    # Testing the best checkpoint reproduces the best evaluation of the run.
    history = json.loads((run / "history.json").read_text())["epochs"]
    best = max(history, key=lambda h: h["metrics"]["synthetic-a"]["mean"])["metrics"]["synthetic-a"]
    test_dir = tmp_path / "test"
    args = ["test", str(config), *tiny_overrides(tiny_synthetic, test_dir), f"model.weights={run}"]
    assert main(args) == 0
    tested = json.loads((test_dir / "metrics.json").read_text())["synthetic-a"]
    for key in METRICS:
        assert tested[key] == pytest.approx(best[key], abs=1e-6)


def test_resume_gives_the_uninterrupted_result(tiny_synthetic, tmp_path):
    full = train(load_config(None, tiny_overrides(tiny_synthetic, tmp_path / "full", epochs=2)))
    stopped = tmp_path / "stopped"
    train(load_config(None, tiny_overrides(tiny_synthetic, stopped, epochs=1)))
    resumed = train(load_config(None, [*tiny_overrides(tiny_synthetic, stopped, epochs=2),
                                       f"resume={stopped}"]))
    for key in METRICS:
        assert resumed.metrics["synthetic-a"][key] == pytest.approx(
            full.metrics["synthetic-a"][key], abs=1e-6
        )
    assert [h["epoch"] for h in resumed.history] == [1, 2]


def test_cli_reports_config_errors(capsys):
    assert main(["train", "solver.lrr=0.1"]) == 2
    assert "solver.lrr" in capsys.readouterr().err


def test_cli_visualize_writes_pictures(tiny_synthetic, tmp_path):
    run = tmp_path / "run"
    train(load_config(None, tiny_overrides(tiny_synthetic, run, epochs=1)))
    out = tmp_path / "test"
    args = ["test", *tiny_overrides(tiny_synthetic, out), f"model.weights={run}",
            "--visualize", "3"]
    assert main(args) == 0
    grids = sorted((out / "pictures" / "synthetic-a").rglob("*.png"))
    assert len(grids) == 3
    page = (out / "pictures" / "synthetic-a" / "index.html").read_text()
    assert page.count("<img") >= 3
    assert (out / "cmc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(out.glob("events.out.tfevents.*"))
