"""One training step under torchrun (gloo, CPU), for tests/engine/test_distributed.py.

Each rank trains on its share (whole identities) of one global batch through what
``fit`` steps with several processes (``distribute``: global batch norm, converted after
the optimisers were built, and the gathered objective), and saves its loss and state;
rank 0 then also takes the same step in one plain process on the whole batch (plain
BatchNorm, plain ReIDTask), the reference. ``--teacher`` adds a frozen teacher and the
distillation terms of continual LwF. Usage: torchrun --nproc_per_node 2 THIS OUT_DIR
[--teacher] [key=value ...]
"""

import sys
from pathlib import Path

import torch

from reidlab.config import load_config
from reidlab.continual.classifier import make_teacher
from reidlab.engine.collectives import init_from_env
from reidlab.engine.distributed import distribute
from reidlab.engine.task import ReIDTask, build_optimizers, build_task
from reidlab.engine.trainer import make_train_step
from reidlab.losses.distill import distill_terms

B, IDS = 16, 8
CPU = torch.device("cpu")


def global_batch():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(B, 3, 32, 16, generator=g)
    pids = torch.arange(IDS).repeat_interleave(B // IDS)  # K = 2
    return images, pids, torch.zeros(B, dtype=torch.long), torch.arange(B)


def state(task, loss):
    return {"loss": loss, "model": task.model.state_dict(),
            "objective": task.objective.state_dict()}


def make_task(cfg, teacher: bool) -> ReIDTask:
    torch.manual_seed(0)
    task = build_task(cfg, IDS)
    if not teacher:
        return task
    torch.manual_seed(1)
    previous = build_task(cfg, IDS).model
    for term in distill_terms(1.0, 1.0, 0.0, 2.0, 0.3):
        task.objective.add_term(term)
    return ReIDTask(task.model, task.objective, make_teacher(previous, "replace"))


def main() -> None:
    out = Path(sys.argv[1])
    teacher = "--teacher" in sys.argv[2:]
    overrides = [a for a in sys.argv[2:] if a != "--teacher"]
    cfg = load_config(None, ["model.backbone=resnet18", "model.width=16",
                             "solver.optimizer=sgd", "solver.lr=0.05", *overrides])
    torch.set_num_threads(1)
    rank, world = init_from_env("cpu")
    images, pids, camids, index = global_batch()
    share = slice(rank * B // world, (rank + 1) * B // world)

    task = make_task(cfg, teacher)
    slots = build_optimizers(cfg, task)
    step = make_train_step(distribute(task, CPU), slots, CPU)
    result = step(None, (images[share], pids[share], camids[share], index[share]))
    torch.save({**state(task, result["loss"]), "terms": sorted(result)},
               out / f"rank{rank}.pt")

    if rank == 0:
        ref = make_task(cfg, teacher)
        before = {k: v.clone() for k, v in ref.model.state_dict().items()}
        ref_slots = build_optimizers(cfg, ref)
        ref_result = make_train_step(ref, ref_slots, CPU)(None, (images, pids, camids, index))
        torch.save({**state(ref, ref_result["loss"]), "before": before}, out / "reference.pt")


if __name__ == "__main__":
    main()
