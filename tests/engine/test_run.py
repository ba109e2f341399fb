"""End-to-end runs on tiny synthetic datasets: CLI, run directory, test, resume, the
learning rate of each epoch, a crash during evaluation, joint training."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from reidlab.cli import main
from reidlab.config import load_config
from reidlab.engine.modes import run as train
from reidlab.engine.rundir import RunDir

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
        f"solver.milestones=[{min(2, epochs)}]",
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
    assert set(metrics) == {"synthetic-a", "save_best"}
    assert metrics["save_best"] == pytest.approx(metrics["synthetic-a"]["mean"])
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


def test_resume_gives_the_uninterrupted_result(tiny_synthetic, tmp_path, monkeypatch):
    """SIGTERM in the middle of epoch 1 (iteration 3 of 5), resumed: the same metrics and
    bit-identical weights as the uninterrupted run."""
    import os
    import signal

    from reidlab.engine import trainer as trainer_module
    from reidlab.engine.interrupt import RunInterrupted

    full = train(load_config(None, tiny_overrides(tiny_synthetic, tmp_path / "full", epochs=2)))
    stopped = tmp_path / "stopped"
    real_step = trainer_module.make_train_step

    def step_then_sigterm(*args, **kwargs):
        inner = real_step(*args, **kwargs)

        def step(engine, batch):
            out = inner(engine, batch)
            if engine.state.iteration == 3:
                os.kill(os.getpid(), signal.SIGTERM)
            return out
        return step

    monkeypatch.setattr(trainer_module, "make_train_step", step_then_sigterm)
    with pytest.raises(RunInterrupted, match=f"resume={stopped}") as stop:
        train(load_config(None, tiny_overrides(tiny_synthetic, stopped, epochs=2)))
    assert stop.value.exit_code == 143
    assert RunDir(stopped).status()["status"] == "stopped"
    assert [p.name for p in RunDir(stopped).checkpoint_files()] == ["checkpoint_3.pt"]
    monkeypatch.setattr(trainer_module, "make_train_step", real_step)
    resumed = train(load_config(None, [*tiny_overrides(tiny_synthetic, stopped, epochs=2),
                                       f"resume={stopped}"]))
    assert resumed.metrics == full.metrics
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert RunDir(stopped).status()["status"] == "finished"
    last = [torch.load(RunDir(r).latest_checkpoint(), weights_only=True)["model"]
            for r in (tmp_path / "full", stopped)]
    assert last[0].keys() == last[1].keys()
    for key in last[0]:
        assert torch.equal(last[0][key], last[1][key]), key


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


def test_each_epoch_trains_at_the_schedule_factor_of_its_number(tiny_synthetic, tmp_path):
    """The lr the optimiser used in each iteration, read back from TensorBoard: epoch e at
    base x factor(e) (warm-up 2 from 0.5, milestone 3: 0.75, 1, 0.1), not one epoch late."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_synthetic, run, epochs=3)
    overrides += ["solver.warmup_epochs=2", "solver.warmup_factor=0.5", "solver.milestones=[3]",
                  "solver.eval_period=3"]
    train(load_config(None, overrides))
    events = EventAccumulator(str(run)).Reload()
    tags = [t for t in events.Tags()["scalars"] if t.startswith("train/lr")]
    assert "train/lr/group_0" in tags  # the first parameter group of the main optimiser
    lrs = [e.value for e in events.Scalars("train/lr/group_0")]
    per_epoch = len(lrs) // 3
    assert len(lrs) == 3 * per_epoch
    by_epoch = [lrs[i * per_epoch:(i + 1) * per_epoch] for i in range(3)]
    for values, factor in zip(by_epoch, [0.75, 1.0, 0.1], strict=True):
        assert values == pytest.approx([1e-3 * factor] * per_epoch)


def test_a_crash_during_evaluation_keeps_the_previous_state_and_resumes(
        tiny_synthetic, tmp_path, monkeypatch):
    from reidlab.engine.validator import Validator

    full = train(load_config(None, tiny_overrides(tiny_synthetic, tmp_path / "full", epochs=2)))
    run = tmp_path / "crashed"
    real_call = Validator.__call__

    def crash_at_epoch_2(self, model, epoch=0, keep_features=False):
        if epoch == 2:
            raise RuntimeError("killed during evaluation")
        return real_call(self, model, epoch, keep_features)

    monkeypatch.setattr(Validator, "__call__", crash_at_epoch_2)
    with pytest.raises(RuntimeError, match="killed"):
        train(load_config(None, tiny_overrides(tiny_synthetic, run, epochs=2)))
    status = RunDir(run).status()
    assert status["status"] == "failed" and "killed" in status["error"]
    assert status["epoch"] == 1 and status["best"]["epoch"] == 1
    (state,) = RunDir(run).checkpoint_files()  # the state after epoch 1, named by iteration
    iteration = torch.load(state, weights_only=True)["trainer"]["iteration"]
    assert state.name == f"checkpoint_{iteration}.pt" and iteration == status["iteration"]
    monkeypatch.setattr(Validator, "__call__", real_call)
    # As if the crash had come after epoch 2's validation was written, before its state:
    history = json.loads((run / "history.json").read_text())
    history["epochs"].append({**history["epochs"][0], "epoch": 2})
    (run / "history.json").write_text(json.dumps(history))
    resumed = train(load_config(None, [*tiny_overrides(tiny_synthetic, run, epochs=2),
                                       f"resume={run}"]))
    assert [h["epoch"] for h in resumed.history] == [1, 2]  # epoch 2 redone, not kept twice
    for key in METRICS:
        assert resumed.metrics["synthetic-a"][key] == pytest.approx(
            full.metrics["synthetic-a"][key], abs=1e-6)
    assert RunDir(run).status()["status"] == "finished"


def test_latest_checkpoint_is_chosen_by_recorded_iteration_not_mtime(tmp_path):
    import os

    import torch

    rd = RunDir.create(tmp_path / "run")
    rd.checkpoints.mkdir()
    for epoch, iteration in ((2, 20), (10, 100)):
        torch.save({"trainer": {"iteration": iteration, "epoch": epoch}},
                   rd.checkpoints / f"checkpoint_{epoch}.pt")
    os.utime(rd.checkpoints / "checkpoint_10.pt", (1, 1))  # older on disk, further in training
    assert rd.latest_checkpoint().name == "checkpoint_10.pt"


def test_joint_training_validates_each_dataset_and_scores_their_mean(
        tiny_synthetic, tiny_synthetic_b, tmp_path):
    run = tmp_path / "joint"
    overrides = [o for o in tiny_overrides(tiny_synthetic, run, epochs=1)
                 if not o.startswith("data.roots")]
    overrides += [f"data.roots={{synthetic-a: {tiny_synthetic}, synthetic-b: {tiny_synthetic_b}}}",
                  "data.train=[synthetic-a, synthetic-b]"]
    result = train(load_config(None, overrides))
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == {"synthetic-a", "synthetic-b", "save_best"}
    means = [metrics[d]["mean"] for d in ("synthetic-a", "synthetic-b")]
    assert metrics["save_best"] == pytest.approx(sum(means) / 2)
    assert result.metrics["save_best"] == pytest.approx(metrics["save_best"])
    text = (run / "train.log").read_text()
    assert "training on synthetic-a+synthetic-b: 12 ids" in text  # 6 train ids per domain
    for name in ("synthetic-a", "synthetic-b"):
        assert f" {name} Validation Results" in text
    assert f" Save best: {metrics['save_best']:.4f}" in text
    status = RunDir(run).status()
    assert status["best"]["rule"] == "mean_of_datasets"
    assert Path(status["best"]["file"]).is_file()
