"""Reruns and bad input: a run folder is never silently reused, a finished run is never
changed by a rerun, every error is one line naming its culprit and leaves no half-made run
folder (the folders are hashed before and after)."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from reidlab.cli import main
from reidlab.config import load_config
from reidlab.engine.modes import run as train
from reidlab.engine.rundir import RunDir


@pytest.fixture(scope="module")
def finished(tiny, tmp_path_factory) -> Path:
    """A finished two-epoch run (read only: tests that change it copy it first)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    train(load_config(None, tiny(run, 2)))
    return run


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()  # the log lines of a run come first, on stderr too
    assert "Traceback" not in err
    assert [x for x in lines if x.startswith("reidlab:")] == lines[-1:], lines[-3:]
    assert lines[-1].startswith("reidlab: error: ")
    return lines[-1]


def test_rerun_into_a_finished_run_changes_nothing(finished, tiny, capsys, hash_folder):
    before = hash_folder(finished)
    assert main(["train", *tiny(finished, 2)]) == 2
    line = error_line(capsys)
    assert f"output_dir {finished} already holds a finished supervised run (epoch 2 of 2)" \
        in line and f"resume={finished}" in line and "new output_dir" in line
    assert main(["train", f"resume={finished}"]) == 2  # its own config.yaml is the config
    line = error_line(capsys)
    assert f"{finished} is finished" in line and "nothing to resume" in line
    assert "solver.epochs above 2" in line
    # extending solver.epochs is allowed, no other change
    assert main(["train", *tiny(finished, 3), f"resume={finished}", "solver.lr=0.01"]) == 2
    line = error_line(capsys)
    assert "solver.lr is 0.001 in" in line and "but 0.01 now" in line
    assert hash_folder(finished) == before


def test_resume_extends_a_finished_run_by_its_new_epochs_only(finished, tiny, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished, run)
    old_best = RunDir(run).status()["best"]
    result = train(load_config(None, [*tiny(run, 2), "solver.epochs=3", f"resume={run}"]))
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    assert RunDir(run).status()["status"] == "finished"
    assert load_config(run / "config.yaml").solver.epochs == 3
    best = RunDir(run).checkpoint_files("best")
    assert len(best) == 1  # (run.json names it by absolute path: the copy keeps the name)
    assert Path(RunDir(run).status()["best"]["file"]).name == best[0].name
    assert RunDir(run).status()["best"]["epoch"] in (old_best["epoch"], 3)


def test_test_into_a_training_run_writes_its_own_subfolder(finished, tiny, capsys,
                                                          hash_folder):
    before = hash_folder(finished)
    # an override after a flag is accepted (argparse alone refuses it)
    args = ["test", *tiny(finished, 2)[:-1], f"model.weights={finished}", "--visualize", "0",
            f"output_dir={finished}"]
    assert main(args) == 0
    tests = sorted(finished.glob("test-*"))
    assert len(tests) == 1 and (tests[0] / "metrics.json").is_file()
    after = {k: v for k, v in hash_folder(finished).items() if not k.startswith("test-")}
    assert after == before
    shutil.rmtree(tests[0])  # the fixture's run is shared


def _new(tmp_path: Path) -> Path:
    return tmp_path / "never-made"


@pytest.mark.parametrize("extra, culprit", [
    (["solver.lr=-0.1"], "solver.lr must be positive, got -0.1"),
    (["data.batch_size=18"], "data.batch_size 18 is not a positive multiple of "
                             "data.num_instances 4"),
    (["solver.eval_period=0"], "solver.eval_period must be at least 1, got 0"),
    (["solver.checkpoint_period=0"], "solver.checkpoint_period must be at least 1"),
    (["solver.epochs=0"], "solver.epochs must be at least 1"),
    (["solver.milestones=[5]"], "solver.milestones [5]: [5] lie beyond solver.epochs 2"),
    (["data.batch_size=16", "data.num_instances=16"],
     "data.num_instances 16 is more than the"),
    (["resume=/nonexistent/run"], "resume=/nonexistent/run: no such run directory"),
    (["model.weights=/nonexistent/w.pt"], "model.weights=/nonexistent/w.pt: no such"),
    (["model.pretrained=/nonexistent/r18.pth"], "model.pretrained=/nonexistent/r18.pth"),
    (["solver.lrr=1"], "unknown key 'solver.lrr'; did you mean 'solver.lr'?"),
])
def test_bad_config_is_one_line_and_makes_no_folder(tiny, tmp_path, capsys, extra, culprit):
    out = _new(tmp_path)
    assert main(["train", *tiny(out, 2), *extra]) == 2
    assert culprit in error_line(capsys)
    assert not out.exists()


def test_unwritable_or_invalid_output_dir(tiny, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert main(["train", *tiny(blocker / "run", 2)]) == 2
    assert f"{blocker} is a file, not a folder" in error_line(capsys)
    assert main(["train", *tiny(blocker, 2)]) == 2
    assert f"output_dir={blocker} is not a folder" in error_line(capsys)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_output_dir_where_nothing_can_be_written(tiny, capsys):
    """/proc refuses new entries even to root (a chmod 555 folder would not stop root)."""
    assert main(["train", *tiny(Path("/proc/reidlab-run"), 2)]) == 2
    assert "output_dir=/proc/reidlab-run is not writable" in error_line(capsys)
    assert not Path("/proc/reidlab-run").exists()


def test_sample_with_replacement_allows_a_large_k_and_is_logged(tiny, tmp_path, caplog):
    from reidlab.engine.preflight import check_data

    caplog.set_level("INFO", logger="reidlab")  # as a run sets it; this test may run first
    cfg = load_config(None, [*tiny(tmp_path / "r", 2), "data.batch_size=16",
                             "data.num_instances=16", "data.sample_with_replacement=true"])
    check_data(cfg)
    assert "training identities have fewer than 16 images" in caplog.text


def test_bad_checkpoints_for_test_name_file_and_reason(finished, tiny, tmp_path, capsys):
    base = [a for a in tiny(_new(tmp_path), 2)]
    cases = {
        "truncated.pt": "the file is truncated",
        "random.pt": "not a PyTorch checkpoint",
        "empty.pt": "the file is empty",
    }
    best = RunDir(finished).checkpoint_files("best")[0].read_bytes()
    (tmp_path / "truncated.pt").write_bytes(best[: len(best) // 3])
    (tmp_path / "random.pt").write_bytes(bytes(range(7, 250)) * 40)
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, reason in cases.items():
        assert main(["test", *base, f"model.weights={tmp_path / name}"]) == 2
        line = error_line(capsys)
        assert name in line and reason in line and "weights_only" not in line
    assert main(["test", *base, f"model.weights={finished}", "model.backbone=resnet34"]) == 2
    line = error_line(capsys)
    assert "does not fit the model" in line and "layer1.2." in line  # resnet34's extra blocks
    assert not _new(tmp_path).exists()


def test_debug_shows_the_traceback(tiny, tmp_path, capsys):
    with pytest.raises(ValueError, match="solver.lr"):
        main(["train", "--debug", *tiny(_new(tmp_path), 2), "solver.lr=0"])


def test_a_finished_test_folder_is_not_reused(finished, tiny, tmp_path, capsys):
    out = tmp_path / "test"
    args = ["test", *tiny(out, 2), f"model.weights={finished}"]
    assert main(args) == 0
    capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    assert main(args) == 2
    assert f"output_dir {out} already holds a finished test" in error_line(capsys)
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_nan_features_at_evaluation_name_the_image():
    from reidlab.evaluation import evaluate

    q, g = torch.randn(3, 4), torch.randn(5, 4)
    g[3, 1] = float("nan")
    ids = torch.arange(3), torch.tensor([0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="g_feats: gallery image 3 has a non-finite"):
        evaluate(q, g, ids[0], ids[1], torch.zeros(3, dtype=torch.long),
                 torch.ones(5, dtype=torch.long))


def _other_mode(mode: str, a: Path, b: Path, out: Path, missing: Path) -> list[str]:
    """Arguments of a continual run whose second task, or an adapt run whose target, is a
    dataset under the folder ``missing``; the synthetic sets are the tests' own."""
    common = ["data.synthetic.ids=12", "data.height=32", "data.width=16", "data.batch_size=16",
              "data.num_instances=4", "data.num_workers=0", "model.backbone=resnet18",
              "model.width=16", "solver.epochs=1", "solver.warmup_epochs=0",
              "solver.milestones=[]", "device=cpu", f"output_dir={out}"]
    if mode == "continual":
        return ["continual", *common, "loss.tr_dist=1",
                f"data.roots={{synthetic-a: {a}, market1501: {missing}}}",
                "continual.tasks=[synthetic-a, market1501]"]
    return ["adapt", *common, f"data.roots={{synthetic-a: {a}, synthetic-b: {b}, "
            f"dukemtmc: {missing}}}", "data.train=[synthetic-a]", "data.test=[dukemtmc]",
            "adapt.target=dukemtmc"]


@pytest.mark.parametrize("mode, key, dataset", [
    ("continual", "continual.tasks", "market1501"),
    ("adapt", "adapt.target", "dukemtmc"),
])
def test_other_modes_check_their_datasets_before_making_a_folder(
        tiny_synthetic, tiny_synthetic_b, tmp_path, capsys, mode, key, dataset):
    out, missing = _new(tmp_path), tmp_path / "no-such-root"
    assert main(_other_mode(mode, tiny_synthetic, tiny_synthetic_b, out, missing)) == 2
    line = error_line(capsys)
    assert line.startswith(f"reidlab: error: {key}: {dataset}: root '{missing}' does not exist")
    assert f"(the root is data.roots.{dataset})" in line
    assert not out.exists()


def test_other_modes_check_their_settings_before_making_a_folder(
        tiny_synthetic, tiny_synthetic_b, tmp_path, capsys):
    out, missing = _new(tmp_path), tmp_path / "no-such-root"
    adapt = _other_mode("adapt", tiny_synthetic, tiny_synthetic_b, out, missing)
    assert main([*adapt, "data.test=[synthetic-a]"]) == 2
    assert "adapt.target 'dukemtmc' must be one of data.test ['synthetic-a']" in \
        error_line(capsys)
    assert main([*adapt, "adapt.round_solver={epochs: 2, milestones: [3]}"]) == 2
    assert "adapt.round_solver.milestones [3]: [3] lie beyond adapt.round_solver.epochs 2" in \
        error_line(capsys)
    continual = _other_mode("continual", tiny_synthetic, tiny_synthetic_b, out, missing)
    continual = [*continual, f"data.roots={{synthetic-a: {tiny_synthetic}, synthetic-b: "
                 f"{tiny_synthetic_b}}}", "continual.tasks=[synthetic-a, synthetic-b]"]
    assert main([*continual, "continual.task_solver={epochs: 2, milestones: [3]}"]) == 2
    assert "continual.task_solver.milestones [3]: [3] lie beyond continual.task_solver.epochs" \
        in error_line(capsys)
    assert main([*continual, "data.batch_size=16", "data.num_instances=16"]) == 2
    assert "data.num_instances 16 is more than the" in error_line(capsys)
    assert not out.exists()


def test_a_run_stopped_between_stages_may_resume(tiny_synthetic, tiny_synthetic_b, tmp_path):
    """Task 1 finished (its final model kept, its states deleted), stopped before task 2
    saved a state: resume= is accepted; with no stage to continue from it is refused."""
    from reidlab.config import save_config
    from reidlab.engine.preflight import plan_train

    run = tmp_path / "run"
    args = [*_other_mode("continual", tiny_synthetic, tiny_synthetic_b, run, tmp_path)[1:],
            f"data.roots={{synthetic-a: {tiny_synthetic}, synthetic-b: {tiny_synthetic_b}}}",
            "continual.tasks=[synthetic-a, synthetic-b]", "mode=continual"]
    cfg = load_config(None, args)
    run.mkdir()
    save_config(cfg, run / "config.yaml")
    RunDir(run).update_status(mode="continual", status="stopped")
    with pytest.raises(ValueError, match="holds no full training state"):
        plan_train(load_config(None, [*args, f"resume={run}"]))
    task1 = RunDir(run / "task1")
    task1.path.mkdir()
    (task1.metrics).write_text("{}")
    task1.update_status(status="finished")
    task1.finish_stage({"w": torch.zeros(1)})
    assert plan_train(load_config(None, [*args, f"resume={run}"])) == run
