"""An adaptation run end to end on a tiny synthetic pair (domain a -> b): step 0 on the
source, one SSG round, rounds.json, stages and TensorBoard; a run stopped by SIGTERM in the
middle of its round resumes there and ends as the uninterrupted run; the config's checks."""

import contextlib
import io
import json
import os
import signal

import pytest
import torch

from reidlab.cli import main
from reidlab.config import ConfigError, load_config
from reidlab.engine import trainer
from reidlab.engine.interrupt import RunInterrupted
from reidlab.engine.modes import run as train
from reidlab.engine.rundir import RunDir


def overrides(a, b, out, extra=()):
    return [
        f"data.roots={{synthetic-a: {a}, synthetic-b: {b}}}",
        "data.train=[synthetic-a]", "data.test=[synthetic-b]", "data.synthetic.ids=12",
        "data.height=64", "data.width=32", "data.batch_size=8", "data.num_instances=4",
        "data.num_workers=0", "data.test_batch_size=64", "model.backbone=resnet18",
        "solver.lr=1e-3", "solver.epochs=1", "solver.warmup_epochs=0", "solver.milestones=[]",
        "solver.log_period=1", "adapt.target=synthetic-b", "adapt.rounds=1",
        "adapt.round_solver={epochs: 2}", "adapt.rho=0.05", f"output_dir={out}", *extra,
    ]


@pytest.fixture(scope="module")
def whole(tiny_synthetic, tiny_synthetic_b, tmp_path_factory):
    """An uninterrupted run through ``reidlab adapt``: its folder and what it printed."""
    run = tmp_path_factory.mktemp("adapt") / "run"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["adapt", *overrides(tiny_synthetic, tiny_synthetic_b, run)])
    assert code == 0
    return run, printed.getvalue()


def figures(run) -> dict:
    """rounds.json without the times, which no two runs share."""
    data = json.loads((run / "rounds.json").read_text())
    rows = [{k: v for k, v in row.items() if k != "seconds"} for row in data["rounds"]]
    return {"eps": data["eps"], "rounds": rows}


def test_adapt_round_end_to_end(whole):
    run, printed = whole
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
        # a finished stage keeps its last model, not its full training states
        assert not RunDir(run / stage).has_state()
        assert (run / stage / "checkpoints" / "final_model.pt").is_file()
    assert json.loads((run / "run.json").read_text())["mode"] == "adapt"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["synthetic-b"]["mAP"] == pytest.approx(rows[1]["target"]["mAP"])
    events = list(run.glob("events.out.tfevents.*"))
    assert events and b"adapt/global/clusters" in events[0].read_bytes()
    # The round trained with the part terms.
    log = (run / "train.log").read_text()
    assert "triplet_upper" in log and "round 1: global" in log


def test_a_round_with_too_few_clusters_ends_the_adaptation(whole, tiny_synthetic,
                                                          tiny_synthetic_b, tmp_path):
    """DBSCAN finds no cluster when min_samples exceeds the number of target images (no
    point can be a core point), so round 1 cannot make a PK batch: the run finishes with
    the source model's figures, and rounds.json says why it stopped."""
    reference, _ = whole
    run = tmp_path / "few"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["adapt", *overrides(tiny_synthetic, tiny_synthetic_b, run, [
            f"model.weights={reference / 'source'}", "adapt.rounds=2",
            "adapt.min_samples=100000"])])
    assert code == 0
    rows = json.loads((run / "rounds.json").read_text())["rounds"]
    assert [r["round"] for r in rows] == [0, 1]
    assert rows[1]["clusters"]["global"]["clusters"] == 0
    assert "0 clusters, fewer than the 2 identities" in rows[1]["stopped"]
    assert "stopped: too few clusters" in printed.getvalue()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["synthetic-b"]["mAP"] == pytest.approx(rows[0]["target"]["mAP"])
    assert json.loads((run / "run.json").read_text())["status"] == "finished"
    assert not (run / "round1" / "checkpoints").exists()


def test_stopped_in_the_middle_of_its_round_resumes_there(whole, tiny_synthetic,
                                                          tiny_synthetic_b, tmp_path,
                                                          monkeypatch):
    """SIGTERM after the first iteration of round 1's second epoch: the state is saved
    there; the resumed run reads the source stage back, clusters the same features again
    and continues round 1 from that state, ending with the uninterrupted run's rounds.json
    figures and bit-identical final weights."""
    from reidlab.adapt import ssg

    reference, _ = whole
    run = tmp_path / "stopped"
    args = overrides(tiny_synthetic, tiny_synthetic_b, run, ["mode=adapt"])
    real_fit, real_step = ssg.fit, trainer.make_train_step
    fits = []
    where = {}

    def recording_fit(*a, **kw):
        fits.append((a[6].path.name, kw.get("resume")))  # stage, what it resumed from
        return real_fit(*a, **kw)

    def make_step(*a, **kw):
        inner = real_step(*a, **kw)

        def step(engine, batch):
            out = inner(engine, batch)
            first_of_epoch_2 = engine.state.iteration == engine.state.epoch_length + 1
            if fits[-1][0] == "round1" and first_of_epoch_2 and not where:
                where["iteration"] = engine.state.iteration
                os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would
            return out
        return step

    monkeypatch.setattr(ssg, "fit", recording_fit)
    monkeypatch.setattr(trainer, "make_train_step", make_step)
    with pytest.raises(RunInterrupted, match="stopped by SIGTERM in epoch 2"):
        train(load_config(None, args))
    assert RunDir(run).status()["status"] == "stopped"
    assert RunDir(run / "source").is_finished() and not RunDir(run / "source").has_state()
    round1 = RunDir(run / "round1").status()
    assert round1["status"] == "running" and round1["epoch"] == 2
    assert round1["iteration"] == where["iteration"] >= 3  # mid-epoch: 2+ iterations an epoch
    assert [r["round"] for r in json.loads((run / "rounds.json").read_text())["rounds"]] == [0]

    fits.clear()
    train(load_config(None, [*args, f"resume={run}"]))
    assert fits == [("round1", run / "round1")]  # the source read back, round 1 continued
    assert RunDir(run).status()["status"] == "finished"
    assert figures(run) == figures(reference)
    for stage in ("source", "round1"):
        assert not RunDir(run / stage).has_state()
    a, b = (torch.load(r / "round1" / "checkpoints" / "final_model.pt",
                       weights_only=True)["model"] for r in (reference, run))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run / "metrics.json").read_text()) == json.loads(
        (reference / "metrics.json").read_text())


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
