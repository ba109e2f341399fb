"""``torchrun -m reidlab`` end to end with 2 gloo processes on CPU: one run folder written by
rank 0 alone, the first step of the one-process run, resume under torchrun, continual
learning, and the sharded evaluation that gives the one-process metrics exactly.

Whole runs are compared step for step, not by their final mAP: past the first steps two
runs that differ only in float round-off (the same run with 1 and 2 threads) part ways,
through ties in max-pooling and in the triplet's hard mining, so on a test split this small
their mAP differs by points either way (``benchmarks/distributed.py`` measures the mAP
parity on a larger run against that noise floor).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidlab.config import load_config
from reidlab.engine.modes import run as train
from reidlab.engine.modes import test_sets_of as sets_of
from reidlab.engine.validator import Validator
from reidlab.models.build import build_model

EVAL_WORKER = Path(__file__).with_name("dist_eval_worker.py")
# SGD: Adam's first steps turn round-off in tiny gradients into moves of the lr's size
STEPS = ["solver.optimizer=sgd", "solver.lr=0.02", "solver.momentum=0.9", "solver.milestones=[]",
         "solver.checkpoint_every_iters=1", "solver.keep_checkpoints=20"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd: Path) -> str:
    """Run ``torchrun --nproc_per_node 2 ARGS`` (gloo on CPU); its stdout."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res.stdout


def state(run: Path, iteration: int) -> dict:
    return torch.load(run / "checkpoints" / f"checkpoint_{iteration}.pt", weights_only=True)


def max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(((a[k].double() - b[k].double()).abs().max().item() for k in a
                if a[k].is_floating_point()), default=0.0)


@pytest.fixture(scope="module")
def two_process_run(tiny, tmp_path_factory):
    """A 2-epoch run of 2 processes started in an empty folder without ``output_dir`` (so
    the timestamped folder is rank 0's), a full state saved after every iteration."""
    cwd = tmp_path_factory.mktemp("torchrun")
    args = [a for a in tiny(cwd / "unused", 2) if not a.startswith("output_dir")]
    stdout = torchrun("-m", "reidlab", "train", *args, *STEPS, cwd=cwd)
    return cwd, stdout


def test_rank_zero_writes_the_run_and_the_step_is_the_one_process_step(
        two_process_run, tiny, tmp_path):
    cwd, stdout = two_process_run
    runs = list((cwd / "runs").iterdir())
    assert len(runs) == 1  # both ranks wrote into rank 0's timestamped folder
    run = runs[0]
    assert stdout.count("run directory:") == 1 and "mAP" in stdout  # rank 0 prints
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "finished" and status["epoch"] == 2
    log = (run / "train.log").read_text()
    assert "2 processes, data.batch_size 16 is the global batch (8 a process)" in log
    assert log.count("epoch 2 done") == 1
    assert [h["epoch"] for h in json.loads((run / "history.json").read_text())["epochs"]] \
        == [1, 2]

    one = tmp_path / "one"  # the same run in one process, its first iteration
    train(load_config(None, [*tiny(one, 1), *STEPS]))
    two, ref = state(run, 1), state(one, 1)
    assert max_diff(two["model"], ref["model"]) < 1e-5  # whole-identity shares, global seeds
    assert max_diff(two["objective"], ref["objective"]) < 1e-5
    assert max_diff(two["model"], state(run, 2)["model"]) > 1e-4  # training moves


def test_a_run_resumed_under_torchrun_ends_as_the_uninterrupted_one(
        two_process_run, tiny, tmp_path):
    """Stopped after epoch 1 (a 1-epoch run), continued with torchrun to epoch 2: the
    weights and metrics of the uninterrupted 2-process run, bit for bit."""
    cwd, _ = two_process_run
    uninterrupted = next((cwd / "runs").iterdir())
    out = tmp_path / "resumed"
    torchrun("-m", "reidlab", "train", *tiny(out, 1), *STEPS, cwd=tmp_path)
    assert json.loads((out / "run.json").read_text())["epoch"] == 1
    torchrun("-m", "reidlab", "train", f"resume={out}", "solver.epochs=2", cwd=tmp_path)
    log = (out / "train.log").read_text()
    assert "resumed from" in log and "at epoch 1, iteration 5" in log
    status = json.loads((out / "run.json").read_text())
    assert status["status"] == "finished" and status["epoch"] == 2
    assert max_diff(state(out, 10)["model"], state(uninterrupted, 10)["model"]) == 0.0
    assert json.loads((out / "metrics.json").read_text()) == \
        json.loads((uninterrupted / "metrics.json").read_text())


def test_continual_lwf_runs_under_torchrun(tiny_synthetic, tiny_synthetic_b, tmp_path):
    out = tmp_path / "lwf"
    args = [f"data.roots={{synthetic-a: {tiny_synthetic}, synthetic-b: {tiny_synthetic_b}}}",
            "data.synthetic.ids=12", "data.height=32", "data.width=16", "data.batch_size=16",
            "data.num_instances=4", "data.num_workers=0", "model.backbone=resnet18",
            "model.width=16", "solver.epochs=1", "solver.warmup_epochs=0",
            "solver.milestones=[]", "continual.tasks=[synthetic-a, synthetic-b]",
            "loss.ce_dist=1", "loss.tr_dist=1", "device=cpu", f"output_dir={out}"]
    stdout = torchrun("-m", "reidlab", "continual", *args, cwd=tmp_path)
    assert stdout.count("run directory:") == 1
    record = json.loads((out / "continual.json").read_text())
    assert len(record["mAP"]["matrix"]) == 2
    for stage in ("task1", "task2"):
        assert json.loads((out / stage / "run.json").read_text())["status"] == "finished"
    assert "tr_dist" in (out / "train.log").read_text()


def test_ssg_adaptation_runs_under_torchrun(tiny_synthetic, tiny_synthetic_b, tmp_path):
    """Source training, clustering on every rank, then a round of SSG's part task (a
    forward of its own: plain DDP)."""
    out = tmp_path / "ssg"
    args = [f"data.roots={{synthetic-a: {tiny_synthetic}, synthetic-b: {tiny_synthetic_b}}}",
            "data.train=[synthetic-a]", "data.test=[synthetic-b]", "data.synthetic.ids=12",
            "data.height=32", "data.width=16", "data.batch_size=8", "data.num_instances=4",
            "data.num_workers=0", "model.backbone=resnet18", "model.width=16",
            "solver.epochs=1", "solver.warmup_epochs=0", "solver.milestones=[]",
            "adapt.target=synthetic-b", "adapt.rounds=1", "adapt.round_solver={epochs: 1}",
            "adapt.rho=0.05", "device=cpu", f"output_dir={out}"]
    stdout = torchrun("-m", "reidlab", "adapt", *args, cwd=tmp_path)
    assert stdout.count("run directory:") == 1 and "round 1" in stdout
    rounds = json.loads((out / "rounds.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1]
    assert "PartTask has a forward of its own" in (out / "train.log").read_text()


def test_evaluation_in_shares_is_the_one_process_evaluation(tiny_synthetic, tmp_path):
    """Each rank extracts its contiguous share of the loader's batches (with a share per
    rank, and with one batch: rank 1 has none); the gathered features, the metrics and the
    CMC curves equal those of one process exactly, on both ranks."""
    torchrun(str(EVAL_WORKER), str(tmp_path), str(tiny_synthetic), cwd=tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]
    for batch in (16, 1000):
        cfg = load_config(None, [f"data.roots={{synthetic: {tiny_synthetic}}}",
                                 "data.synthetic.ids=12", "data.height=32", "data.width=16",
                                 "data.num_workers=0", f"data.test_batch_size={batch}",
                                 "model.backbone=resnet18", "model.width=16", "device=cpu"])
        torch.manual_seed(0)
        model = build_model(cfg.model, 0)
        ref = Validator(sets_of(cfg), cfg.test, torch.device("cpu"))(
            model, keep_features=True)
        for saved in ranks:
            got = saved[batch]
            assert got["metrics"] == ref.metrics
            for name, f in ref.features.items():
                g = got["features"][name]
                assert torch.equal(g.feats, f.feats) and g.num_query == f.num_query
                assert (g.pids == f.pids).all() and (g.camids == f.camids).all()
                assert g.pids.dtype == f.pids.dtype
                assert (got["cmc"][name] == ref.cmc[name]).all()
