"""Shared pieces of the inference tests: the tiny synthetic set in the folder layout, a
tiny config and a checkpoint of its (untrained, seeded) model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from reidlab.config import load_config
from reidlab.data.datasets import load_dataset
from reidlab.models.build import build_model

TINY = {"data": {"height": 64, "width": 32, "num_workers": 0, "test_batch_size": 7},
        "model": {"backbone": "resnet18"}, "device": "cpu"}


@pytest.fixture(scope="session")
def tiny_folder(tiny_synthetic, tmp_path_factory) -> Path:
    """The tiny synthetic set rewritten as ``folder/{train,query,gallery}/<pid>/<cam>_i.jpg``
    (junk and distractor boxes left out)."""
    dst = tmp_path_factory.mktemp("folder")
    ds = load_dataset("market1501", tiny_synthetic)
    for split, records in (("train", ds.train), ("query", ds.query), ("gallery", ds.gallery)):
        for i, r in enumerate(records):
            if r.pid <= 0 and split != "train":
                continue
            out = dst / split / str(r.pid) / f"{r.camid}_{i:04d}.jpg"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(Path(r.path).read_bytes())
    return dst


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


@pytest.fixture(scope="session")
def tiny_weights(tiny_config, tmp_path_factory) -> Path:
    """A checkpoint of the tiny config's model: seeded random weights, BN statistics moved
    off their initial values by a few forward passes so that the neck matters."""
    torch.manual_seed(0)
    model = build_model(load_config(tiny_config).model, 10)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 32) * 0.5 + 0.2)
    path = tmp_path_factory.mktemp("weights") / "model.pt"
    torch.save(model.state_dict(), path)
    return path
