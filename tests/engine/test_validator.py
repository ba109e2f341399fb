"""The validation score rules, the notebook's block, and the best-model choice of fit."""

import pytest
import torch

from reidlab.config import load_config
from reidlab.data.pipeline import build_train_data, load_named
from reidlab.engine.context import RunContext
from reidlab.engine.rundir import RunDir
from reidlab.engine.task import build_optimizers, build_task
from reidlab.engine.trainer import fit
from reidlab.engine.validator import Validation, score


def m(map_: float, rank1: float) -> dict[str, float]:
    return {"mAP": map_, "rank1": rank1, "rank5": rank1, "rank10": rank1, "mINP": 0.0,
            "mean": (map_ + rank1) / 2}


NOTEBOOK = {"market1501": m(0.868, 0.946), "dukemtmc": m(0.786, 0.880),
            "msmt17": m(0.489, 0.675)}


def test_save_best_of_the_notebooks_joint_run():
    # (0.907 + 0.833 + 0.582) / 3, worked by hand
    assert score(NOTEBOOK) == pytest.approx(0.7740, abs=5e-5)
    assert f"{score(NOTEBOOK):.4f}" == "0.7740"
    assert score(NOTEBOOK, "dukemtmc") == pytest.approx(0.833)
    with pytest.raises(KeyError, match="test.best_by.*cuhk03"):
        score(NOTEBOOK, "cuhk03")


def test_validation_block_is_the_notebooks():
    block = Validation(400, NOTEBOOK, score(NOTEBOOK), "mean_of_datasets").block().splitlines()
    assert block[0] == block[-1] == "-" * 80
    assert block[1] == " Valid - Epoch: 400"
    assert block[2:7] == [" market1501 Validation Results", " mAP: 86.8%",
                          " CMC curve, Rank-1  :94.6%", " CMC curve, Rank-5  :94.6%",
                          " CMC curve, Rank-10 :94.6%"]
    assert " msmt17 Validation Results" in block
    assert block[-2] == " Save best: 0.7740"


class Scripted:
    """A validator whose metrics follow a script: per epoch, per dataset (mAP, rank-1)."""

    rule = "mean_of_datasets"

    def __init__(self, script):
        self.script = script

    def __call__(self, model, epoch=0, keep_features=False):
        metrics = {name: m(*pair) for name, pair in self.script[epoch - 1].items()}
        return Validation(epoch, metrics, score(metrics, self.rule), self.rule)


@pytest.mark.parametrize("script, best_epoch", [
    # dataset a alone would pick epoch 2; the mean of both picks epoch 3
    ([{"a": (0.5, 0.5), "b": (0.5, 0.5)}, {"a": (0.9, 0.9), "b": (0.0, 0.0)},
      {"a": (0.6, 0.6), "b": (0.6, 0.6)}], 3),
    ([{"a": (0.5, 0.5), "b": (0.5, 0.5)}, {"a": (0.7, 0.7), "b": (0.7, 0.7)},
      {"a": (0.9, 0.9), "b": (0.1, 0.1)}], 2),
])
def test_fit_keeps_the_model_of_the_best_score(tiny_synthetic, tmp_path, script, best_epoch):
    cfg = load_config(None, [f"data.roots={{synthetic: {tiny_synthetic}}}", "data.synthetic.ids=12",
                             "data.height=64", "data.width=32", "data.batch_size=8",
                             "data.num_workers=0", "model.backbone=resnet18", "solver.epochs=3",
                             "solver.eval_period=1", f"output_dir={tmp_path / 'run'}"])
    ctx = RunContext.create(cfg)
    data = build_train_data(cfg, [load_named(cfg.data, "synthetic")])
    task = build_task(cfg, data.num_classes)
    data.loader = [next(iter(data.loader))]  # one iteration per epoch is enough here
    result = fit(ctx, task, build_optimizers(cfg, task), data, Scripted(script), cfg.solver,
                 ctx.run)
    status = RunDir(tmp_path / "run").status()
    assert status["best"]["epoch"] == best_epoch
    assert result.best_score == pytest.approx(max(h["score"] for h in result.history))
    (best,) = RunDir(tmp_path / "run").checkpoint_files("best")
    assert status["best"]["file"] == str(best)
    assert f"_{best_epoch}_" in best.name
    saved = torch.load(best, weights_only=True)
    assert set(saved) >= {"backbone.conv1.weight"}
