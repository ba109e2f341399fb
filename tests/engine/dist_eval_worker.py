"""The validation of a run under torchrun (gloo, CPU), for tests/engine/test_distributed_run.py.

Every rank evaluates one randomly initialised tiny model on the test split of a synthetic
dataset, once with small test batches (several batches a rank, uneven shares) and once
with one batch for everything (rank 1's share is then empty), and saves the metrics, CMC
curves and gathered features. Usage: torchrun --nproc_per_node 2 THIS OUT_DIR DATA_ROOT
"""

import sys
from pathlib import Path

import torch

from reidlab.config import load_config
from reidlab.engine.collectives import init_from_env
from reidlab.engine.modes import test_sets_of
from reidlab.engine.validator import Validator
from reidlab.models.build import build_model


def main() -> None:
    out, root = Path(sys.argv[1]), sys.argv[2]
    torch.set_num_threads(1)
    rank, _ = init_from_env("cpu")
    saved = {}
    for batch in (16, 1000):
        cfg = load_config(None, [f"data.roots={{synthetic: {root}}}", "data.synthetic.ids=12",
                                 "data.height=32", "data.width=16", "data.num_workers=0",
                                 f"data.test_batch_size={batch}", "model.backbone=resnet18",
                                 "model.width=16", "device=cpu"])
        torch.manual_seed(0)
        model = build_model(cfg.model, 0)
        validation = Validator(test_sets_of(cfg), cfg.test, torch.device("cpu"))(
            model, keep_features=True)
        saved[batch] = {"metrics": validation.metrics, "cmc": validation.cmc,
                        "features": validation.features}
    torch.save(saved, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
