"""The synthetic dataset: Market-1501 layout, split invariants, determinism, domains, reuse."""

from __future__ import annotations

import io
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab.data.synthetic import Difficulty, generate, raw_pixel_baseline
from reidlab.data.synthetic.domains import domain_style
from reidlab.data.synthetic.identity import sample_identity
from reidlab.data.synthetic.scene import render

NAME = re.compile(r"^(-1|\d{4})_c([1-6])s([1-6])_(\d{6})_(\d{2})\.jpg$")
SPLITS = ("bounding_box_train", "query", "bounding_box_test")
NUM_IDS = 8


def _records(root: Path, split: str) -> list[tuple[str, int, int]]:
    out = []
    for path in sorted((root / split).iterdir()):
        m = NAME.match(path.name)
        assert m is not None, f"bad file name {path.name}"
        out.append((path.name, int(m.group(1)), int(m.group(2))))
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {f"{s}/{p.name}": p.read_bytes() for s in SPLITS for p in sorted((root / s).iterdir())}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("a") / "synth", num_ids=NUM_IDS, seed=3, progress=False)


@pytest.fixture(scope="module")
def tiny_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(
        tmp_path_factory.mktemp("b") / "synth", num_ids=NUM_IDS, seed=3, domain="b", progress=False
    )


def test_layout_and_images(tiny: Path) -> None:
    assert sorted(p.name for p in tiny.iterdir()) == sorted([*SPLITS, "synthetic.json"])
    for split in SPLITS:
        names = [r[0] for r in _records(tiny, split)]
        assert names, f"{split} is empty"
        with Image.open(tiny / split / names[0]) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (64, 128))


@pytest.mark.parametrize("domain", ["a", "b", "zebra"])
def test_split_invariants(tmp_path: Path, domain: str) -> None:
    root = generate(tmp_path, num_ids=NUM_IDS, seed=1, domain=domain, progress=False)
    train, query, gallery = (_records(root, s) for s in SPLITS)
    train_ids = {pid for _, pid, _ in train}
    test_ids = {pid for _, pid, _ in query + gallery if pid > 0}
    assert len(train_ids) == NUM_IDS // 2 and len(test_ids) == NUM_IDS - NUM_IDS // 2
    assert not train_ids & test_ids
    assert train_ids | test_ids == set(range(1, NUM_IDS + 1))
    assert {pid for _, pid, _ in query} == test_ids
    # junk and distractors only in the gallery
    assert min(pid for _, pid, _ in train + query) > 0
    assert {-1, 0} <= {pid for _, pid, _ in gallery}
    cams: dict[int, set[int]] = defaultdict(set)
    for _, pid, cam in train + query + gallery:
        cams[pid].add(cam)
    assert all(len(cams[pid]) >= 2 for pid in train_ids | test_ids)
    assert len({(pid, cam) for _, pid, cam in query}) == len(query)  # one per (id, camera)
    for name, pid, cam in query:
        assert any(g_pid == pid and g_cam != cam for _, g_pid, g_cam in gallery), name
    names = [n for n, _, _ in train + query + gallery]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("domain", ["a", "b", "zebra"])
def test_render_survives_extreme_knobs(domain: str) -> None:
    """Every junk mode, occluder and passer-by, at the edges of the placement ranges."""
    style = domain_style(domain)
    diff = Difficulty(
        occlusion_prob=1.0,
        passer_by_prob=1.0,
        blur_prob=0.5,
        lowres_prob=0.5,
        scale=(0.5, 1.0),
        shift=0.3,
        lean_deg=15.0,
    )
    for i in range(60):
        rng = np.random.default_rng(i)
        jpeg = render(rng, sample_identity(rng, style), style, i % 6, diff, junk=i % 2 == 0)
        with Image.open(io.BytesIO(jpeg)) as im:
            assert im.size == (64, 128)


def test_manifest_and_skip(tiny: Path) -> None:
    manifest = json.loads((tiny / "synthetic.json").read_text())
    assert (manifest["num_ids"], manifest["seed"], manifest["domain"]) == (NUM_IDS, 3, "a")
    assert manifest["complete"] is True and isinstance(manifest["version"], int)
    assert manifest["difficulty"]["jpeg_quality"] == list(Difficulty().jpeg_quality)
    # a matching folder is returned as is: a marked file is not rewritten
    victim = next((tiny / "query").iterdir())
    original = victim.read_bytes()
    victim.write_bytes(original + b"marker")
    try:
        assert generate(tiny, num_ids=NUM_IDS, seed=3, progress=False) == tiny
        assert victim.read_bytes().endswith(b"marker")
    finally:
        victim.write_bytes(original)


def test_regenerates_when_arguments_change(tmp_path: Path) -> None:
    generate(tmp_path, num_ids=4, seed=0, progress=False)
    first = _files(tmp_path)
    generate(tmp_path, num_ids=4, seed=0, progress=False, difficulty=Difficulty(occlusion_prob=1.0))
    assert (
        json.loads((tmp_path / "synthetic.json").read_text())["difficulty"]["occlusion_prob"] == 1.0
    )
    assert _files(tmp_path) != first
    generate(tmp_path, num_ids=4, seed=0, progress=False)
    assert _files(tmp_path) == first  # no stale files left from the other generation


def test_refuses_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "query").mkdir()
    (tmp_path / "query" / "0001_c1s1_000001_01.jpg").write_bytes(b"not ours")
    with pytest.raises(FileExistsError, match="synthetic.json"):
        generate(tmp_path, num_ids=4, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"num_ids": 1}, "num_ids"), ({"seed": -1}, "seed"), ({"domain": ""}, "domain")],
)
def test_rejects_bad_arguments(tmp_path: Path, kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate(tmp_path, progress=False, **kwargs)  # type: ignore[arg-type]


def test_deterministic_per_seed(tiny: Path, tmp_path: Path) -> None:
    again = generate(tmp_path / "same", num_ids=NUM_IDS, seed=3, progress=False)
    assert _files(again) == _files(tiny)
    other = generate(tmp_path / "other", num_ids=NUM_IDS, seed=4, progress=False)
    assert _files(other) != _files(tiny)


def _colour_stats(root: Path) -> np.ndarray:
    """Mean and standard deviation of R, G, B and of the per-pixel saturation."""
    pix = np.concatenate(
        [
            np.asarray(Image.open(p), dtype=np.float32).reshape(-1, 3)
            for s in SPLITS
            for p in sorted((root / s).iterdir())
        ]
    )
    sat = pix.max(1) - pix.min(1)
    return np.concatenate([pix.mean(0), pix.std(0), [sat.mean()]])


def test_domain_b_differs(tiny: Path, tiny_b: Path) -> None:
    a, b = _colour_stats(tiny), _colour_stats(tiny_b)
    assert np.abs(a - b).max() > 15.0, (a, b)
    # and the domain tables themselves: other cameras, other clothing palettes
    sa, sb = domain_style("a"), domain_style("b")
    assert {c.background for c in sa.cameras}.isdisjoint({c.background for c in sb.cameras})
    assert sa.upper != sb.upper and sa.cameras != sb.cameras


def test_hashed_domains_are_stable_and_distinct() -> None:
    assert domain_style("zebra") == domain_style("zebra")
    assert domain_style("zebra").cameras != domain_style("okapi").cameras
    with pytest.raises(ValueError, match="domain"):
        domain_style("")


def _brute_force_baseline(root: Path, size: tuple[int, int]) -> tuple[float, float]:
    """The raw-pixel baseline written plainly: full sorts, Market-1501 exclusions."""

    def load(split: str) -> tuple[np.ndarray, list[int], list[int]]:
        recs = _records(root, split)
        x = np.stack(
            [
                np.asarray(
                    Image.open(root / split / n).resize(
                        (size[1], size[0]), Image.Resampling.BILINEAR
                    ),
                    dtype=np.float64,
                ).ravel()
                for n, _, _ in recs
            ]
        )
        return (
            x / np.linalg.norm(x, axis=1, keepdims=True),
            [r[1] for r in recs],
            [r[2] for r in recs],
        )

    q, q_pids, q_cams = load("query")
    g, g_pids, g_cams = load("bounding_box_test")
    aps, top1 = [], []
    for i in range(len(q)):
        ranked = [
            g_pids[j] == q_pids[i]
            for j in np.argsort(1.0 - g @ q[i], kind="stable")
            if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])
        ]
        hits = [k + 1 for k, hit in enumerate(ranked) if hit]
        if hits:
            aps.append(np.mean([(n + 1) / k for n, k in enumerate(hits)]))
            top1.append(float(ranked[0]))
    return float(np.mean(aps)), float(np.mean(top1))


def test_raw_pixel_baseline_matches_plain_reference(tiny: Path) -> None:
    result = raw_pixel_baseline(tiny, size=(16, 8))
    assert set(result) == {"mAP", "rank1"}
    m_ap, rank1 = _brute_force_baseline(tiny, (16, 8))
    assert result["mAP"] == pytest.approx(m_ap, abs=1e-6)
    assert result["rank1"] == pytest.approx(rank1)


def test_a_generation_folder_made_with_other_settings_is_refused(tiny_synthetic):
    from reidlab.data.datasets import load_dataset

    before = sorted(p.name for p in (tiny_synthetic / "bounding_box_train").iterdir())
    with pytest.raises(ValueError, match=r"domain 'a' there, 'b' asked"):
        load_dataset("synthetic-b", tiny_synthetic, ids=12, seed=0)
    with pytest.raises(ValueError, match=r"num_ids 12 there, 20 asked"):
        load_dataset("synthetic", tiny_synthetic, ids=20, seed=0, domain="a")
    assert sorted(p.name for p in (tiny_synthetic / "bounding_box_train").iterdir()) == before
    assert load_dataset("synthetic-a", tiny_synthetic, ids=12, seed=0).train
