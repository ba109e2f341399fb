"""An adaptation run end to end on a tiny synthetic pair (domain a -> b): step 0 on the
source, one SSG round, rounds.json, stages and TensorBoard; the config's checks."""

import json

import pytest

from reidlab.cli import main
from reidlab.config import ConfigError, load_config


def overrides(a, b, out, extra=()):
    return [
        f"data.roots={{synthetic-a: {a}, synthetic-b: {b}}}",
        "data.train=[synthetic-a]", "data.test=[synthetic-b]", "data.synthetic.ids=12",
        "data.height=64", "data.width=32", "data.batch_size=8", "data.num_instances=4",
        "data.num_workers=0", "data.test_batch_size=64", "model.backbone=resnet18",
        "solver.lr=1e-3", "solver.epochs=1", "solver.warmup_epochs=0", "solver.milestones=[]",
        "solver.log_period=1", "adapt.target=synthetic-b", "adapt.rounds=1",
        "adapt.round_solver={epochs: 1}", "adapt.rho=0.05", f"output_dir={out}", *extra,
    ]


def test_adapt_round_end_to_end(tiny_synthetic, tiny_synthetic_b, tmp_path, capsys):
    run = tmp_path / "adapt"
    assert main(["adapt", *overrides(tiny_synthetic, tiny_synthetic_b, run)]) == 0
    printed = capsys.readouterr().out
    assert "direct transfer" in printed and "round 1" in printed
    rounds = json.loads((run / "rounds.json").read_text())
    rows = rounds["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    assert set(rounds["eps"]) == {"global", "upper", "lower"}
    assert all(0 < e < 1 for e in rounds["eps"].values())
    stats = rows[1]["clusters"]
    assert set(stats) == {"global", "upper", "lower"}
    for s in stats.values():
        assert s["clusters"] >= 2 and 0 < s["kept"] <= 1
        assert 0 < s["purity"] <= 1 and 0 <= s["nmi"] <= 1
    for row in rows:
        assert set(row["target"]) == {"mAP", "rank1", "rank5"}
        assert 0 <= row["target"]["mAP"] <= 1
    for stage in ("source", "round1"):
        status = json.loads((run / stage / "run.json").read_text())
        assert status["status"] == "finished"
    assert json.loads((run / "run.json").read_text())["mode"] == "adapt"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["synthetic-b"]["mAP"] == pytest.approx(rows[1]["target"]["mAP"])
    events = list(run.glob("events.out.tfevents.*"))
    assert events and b"adapt/global/clusters" in events[0].read_bytes()
    # The round trained with the part terms.
    log = (run / "train.log").read_text()
    assert "triplet_upper" in log and "round 1: global" in log


def test_adapt_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="adapt.target"):
        load_config(None, ["mode=adapt", "adapt.target=synthetc-b"])
    with pytest.raises(ConfigError, match="num_clusters"):
        load_config(None, ["mode=adapt", "adapt.cluster=dec"])
    with pytest.raises(ConfigError, match="adapt.round_solver.epoch"):
        load_config(None, ["mode=adapt", "adapt.round_solver={epoch: 2}"])
    cfg = load_config(None, ["mode=adapt", "adapt.parts=[global]",
                             "adapt.loss=softmax_triplet_center", "adapt.lambda_value=0.3"])
    assert cfg.adapt is not None and cfg.adapt.parts == ["global"]
