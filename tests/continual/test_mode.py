"""The continual mode end to end on two tiny synthetic domains: stages, the matrix files,
the CLI, classifier growth through a run, and resume in the middle of task 2."""

import json
from pathlib import Path

import pytest
import torch

from reidlab.cli import main
from reidlab.config import ConfigError, load_config
from reidlab.continual.record import CONTINUAL_JSON, HEATMAP_PNG
from reidlab.engine.modes import run as train
from reidlab.engine.rundir import RunDir
from reidlab.engine.trainer import FitResult
from reidlab.engine.validator import Validator


def tiny(root_a: Path, root_b: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"data.roots={{synthetic-a: {root_a}, synthetic-b: {root_b}}}",
        "data.synthetic.ids=12", "data.height=64", "data.width=32",
        "data.batch_size=16", "data.num_instances=4", "data.num_workers=0",
        "data.test_batch_size=64", "model.backbone=resnet18", "model.width=16",
        "solver.lr=1e-3", "solver.epochs=1", "solver.warmup_epochs=0", "solver.milestones=[]",
        "solver.eval_period=1", "solver.checkpoint_period=1", "solver.log_period=1",
        "mode=continual", "continual.tasks=[synthetic-a, synthetic-b]",
        "continual.task_solver={epochs: 2}", f"output_dir={out}", *extra,
    ]


def test_lwf_run_writes_stages_matrix_and_heatmap(tiny_synthetic, tiny_synthetic_b, tmp_path,
                                                  capsys):
    out = tmp_path / "lwf"
    args = [a for a in tiny(tiny_synthetic, tiny_synthetic_b, out, "loss.ce_dist=1",
                            "loss.tr_dist=1") if a != "mode=continual"]
    assert main(["continual", *args]) == 0
    printed = capsys.readouterr().out
    assert "after synthetic-b" in printed and "forgetting" in printed
    record = json.loads((out / CONTINUAL_JSON).read_text())
    assert record["tasks"] == ["synthetic-a", "synthetic-b"]
    assert record["datasets"] == ["synthetic-a", "synthetic-b"]
    r = record["mAP"]["matrix"]
    assert len(r) == 2 and all(len(row) == 2 for row in r)
    assert record["mAP"]["forgetting"]["synthetic-a"] == pytest.approx(r[0][0] - r[1][0])
    assert record["mAP"]["backward_transfer"] == pytest.approx(r[1][0] - r[0][0])
    assert record["mAP"]["average_seen"] == pytest.approx([r[0][0], (r[1][0] + r[1][1]) / 2])
    for t, row in enumerate(record["after_task"]):
        assert row["synthetic-a"]["mAP"] == r[t][0]
    assert (out / HEATMAP_PNG).read_bytes()[:4] == b"\x89PNG"
    assert list(out.glob("events.out.tfevents.*"))
    for stage, epochs in (("task1", 1), ("task2", 2)):
        rd = RunDir(out / stage)
        assert rd.is_finished() and rd.status()["epoch"] == epochs
        assert not rd.has_state()  # pruned: the next task starts from the final model
        assert (rd.checkpoints / "final_model.pt").is_file()
    text = (out / "train.log").read_text()
    assert "ce_dist" in text and "tr_dist" in text  # logged as terms of task 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["synthetic-b"]["mAP"] == pytest.approx(r[1][1])
    # task 2 validated on both seen datasets (the notebook's rule); task 1 on a only
    assert set(json.loads((out / "task2" / "metrics.json").read_text())) == {
        "synthetic-a", "synthetic-b", "save_best"}
    assert set(json.loads((out / "task1" / "metrics.json").read_text())) == {
        "synthetic-a", "save_best"}


def test_train_with_mode_continual_and_grow_keeps_old_rows(tiny_synthetic, tiny_synthetic_b,
                                                           tmp_path):
    out = tmp_path / "grow"
    cfg = load_config(None, tiny(tiny_synthetic, tiny_synthetic_b, out, "loss.logit_dist=1",
                                 "loss.distill_temperature=2", "continual.classifier=grow",
                                 "continual.task_solver={epochs: 1}"))
    train(cfg)
    first = torch.load(out / "task1/checkpoints/final_model.pt", weights_only=True)["model"]
    second = torch.load(out / "task2/checkpoints/final_model.pt", weights_only=True)["model"]
    w1, w2 = first["classifier.fc.weight"], second["classifier.fc.weight"]
    assert w2.shape[0] == 2 * w1.shape[0]  # 6 train ids per domain, grown by 6
    assert "logit_dist" in (out / "train.log").read_text()


def test_finetune_and_joint(tiny_synthetic, tiny_synthetic_b, tmp_path):
    out = tmp_path / "joint"
    train(load_config(None, tiny(tiny_synthetic, tiny_synthetic_b, out,
                                 "continual.method=joint")))
    record = json.loads((out / CONTINUAL_JSON).read_text())
    assert record["tasks"] == ["synthetic-a+synthetic-b"] and len(record["mAP"]["matrix"]) == 1
    assert record["mAP"]["forgetting"] == {} and record["mAP"]["backward_transfer"] is None
    assert "training on synthetic-a+synthetic-b, 12 ids" in (out / "train.log").read_text()
    with pytest.raises(ConfigError, match="loss.ce_dist is set but continual.method"):
        load_config(None, tiny(tiny_synthetic, tiny_synthetic_b, out,
                               "continual.method=finetune", "loss.ce_dist=1"))


def test_resume_in_the_middle_of_task_2(tiny_synthetic, tiny_synthetic_b, tmp_path,
                                        monkeypatch):
    extra = ("loss.tr_dist=1", "continual.task_solver={epochs: 3}")
    whole = train(load_config(None, tiny(tiny_synthetic, tiny_synthetic_b,
                                         tmp_path / "whole", *extra)))

    out = tmp_path / "stopped"
    real = Validator.__call__
    calls = []

    def stop_in_task_2(self, model, epoch=0, keep_features=False):
        calls.append(epoch)
        if len(self.test_sets) == 2 and epoch == 2:  # task 2 (validated on a and b)
            raise KeyboardInterrupt
        return real(self, model, epoch, keep_features)

    monkeypatch.setattr(Validator, "__call__", stop_in_task_2)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, tiny(tiny_synthetic, tiny_synthetic_b, out, *extra)))
    monkeypatch.setattr(Validator, "__call__", real)
    assert RunDir(out).status()["status"] == "stopped"
    assert RunDir(out / "task1").is_finished()
    assert RunDir(out / "task2").status()["epoch"] == 1  # epoch 1's state is saved

    fits = []
    import reidlab.continual.mode as mode

    real_fit = mode.fit

    def counting_fit(*args, **kwargs) -> FitResult:
        fits.append(kwargs.get("resume"))
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(mode, "fit", counting_fit)
    resumed = train(load_config(None, [*tiny(tiny_synthetic, tiny_synthetic_b, out, *extra),
                                       f"resume={out}"]))
    assert fits == [out / "task2"]  # task 1 read back, task 2 continued from its state
    history = json.loads((out / "task2" / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    for name in ("synthetic-a", "synthetic-b"):
        for key in ("mAP", "rank1"):
            assert resumed.metrics[name][key] == pytest.approx(whole.metrics[name][key],
                                                               abs=1e-6)
    assert RunDir(out).status()["status"] == "finished"
