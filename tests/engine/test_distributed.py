"""Two gloo processes on CPU take the step of one process with the whole batch."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from reidlab.engine.collectives import gather, world
from reidlab.engine.distributed import GlobalBatchNorm, convert_sync_bn

WORKER = Path(__file__).with_name("dist_parity_worker.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(tmp_path: Path, *overrides: str) -> dict[str, dict]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
           str(WORKER), str(tmp_path), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return {name: torch.load(tmp_path / f"{name}.pt", weights_only=True)
            for name in ("reference", "rank0", "rank1")}


def _max_diff(a: dict, b: dict) -> float:
    assert set(a) == set(b)
    return max(((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].numel()),
               default=0.0)


def test_two_processes_take_the_one_process_step(tmp_path):
    """Global batch 16 (8 ids x 2) as 2 x 8 (4 whole ids each): global batch norm, triplet
    hard mining and centres on the gathered batch; SGD so that parameters move by lr x
    gradient (Adam's first step would magnify round-off in tiny gradients)."""
    out = _run(tmp_path, "loss.name=softmax_triplet_center", "solver.momentum=0.9")
    ref, r0, r1 = out["reference"], out["rank0"], out["rank1"]
    assert abs(r0["loss"] - ref["loss"]) < 1e-5 and r0["loss"] == r1["loss"]
    assert _max_diff(r0["model"], ref["model"]) < 1e-5  # every parameter and BN statistic
    assert _max_diff(r0["objective"], ref["objective"]) < 1e-5  # the centres
    assert _max_diff(r0["model"], r1["model"]) == 0.0
    assert _max_diff(ref["model"], ref["before"]) > 1e-3  # the step did move the weights


def test_the_teacher_of_lwf_is_gathered_too(tmp_path):
    """Continual LwF's step: the frozen teacher's outputs on each share are gathered with
    the student's, so the distillation terms see the global batch."""
    out = _run(tmp_path, "--teacher", "loss.name=softmax_triplet", "solver.momentum=0.9")
    ref, r0 = out["reference"], out["rank0"]
    assert {"ce_dist", "tr_dist"} <= set(r0["terms"])
    assert abs(r0["loss"] - ref["loss"]) < 1e-5
    assert _max_diff(r0["model"], ref["model"]) < 1e-5


def test_a_loss_that_reads_no_logits_still_steps(tmp_path):
    """Triplet alone never reads the classifier or the neck: DDP still gets a (zero)
    gradient for them instead of waiting for it; every other parameter takes the
    one-process step (the zero gradient lets weight decay move those two, which one
    process leaves alone)."""
    out = _run(tmp_path, "loss.name=triplet", "solver.momentum=0.9")
    ref, r0 = out["reference"], out["rank0"]
    assert abs(r0["loss"] - ref["loss"]) < 1e-5

    def kept(d: dict) -> dict:
        return {k: v for k, v in d.items() if not k.startswith(("classifier.", "neck."))}

    assert _max_diff(kept(r0["model"]), kept(ref["model"])) < 1e-5


def test_one_process_fallbacks():
    assert world() == (0, 1)
    x = torch.randn(3, 2, requires_grad=True)
    assert gather(x) is x


def test_global_batch_norm_is_batch_norm_in_one_process():
    torch.manual_seed(0)
    bn = torch.nn.Sequential(torch.nn.BatchNorm2d(4))
    ref = torch.nn.BatchNorm2d(4)
    ref.load_state_dict(bn[0].state_dict())
    convert_sync_bn(bn, "cpu")
    assert isinstance(bn[0], GlobalBatchNorm)
    x = torch.randn(6, 4, 5, 3)
    assert torch.allclose(bn(x), ref(x), atol=1e-6)
    assert torch.allclose(bn[0].running_var, ref.running_var)
    assert set(bn[0].state_dict()) == set(ref.state_dict())
