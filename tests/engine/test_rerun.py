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


def test_sample_with_replacement_allows_a_large_k_and_is_logged(tiny, tmp_path, caplog):
    from reidlab.engine.preflight import check_data

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
