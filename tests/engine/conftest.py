"""Shared pieces of the engine tests: the tiniest training run that still trains and
validates (12 synthetic identities, 32x16 images, a width-16 ResNet-18, 5 iterations per
epoch), and a hash of a folder's files."""

import hashlib
from pathlib import Path

import pytest


def tiny_args(root: Path, out: Path, epochs: int = 2, *extra: str) -> list[str]:
    return [
        f"data.roots={{synthetic: {root}}}", "data.synthetic.ids=12", "data.height=32",
        "data.width=16", "data.batch_size=16", "data.num_instances=4", "data.num_workers=0",
        "data.test_batch_size=128", "model.backbone=resnet18", "model.width=16",
        "solver.lr=1e-3", f"solver.epochs={epochs}", "solver.warmup_epochs=1",
        f"solver.milestones=[{epochs}]", "solver.eval_period=1", "solver.checkpoint_period=1",
        "solver.log_period=1", "device=cpu", f"output_dir={out}", *extra,
    ]


def folder_hash(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder`` by relative path (empty if it is absent)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def hash_folder():
    """:func:`folder_hash`, for the tests."""
    return folder_hash


@pytest.fixture(scope="session")
def tiny(tiny_synthetic):
    """``tiny(out, epochs=2, *extra)``: the reidlab train arguments of the tiny run."""
    return lambda out, epochs=2, *extra: tiny_args(tiny_synthetic, out, epochs, *extra)
