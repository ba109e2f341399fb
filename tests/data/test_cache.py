"""Reduced-scale decoding, the decoded-image cache and the two train data paths."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from reidlab.config import load_config
from reidlab.data import cache as cache_mod
from reidlab.data import loader
from reidlab.data.cache import DecodedImages, build_image_cache, cache_file
from reidlab.data.loader import decode_image, load_resized
from reidlab.data.pipeline import build_train_data, load_named
from reidlab.data.records import ImageRecord
from reidlab.data.transforms import Resize


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 / w, y * 255 / h, 128 + 60 * np.sin(x / 5 + y / 7)], axis=-1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def _jpegs(folder: Path, n: int, h: int = 40, w: int = 20) -> list[ImageRecord]:
    records = []
    for i in range(n):
        path = folder / f"{i:03d}.jpg"
        Image.fromarray(_smooth(h, w, i)).save(path, quality=95)
        records.append(ImageRecord(str(path), i // 2, i % 2, "t"))
    return records


@pytest.fixture(params=[True, False], ids=["simplejpeg", "pillow"])
def use_simplejpeg(request: pytest.FixtureRequest) -> bool:
    if request.param and loader.simplejpeg is None:
        pytest.skip("simplejpeg is not installed")
    return bool(request.param)


@pytest.mark.parametrize(("min_size", "expected"), [
    ((64, 32), (64, 32)),  # 1/4: exactly the minimum
    ((100, 50), (128, 64)),  # 1/2: 1/4 would fall below it
    ((60, 20), (64, 32)),  # 1/4
    ((200, 100), (256, 128)),  # under twice the size: full
    (None, (256, 128)),
])
def test_reduced_scale_decode_keeps_at_least_the_size(tmp_path, use_simplejpeg, min_size,
                                                      expected):
    path = tmp_path / "big.jpg"
    Image.fromarray(_smooth(256, 128, 0)).save(path, quality=95)
    image = decode_image(path, use_simplejpeg=use_simplejpeg, min_size=min_size)
    assert tuple(image.shape) == (3, *expected)


def test_reduced_scale_decode_is_close_to_a_box_filter(tmp_path, use_simplejpeg):
    path = tmp_path / "big.jpg"
    Image.fromarray(_smooth(256, 128, 1)).save(path, quality=95)
    full = decode_image(path, use_simplejpeg=use_simplejpeg).double()
    half = decode_image(path, use_simplejpeg=use_simplejpeg, min_size=(128, 64)).double()
    box = full.view(3, 128, 2, 64, 2).mean((2, 4))  # plain 2x2 average of the full decode
    assert half.shape == box.shape
    assert (half - box).abs().mean() < 2.0  # grey levels


def test_png_ignores_min_size(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(_smooth(64, 32, 0)).save(path)
    assert decode_image(path, min_size=(16, 8)).shape == (3, 64, 32)


def test_load_resized_rounds_the_float_resize(tmp_path):
    (record,) = _jpegs(tmp_path, 1, 40, 20)  # under twice 32x16: decoded at full size
    full = decode_image(record.path).float() / 255
    expected = (Resize(32, 16)(full) * 255).round().clamp(0, 255).to(torch.uint8)
    assert torch.equal(load_resized(record.path, 32, 16), expected)
    assert torch.equal(load_resized(record.path, 40, 20), decode_image(record.path))


def test_memory_cache_holds_every_resized_image(tmp_path):
    records = _jpegs(tmp_path, 5)
    store = build_image_cache(records, 32, 16, "memory")
    assert store is not None and len(store) == 5
    for i, r in enumerate(records):
        assert torch.equal(store[i], load_resized(r.path, 32, 16))
    assert build_image_cache(records, 32, 16, "none") is None


def test_disk_cache_is_reused_and_rebuilt_when_a_file_changes(tmp_path, monkeypatch):
    records = _jpegs(tmp_path, 6)
    folder = tmp_path / "cache"
    fills = []
    real_fill = cache_mod._fill
    monkeypatch.setattr(cache_mod, "_fill", lambda *a, **k: fills.append(1) or real_fill(*a, **k))

    store = build_image_cache(records, 32, 16, "disk", folder)
    path = cache_file(records, 32, 16, folder)
    assert store is not None and path.is_file() and len(fills) == 1
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["height"] == 32 and len(meta["files"]) == 6

    again = build_image_cache(records, 32, 16, "disk", folder)
    assert len(fills) == 1 and again is not None  # reused
    assert torch.equal(again[3], load_resized(records[3].path, 32, 16))

    # replace image 3 by another picture (size and mtime change): the cache is rebuilt
    Image.fromarray(_smooth(40, 20, 99)[::-1].copy()).save(records[3].path, quality=80)
    st = os.stat(records[3].path)
    os.utime(records[3].path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    rebuilt = build_image_cache(records, 32, 16, "disk", folder)
    assert len(fills) == 2 and rebuilt is not None
    assert torch.equal(rebuilt[3], load_resized(records[3].path, 32, 16))

    # another resolution: its own file, its own shape
    other = build_image_cache(records, 20, 10, "disk", folder)
    assert len(fills) == 3 and other is not None and other.shape == (6, 3, 20, 10)


def test_disk_cache_without_manifest_is_not_read(tmp_path):
    records = _jpegs(tmp_path, 3)
    folder = tmp_path / "cache"
    build_image_cache(records, 32, 16, "disk", folder)
    path = cache_file(records, 32, 16, folder)
    np.save(path, np.zeros((3, 3, 32, 16), np.uint8))  # garbage, manifest then removed
    path.with_suffix(".json").unlink()
    store = build_image_cache(records, 32, 16, "disk", folder)
    assert store is not None and torch.equal(store[0], load_resized(records[0].path, 32, 16))


def test_disk_store_travels_to_worker_processes(tmp_path):
    records = _jpegs(tmp_path, 8)
    store = build_image_cache(records, 32, 16, "disk", tmp_path / "c")
    assert isinstance(store, DecodedImages)
    copy = pickle.loads(pickle.dumps(store))
    assert torch.equal(copy[5], store[5])
    seen = torch.cat(list(DataLoader(store, batch_size=4, num_workers=2)))  # type: ignore[arg-type]
    assert torch.equal(seen, torch.stack([store[i] for i in range(8)]))


def test_bad_mode_and_missing_file_are_named(tmp_path):
    records = _jpegs(tmp_path, 2)
    with pytest.raises(ValueError, match="data.cache"):
        build_image_cache(records, 32, 16, "ram")  # type: ignore[arg-type]
    gone = [*records, ImageRecord(str(tmp_path / "gone.jpg"), 9, 0, "t")]
    with pytest.raises(FileNotFoundError, match="gone.jpg"):
        build_image_cache(gone, 32, 16, "disk", tmp_path / "c")


def _first_batch(tiny_synthetic, tmp_path, *overrides: str):
    cfg = load_config(None, [f"data.root={tiny_synthetic.parent}", "data.synthetic.ids=12",
                             "data.num_workers=0", "data.batch_size=8", "data.num_instances=2",
                             f"data.cache_dir={tmp_path / 'cache'}", "device=cpu", *overrides])
    data = build_train_data(cfg, [load_named(cfg.data, "synthetic")])
    data.sampler.set_epoch(2)
    return next(iter(data.loader))


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_device_path_gives_the_batches_of_the_worker_path(tiny_synthetic, tmp_path, cache):
    # the synthetic images are stored at 128x64: no resize, so both paths see equal pixels
    ref = _first_batch(tiny_synthetic, tmp_path, "data.height=128", "data.width=64")
    got = _first_batch(tiny_synthetic, tmp_path, "data.height=128", "data.width=64",
                       f"data.cache={cache}", "data.augment_on=device")
    assert torch.allclose(got[0], ref[0], atol=1e-6, rtol=0)
    for a, b in zip(got[1:], ref[1:], strict=True):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_cached_resize_differs_by_rounding_only(tiny_synthetic, tmp_path):
    # 128x64 to 96x48: less than twice, so no reduced-scale decoding, only the rounding
    ref = _first_batch(tiny_synthetic, tmp_path, "data.height=96", "data.width=48")
    got = _first_batch(tiny_synthetic, tmp_path, "data.height=96", "data.width=48",
                       "data.cache=memory", "data.augment_on=device")
    # half a grey level before normalisation, divided by the smallest std (0.224)
    assert (got[0] - ref[0]).abs().max() <= 0.5 / 255 / 0.224 + 1e-6
