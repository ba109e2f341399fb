"""The device-side augmentation and the disk cache inside a real training run."""

import json

from reidlab.config import load_config
from reidlab.engine.modes import run as train


def test_training_with_device_augmentation_and_disk_cache(tiny_synthetic, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    cfg = load_config(None, [
        f"data.roots={{synthetic: {tiny_synthetic}}}", "data.synthetic.ids=12",
        "data.height=64", "data.width=32", "data.batch_size=16", "data.num_instances=4",
        "data.num_workers=0", "model.backbone=resnet18", "model.width=16",
        "solver.epochs=1", "solver.warmup_epochs=0", "solver.milestones=[1]",
        "data.augment_on=device", "data.cache=disk", f"data.cache_dir={cache}",
        "device=cpu", f"output_dir={out}",
    ])
    result = train(cfg)
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    assert 0.0 <= result.metrics["synthetic-a"]["mAP"] <= 1.0
    files = sorted(p.suffix for p in cache.iterdir())
    assert files == [".json", ".npy"]  # the cache file and its manifest
