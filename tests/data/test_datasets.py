"""Dataset parsers on miniature copies of each official layout, counted by hand."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from reidlab.data import synthetic as synthetic_generator
from reidlab.data.datasets import (
    DatasetFormatError,
    DatasetLayoutError,
    combine_train,
    dataset_info,
    format_info_table,
    load_dataset,
)
from reidlab.data.records import ReIDDataset, split_stats
from reidlab.registry import DATASETS


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 8), (120, 40, 200)).save(buf, format="JPEG")
    return buf.getvalue()


JPEG = _jpeg_bytes()


def _write(folder: Path, names: list[str]) -> None:
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"not an image" if name.endswith(".db") else JPEG)


# --- Market-1501: pid, camera 1-6, sequence, frame, box; -1 junk, 0000 distractor.
MARKET = {
    "bounding_box_train": [
        "0002_c1s1_000451_03.jpg",
        "0002_c2s1_000551_01.jpg",
        "0007_c3s3_077419_03.jpg",
        "0010_c6s4_002452_02.jpg",
        "0010_c1s1_002301_01.jpg",
        "Thumbs.db",
    ],
    "query": [
        "0001_c1s1_001051_00.jpg",
        "0001_c2s1_000301_00.jpg",
        "0003_c5s1_000151_00.jpg",
        "-1_c1s1_000001_00.jpg",  # junk and distractor boxes never act as queries
        "0000_c3s1_000002_00.jpg",
    ],
    "bounding_box_test": [
        "0001_c3s1_001051_01.jpg",
        "0001_c4s2_000301_02.jpg",
        "0003_c6s1_000151_01.jpg",
        "0000_c1s1_000151_01.jpg",
        "0000_c2s1_000152_01.jpg",
        "-1_c1s1_000401_03.jpg",
        "Thumbs.db",
    ],
}
# (ids, images, cameras) of split_stats: the gallery counts pids 1, 3, 0 and -1.
MARKET_STATS = {"train": (3, 5, 4), "query": (2, 3, 3), "gallery": (4, 6, 5)}

# --- DukeMTMC-reID: pid, camera 1-8, frame.
DUKE = {
    "bounding_box_train": [
        "0001_c2_f0046182.jpg",
        "0001_c5_f0051341.jpg",
        "0005_c8_f0001234.jpg",
    ],
    "query": ["0003_c1_f0044158.jpg"],
    "bounding_box_test": [
        "0003_c2_f0000001.jpg",
        "0003_c7_f0000002.jpg",
        "0042_c8_f0000003.jpg",
    ],
}
DUKE_STATS = {"train": (2, 3, 3), "query": (1, 1, 1), "gallery": (2, 3, 3)}

# --- MSMT17: list files of 'path pid'; camera = third '_' field (1-15); test pids from 0.
MSMT_LISTS = {
    "list_train.txt": [
        ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
        ("0000/0000_001_07_0303morning_0036_1.jpg", 0),
        ("0001/0001_000_15_0303noon_0100_0.jpg", 1),
    ],
    "list_val.txt": [("0002/0002_000_03_0304morning_0012_0.jpg", 2)],
    "list_query.txt": [
        ("0000/0000_000_02_0303morning_0001_0.jpg", 0),
        ("0001/0001_000_11_0303afternoon_0002_0.jpg", 1),
    ],
    "list_gallery.txt": [
        ("0000/0000_001_05_0303morning_0003_0.jpg", 0),
        ("0000/0000_002_02_0304noon_0004_0.jpg", 0),
        ("0001/0001_001_12_0304noon_0005_0.jpg", 1),
    ],
}
MSMT_STATS = {"train": (3, 4, 4), "query": (2, 2, 2), "gallery": (2, 3, 3)}
MSMT_DIRS = {"V1": ("train", "test"), "V2": ("mask_train_v2", "mask_test_v2")}


def make_market(folder: Path, layout: dict[str, list[str]] = MARKET) -> Path:
    for split, names in layout.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        _write(folder / split, names)
    return folder


def make_msmt(folder: Path, version: str = "V1") -> Path:
    train_dir, test_dir = MSMT_DIRS[version]
    for list_name, entries in MSMT_LISTS.items():
        image_dir = folder / (
            train_dir if list_name in ("list_train.txt", "list_val.txt") else test_dir
        )
        _write(image_dir, [rel for rel, _ in entries])
        lines = [f"{rel} {pid}" for rel, pid in entries]
        (folder / list_name).write_text("\n".join(lines) + "\n")
    return folder


def fake_generate(
    out_dir: Path, *, num_ids: int = 160, seed: int = 0, domain: str = "a", progress: bool = True
) -> Path:
    """Stands in for the renderer: a Market-layout folder with a manifest."""
    out_dir = Path(out_dir)
    if not (out_dir / "synthetic.json").is_file():
        make_market(out_dir)
        (out_dir / "synthetic.json").write_text(
            f'{{"num_ids": {num_ids}, "seed": {seed}, "domain": "{domain}"}}')
    return out_dir


# One miniature per registered dataset: (maker(folder), builder options, expected stats,
# official folder name). A newly registered dataset fails test_every_dataset_has_a_miniature.
MINIATURES = {
    "market1501": (make_market, {}, MARKET_STATS, "Market-1501-v15.09.15"),
    "dukemtmc": (lambda f: make_market(f, DUKE), {}, DUKE_STATS, "DukeMTMC-reID"),
    "msmt17": (make_msmt, {}, MSMT_STATS, "MSMT17_V1"),
    "synthetic": (lambda f: fake_generate(f, domain="b"), {"domain": "b"}, MARKET_STATS, None),
    "synthetic-a": (fake_generate, {}, MARKET_STATS, None),
    "synthetic-b": (lambda f: fake_generate(f, domain="b"), {}, MARKET_STATS, None),
    "synthetic-c": (lambda f: fake_generate(f, domain="c"), {}, MARKET_STATS, None),
}


@pytest.fixture(autouse=True)
def _no_renderer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic_generator, "generate", fake_generate, raising=False)


def test_every_dataset_has_a_miniature() -> None:
    # folder and csv are the user's own layouts, tested on generated trees in test_custom.py
    assert set(DATASETS.names()) == set(MINIATURES) | {"folder", "csv"}


@pytest.mark.parametrize("domain", ["a", "b", "c"])
def test_named_synthetic_domains_render_their_domain(domain: str, tmp_path: Path) -> None:
    dataset = load_dataset(f"synthetic-{domain}", tmp_path, ids=24, seed=3)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert folder.name == f"synthetic-{domain}-24ids-seed3"
    assert f'"domain": "{domain}"' in (folder / "synthetic.json").read_text()
    assert dataset.name == f"synthetic-{domain}"


@pytest.mark.parametrize("name", sorted(MINIATURES))
def test_split_counts(name: str, tmp_path: Path) -> None:
    maker, options, expected, _ = MINIATURES[name]
    folder = tmp_path / "ds"
    maker(folder)
    dataset = load_dataset(name, folder, **options)
    for split, (ids, images, cameras) in expected.items():
        stats = split_stats(getattr(dataset, split))
        assert stats == {"ids": ids, "images": images, "cameras": cameras}, split
    # Train labels are 0..N-1; every camid is 0-based; every path exists.
    assert sorted({r.pid for r in dataset.train}) == list(range(dataset.num_train_ids))
    records = dataset.train + dataset.query + dataset.gallery
    assert min(r.camid for r in records) >= 0
    assert all(Path(r.path).is_file() and Path(r.path).is_absolute() for r in records)
    assert {r.domain for r in records} == {dataset.name}


@pytest.mark.parametrize("name", sorted(n for n, m in MINIATURES.items() if m[3]))
def test_root_may_be_a_parent(name: str, tmp_path: Path) -> None:
    maker, options, expected, official = MINIATURES[name]
    maker(tmp_path / official)
    dataset = load_dataset(name, tmp_path, **options)
    assert len(dataset.train) == expected["train"][1]


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("market1501", "Market-1501"),
        ("market1501", "market1501"),
        ("market1501", "market1501/Market-1501-v15.09.15"),  # nested, as some toolkits keep it
        ("dukemtmc", "dukemtmc-reid"),
        ("dukemtmc", "dukemtmc/DukeMTMC-reID"),
        ("msmt17", "msmt17/MSMT17_V2"),
    ],
)
def test_root_resolution_names(name: str, folder: str, tmp_path: Path) -> None:
    maker = MINIATURES[name][0]
    maker(tmp_path / folder)
    assert load_dataset(name, tmp_path).train


def test_market_relabel_camid_junk_and_distractors(tmp_path: Path) -> None:
    dataset = load_dataset("market1501", make_market(tmp_path))
    assert dataset.name == "market1501"
    by_name = {Path(r.path).name: r for r in dataset.train}
    # Original pids 2, 7, 10 become 0, 1, 2 in sorted order.
    assert by_name["0002_c2s1_000551_01.jpg"].pid == 0
    assert by_name["0007_c3s3_077419_03.jpg"].pid == 1
    assert by_name["0010_c6s4_002452_02.jpg"].pid == 2
    assert by_name["0010_c6s4_002452_02.jpg"].camid == 5  # camera 6
    assert by_name["0002_c1s1_000451_03.jpg"].camid == 0  # camera 1
    assert {r.pid for r in dataset.query} == {1, 3}  # original pids, junk/distractor dropped
    assert sorted(r.pid for r in dataset.gallery) == [-1, 0, 0, 1, 1, 3]


def test_market_train_drops_junk_and_distractors(tmp_path: Path) -> None:
    layout = dict(MARKET)
    layout["bounding_box_train"] = [
        *MARKET["bounding_box_train"],
        "-1_c1s1_000001_00.jpg",
        "0000_c2s1_000002_00.jpg",
    ]
    dataset = load_dataset("market1501", make_market(tmp_path, layout))
    assert split_stats(dataset.train) == {"ids": 3, "images": 5, "cameras": 4}


def test_msmt17_pid0_is_an_identity(tmp_path: Path) -> None:
    dataset = load_dataset("msmt17", make_msmt(tmp_path))
    assert dataset.name == "msmt17"
    assert [r.pid for r in dataset.query] == [0, 1]
    by_name = {Path(r.path).name: r for r in dataset.train}
    assert by_name["0001_000_15_0303noon_0100_0.jpg"].camid == 14  # camera 15
    assert by_name["0002_000_03_0304morning_0012_0.jpg"].pid == 2  # list_val joins train


@pytest.mark.parametrize("version", ["V1", "V2"])
def test_msmt17_versions(version: str, tmp_path: Path) -> None:
    make_msmt(tmp_path / f"MSMT17_{version}", version)
    dataset = load_dataset("msmt17", tmp_path)
    train_dir = MSMT_DIRS[version][0]
    assert all(f"/{train_dir}/" in r.path for r in dataset.train)
    assert split_stats(dataset.gallery) == {"ids": 2, "images": 3, "cameras": 3}


def test_msmt17_both_versions_need_a_choice(tmp_path: Path) -> None:
    make_msmt(tmp_path, "V1")
    make_msmt(tmp_path, "V2")
    with pytest.raises(DatasetLayoutError, match="version="):
        load_dataset("msmt17", tmp_path)
    dataset = load_dataset("msmt17", tmp_path, version="V2")
    assert all("/mask_test_v2/" in r.path for r in dataset.query)


def test_msmt17_malformed_list_line(tmp_path: Path) -> None:
    make_msmt(tmp_path)
    (tmp_path / "list_query.txt").write_text("0000/0000_000_01_0303morning_0001_0.jpg\n")
    with pytest.raises(DatasetFormatError, match=r"list_query\.txt:1"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_camera_out_of_range(tmp_path: Path) -> None:
    make_msmt(tmp_path)
    (tmp_path / "list_query.txt").write_text("0000/0000_000_16_0303morning_0001_0.jpg 0\n")
    with pytest.raises(DatasetFormatError, match="camera 16"):
        load_dataset("msmt17", tmp_path)


def test_wrong_root_names_root_and_missing_folder(tmp_path: Path) -> None:
    make_market(tmp_path / "Market-1501")
    for path in (tmp_path / "Market-1501" / "query").iterdir():
        path.unlink()
    (tmp_path / "Market-1501" / "query").rmdir()
    with pytest.raises(DatasetLayoutError) as info:
        load_dataset("market1501", tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message
    assert "query/" in message
    assert "bounding_box_train/" in message  # the expected layout


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        load_dataset("dukemtmc", tmp_path / "nowhere")


def test_msmt17_wrong_root_names_list_files(tmp_path: Path) -> None:
    make_msmt(tmp_path, "V2")
    (tmp_path / "list_val.txt").unlink()
    with pytest.raises(DatasetLayoutError, match=r"list_val\.txt \(V2\)"):
        load_dataset("msmt17", tmp_path)


@pytest.mark.parametrize(
    ("name", "bad", "match"),
    [
        ("market1501", "0002_c1_000451_03.jpg", "does not follow"),
        ("market1501", "0002_c7s1_000451_03.jpg", "camera 7"),
        ("market1501", "1502_c1s1_000451_03.jpg", "pid 1502"),
        ("dukemtmc", "0001_c9_f0046182.jpg", "camera 9"),
        ("dukemtmc", "person.jpg", "does not follow"),
    ],
)
def test_malformed_file_name_is_named(name: str, bad: str, match: str, tmp_path: Path) -> None:
    MINIATURES[name][0](tmp_path)
    _write(tmp_path / "bounding_box_test", [bad])
    with pytest.raises(DatasetFormatError, match=match) as info:
        load_dataset(name, tmp_path)
    assert bad in str(info.value)


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    make_market(tmp_path, {**MARKET, "query": ["Thumbs.db"]})
    with pytest.raises(DatasetLayoutError, match="no .jpg"):
        load_dataset("market1501", tmp_path)


def test_unknown_dataset_suggests_nearest(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="market1501"):
        load_dataset("market1510", tmp_path)


def test_synthetic_generates_under_parent_and_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def recording(out_dir: Path, **kwargs: object) -> Path:
        calls.append((Path(out_dir), kwargs))
        return fake_generate(out_dir, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synthetic_generator, "generate", recording, raising=False)
    dataset = load_dataset("synthetic", tmp_path, ids=40, seed=3, domain="b")
    assert dataset.name == "synthetic-b"
    assert {r.domain for r in dataset.gallery} == {"synthetic-b"}
    folder = tmp_path / "synthetic-b-40ids-seed3"
    assert calls == [(folder, {"num_ids": 40, "seed": 3, "domain": "b"})]
    assert (tmp_path / "bounding_box_train").exists() is False  # never at the data root
    # A root that is itself a generation is used as is.
    load_dataset("synthetic", folder, ids=40, seed=3, domain="b")
    assert calls[-1][0] == folder


def test_dataset_info_and_table(tmp_path: Path) -> None:
    info = dataset_info("market1501", make_market(tmp_path))
    assert info == {
        "train": {"ids": 3, "images": 5, "cameras": 4, "junk": 0, "distractors": 0},
        "query": {"ids": 2, "images": 3, "cameras": 3, "junk": 0, "distractors": 0},
        "gallery": {"ids": 2, "images": 6, "cameras": 5, "junk": 1, "distractors": 2},
    }
    table = format_info_table(info).splitlines()
    assert table[0].split() == ["split", "ids", "images", "cameras", "distractors", "junk"]
    assert table[2].split() == ["train", "3", "5", "4", "0", "0"]
    assert table[4].split() == ["gallery", "2", "6", "5", "2", "1"]


def test_dataset_info_msmt17_counts_pid0(tmp_path: Path) -> None:
    info = dataset_info("msmt17", make_msmt(tmp_path))
    assert info["query"] == {"ids": 2, "images": 2, "cameras": 2, "junk": 0, "distractors": 0}
    assert "junk" not in format_info_table(info)


def test_combine_train_offsets(tmp_path: Path) -> None:
    market = load_dataset("market1501", make_market(tmp_path / "m"))  # 3 ids, camids 0-5
    duke = load_dataset("dukemtmc", make_market(tmp_path / "d", DUKE))  # 2 ids, camids 1-7
    records, offsets = combine_train([market, duke])
    assert offsets == [0, 3]
    assert len(records) == len(market.train) + len(duke.train)
    assert sorted({r.pid for r in records}) == [0, 1, 2, 3, 4]
    assert {r.pid for r in records if r.domain == "dukemtmc"} == {3, 4}
    # Cameras: Market's 0..5 stay; Duke's camids 1, 4, 7 move past them by 6.
    assert {r.camid for r in records if r.domain == "dukemtmc"} == {7, 10, 13}
    assert {r.camid for r in records if r.domain == "market1501"} == {0, 1, 2, 5}
    assert records[: len(market.train)] == market.train


def test_combine_train_rejects_empty() -> None:
    with pytest.raises(ValueError, match="no train images"):
        combine_train([ReIDDataset(name="empty")])
