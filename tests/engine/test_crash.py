"""Crash safety: a run killed with SIGKILL (mid-epoch, or during a validation), or stopped
by SIGINT or SIGTERM, and resumed ends with the uninterrupted run's metrics and
bit-identical weights; a damaged newest state is skipped with a message; a non-finite loss
stops the run naming the iteration and the term; every full state is written atomically
and only the last K are kept.

The interrupted runs are all the tiny two-epoch run with a full state every 2 iterations
(5 iterations per epoch), so that one uninterrupted run of it is the reference of every
kill test."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidlab.config import load_config
from reidlab.engine.checkpoint import CheckpointError, atomic_save, read_state
from reidlab.engine.modes import run as train
from reidlab.engine.rundir import RunDir

DRIVER = Path(__file__).with_name("crash_driver.py")
EVERY = "solver.checkpoint_every_iters=2"


def killed(args: list[str], kill_at: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(DRIVER), str(torch.get_num_threads()), kill_at,
                           "train", *args], capture_output=True, text=True, timeout=600)


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(RunDir(run).latest_checkpoint(), weights_only=True)["model"]


def assert_same_run(a: Path, b: Path) -> None:
    assert json.loads((a / "metrics.json").read_text()) == json.loads(
        (b / "metrics.json").read_text())
    wa, wb = final_weights(a), final_weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    ha = [h["epoch"] for h in json.loads((b / "history.json").read_text())["epochs"]]
    assert ha == [1, 2]


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must end equal to (read only)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train(load_config(None, tiny(run, 2, EVERY)))
    return run


def test_sigkill_mid_epoch_and_during_validation_then_resume(reference, tiny, tmp_path):
    """Killed after iteration 3 of 10 (states at 2), and at epoch 2's validation (states
    at 8 and after epoch 1): each resumed run equals the uninterrupted one bit for bit."""
    for kill_at, lost_after in (("iteration:3", 2), ("eval:2", 8)):
        run = tmp_path / kill_at.replace(":", "-")
        proc = killed(tiny(run, 2, EVERY), kill_at)
        assert proc.returncode == -9, proc.stderr[-2000:]
        status = RunDir(run).status()
        assert status["status"] == "running"  # SIGKILL leaves no chance to write more
        assert status["iteration"] == lost_after  # at most the work since then is lost
        resumed = train(load_config(None, [*tiny(run, 2, EVERY), f"resume={run}"]))
        assert resumed.history[-1]["epoch"] == 2
        assert_same_run(reference, run)
        assert RunDir(run).status()["status"] == "finished"
        assert len(RunDir(run).checkpoint_files()) == 2  # solver.keep_checkpoints


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_or_sigterm_saves_says_how_to_resume_and_exits_128_plus_signal(
        reference, tiny, tmp_path, sig):
    """Ctrl-C or a scheduler's kill after iteration 3: the iteration finishes, its state is
    saved, one line says how to resume (no traceback), exit 130 / 143; the resumed run
    equals the uninterrupted one bit for bit."""
    run = tmp_path / "run"
    kind = "int" if sig == signal.SIGINT else "term"
    proc = killed(tiny(run, 2, EVERY), f"{kind}:3")
    assert proc.returncode == 128 + sig, proc.stderr[-2000:]
    assert proc.returncode == (130 if sig == signal.SIGINT else 143)
    last = proc.stderr.strip().splitlines()[-1]
    assert last == (f"reidlab: stopped by {sig.name} in epoch 1 after iteration 3; the state "
                    f"is saved in {run}/checkpoints/checkpoint_3.pt; continue with: reidlab "
                    f"train resume={run}")
    assert [x for x in proc.stderr.splitlines() if x.startswith("reidlab:")] == [last]
    assert "Traceback" not in proc.stderr
    status = RunDir(run).status()
    assert status["status"] == "stopped" and status["iteration"] == 3
    train(load_config(None, [*tiny(run, 2, EVERY), f"resume={run}"]))
    assert_same_run(reference, run)


def test_damaged_newest_state_is_skipped_with_a_message(reference, tiny, tmp_path, caplog,
                                                        monkeypatch):
    from reidlab.engine import trainer

    run = tmp_path / "run"
    args = tiny(run, 2, EVERY)
    real_step = trainer.make_train_step

    def make_step(*a, **kw):
        inner = real_step(*a, **kw)

        def step(engine, batch):
            out = inner(engine, batch)
            if engine.state.iteration == 5:  # a crash in this process: no subprocess needed
                raise RuntimeError("crashed after step 5")
            return out
        return step

    monkeypatch.setattr(trainer, "make_train_step", make_step)
    with pytest.raises(RuntimeError, match="crashed after step 5"):
        train(load_config(None, args))  # states at 2 and 4 (5 ends the epoch: none at 5)
    monkeypatch.setattr(trainer, "make_train_step", real_step)
    states = sorted(RunDir(run).checkpoint_files(), key=lambda p: len(p.name))
    assert [p.name for p in states] == ["checkpoint_2.pt", "checkpoint_4.pt"]
    newest = states[-1]
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # truncated
    train(load_config(None, [*args, f"resume={run}"]))
    text = caplog.text
    assert (f"skipping {newest.name}: full training state {newest} cannot be read: the file "
            "is truncated") in text
    assert "resuming from" in text and "checkpoint_2.pt" in text
    assert RunDir(run).status()["status"] == "finished"
    assert_same_run(reference, run)  # the older state loses work, not exactness


def test_every_state_damaged_is_one_error_naming_each_file(tiny, tmp_path):
    run = tmp_path / "run"
    train(load_config(None, tiny(run, 1)))
    (state,) = RunDir(run).checkpoint_files()
    state.write_bytes(b"\x00" * 100)
    status_json = json.loads((run / "run.json").read_text())
    status_json["status"] = "stopped"  # as if stopped, so that resume is allowed
    (run / "run.json").write_text(json.dumps(status_json))
    with pytest.raises(CheckpointError, match=rf"{state.name} cannot be read: not a PyTorch"):
        train(load_config(None, [*tiny(run, 1), f"resume={run}"]))


def test_nonfinite_loss_names_iteration_and_term_and_keeps_the_last_state(
        tiny, tmp_path, monkeypatch):
    from reidlab.losses import triplet

    run = tmp_path / "run"
    real = triplet.TripletLoss.forward
    calls = {"n": 0}

    def nan_at_7(self, *args, **kwargs):
        calls["n"] += 1
        out = real(self, *args, **kwargs)
        return out._replace(loss=out.loss * float("nan")) if calls["n"] == 7 else out

    monkeypatch.setattr(triplet.TripletLoss, "forward", nan_at_7)
    with pytest.raises(FloatingPointError,
                       match=r"epoch 2, iteration 7: term 'triplet' is nan .*"
                             r"the last good state is .*checkpoint_5\.pt"):
        train(load_config(None, tiny(run, 2)))
    status = RunDir(run).status()
    assert status["status"] == "failed" and "iteration 7" in status["error"]
    history = json.loads((run / "history.json").read_text())["epochs"]
    assert [h["epoch"] for h in history] == [1]  # nothing computed from the NaN weights
    assert [p.name for p in RunDir(run).checkpoint_files()] == ["checkpoint_5.pt"]


def test_atomic_save_never_leaves_a_partial_file_and_read_state_explains(tmp_path):
    path = tmp_path / "s.pt"
    atomic_save({"a": torch.ones(3)}, path)
    assert torch.equal(read_state(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["s.pt"]  # no temporary file left
    cases = {
        "empty.pt": (b"", "the file is empty"),
        "random.pt": (bytes(range(256)) * 4, "not a PyTorch checkpoint"),
        "truncated.pt": (path.read_bytes()[:200], "the file is truncated"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=reason) as err:
            read_state(tmp_path / name)
        assert name in str(err.value) and "weights_only" not in str(err.value)
    import argparse

    torch.save({"ns": argparse.Namespace(a=1)}, tmp_path / "objects.pt")
    with pytest.raises(CheckpointError, match="objects other than tensors") as err:
        read_state(tmp_path / "objects.pt")
    assert "weights_only" not in str(err.value)
