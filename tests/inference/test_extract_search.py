"""reidlab extract and search: image listing, features against a plain reference, the
round trip (a gallery image finds itself first, at distance 0), the CLI and the page."""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reidlab.cli import main
from reidlab.config import load_config
from reidlab.data.check import DataCheckError
from reidlab.data.loader import decode_image
from reidlab.inference.extract import extract, list_images, load_features
from reidlab.inference.page import render_page
from reidlab.inference.search import search
from reidlab.models.build import build_model

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


def plain_features(paths: list[str], weights: Path, cfg_path: Path) -> torch.Tensor:
    """The test feature written out step by step: decode, to [0, 1], antialiased bilinear
    resize to 64 x 32, ImageNet normalisation, backbone + pooling + BNNeck in eval mode,
    L2 normalisation."""
    model = build_model(load_config(cfg_path).model, 0)
    model.load_state_dict(torch.load(weights, weights_only=True), strict=False)
    model.eval()
    rows = []
    for p in paths:
        x = decode_image(p).float()[None] / 255
        x = F.interpolate(x, size=(64, 32), mode="bilinear", antialias=True, align_corners=False)
        x = (x[0] - MEAN) / STD
        with torch.no_grad():
            rows.append(model.neck(model.pool(model.backbone(x[None])))[0])
    return F.normalize(torch.stack(rows), dim=1)


def test_list_images_reads_labels_only_from_the_folder_layout(tiny_folder, tmp_path):
    labelled = list_images(tiny_folder / "gallery")
    assert labelled.labelled
    first = labelled.records[0]
    assert first.pid == int(Path(first.path).parent.name)
    assert first.camid == int(Path(first.path).name.split("_")[0])
    flat = tmp_path / "flat"
    flat.mkdir()
    for r in labelled.records[:3]:
        shutil.copy(r.path, flat / Path(r.path).name)
    (flat / "notes.txt").write_text("skipped: not an image suffix")
    plain = list_images(flat)
    assert not plain.labelled and len(plain.records) == 3
    assert {r.pid for r in plain.records} == {-1}
    csv = tmp_path / "list.csv"
    csv.write_text("path,pid\n" + "".join(f"flat/{Path(r.path).name},{r.pid}\n"
                                          for r in labelled.records[:3]))
    listed = list_images(csv)
    assert not listed.labelled and [r.pid for r in listed.records] == [
        r.pid for r in labelled.records[:3]]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no .jpg"):
        list_images(tmp_path / "empty")


@pytest.fixture(scope="module")
def gallery(tiny_folder, tiny_config, tiny_weights, tmp_path_factory):
    """The tiny gallery's features, extracted once: (file, what extract returned)."""
    cfg = load_config(tiny_config, [f"model.weights={tiny_weights}"])
    out = tmp_path_factory.mktemp("features") / "g.safetensors"
    return out, extract(cfg, tiny_folder / "gallery", out, progress=False)


def test_extract_gives_the_test_feature(gallery, tiny_config, tiny_weights):
    out, written = gallery
    saved = load_features(out)
    assert saved.paths == written.paths and saved.feats.shape == (len(saved.paths), 256 * 2)
    assert saved.pids is not None and saved.camids is not None
    assert saved.pids.tolist() == [int(Path(p).parent.name) for p in saved.paths]
    assert saved.config.model.backbone == "resnet18" and saved.weights == str(tiny_weights)
    reference = plain_features(saved.paths[:5], tiny_weights, tiny_config)
    assert torch.allclose(saved.feats[:5], reference, atol=1e-5)
    assert torch.allclose(saved.feats.norm(dim=1), torch.ones(len(saved.paths)), atol=1e-5)


def test_round_trip_a_gallery_image_finds_itself_first(gallery):
    out, gallery = gallery
    probe = gallery.paths[7]
    results = search(out, probe, None, top=5, progress=False)  # config from the file
    assert len(results) == 1 and results[0].pid is None  # one loose image: no id
    best = results[0].matches
    assert best[0].path == probe and best[0].distance < 1e-5
    # The order is the brute-force squared Euclidean order of the saved features.
    g = gallery.feats.double().numpy()
    d = ((g[7][None] - g) ** 2).sum(1)
    assert [m.path for m in best] == [gallery.paths[i] for i in np.argsort(d, kind="stable")[:5]]
    assert np.allclose([m.distance for m in best], np.sort(d)[:5], atol=1e-5)


def test_search_with_labelled_queries_marks_matches(gallery, tiny_folder, tiny_config,
                                                    tiny_weights):
    out, _ = gallery  # extracted under test.metric=euclidean: the metric acts only on ranking
    cfg = load_config(tiny_config, [f"model.weights={tiny_weights}", "test.metric=cosine"])
    results = search(out, tiny_folder / "query", cfg, top=4, progress=False)
    assert len(results) == len(list((tiny_folder / "query").rglob("*.jpg")))
    for res in results:
        assert res.pid == int(Path(res.path).parent.name)
        for m in res.matches:
            assert m.pid == int(Path(m.path).parent.name)
            assert res.correct(m) == (m.pid == res.pid)
        dists = [m.distance for m in res.matches]
        assert dists == sorted(dists) and all(-1e-6 <= x <= 2 for x in dists)  # 1 - cos
        assert len(res.matches) == 4


def test_search_refuses_bad_queries_and_files(gallery, tiny_config, tiny_weights, tmp_path):
    cfg = load_config(tiny_config, [f"model.weights={tiny_weights}"])
    out, _ = gallery
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"")
    with pytest.raises(DataCheckError, match=f"{broken}: zero-byte file"):
        search(out, broken, cfg, progress=False)
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a safetensors file"):
        load_features(other)


class _Figures(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.classes: list[str] = []
        self.images = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "figure":
            self.classes.append(a.get("class", ""))
        if tag == "img" and (a.get("src") or "").startswith("data:image/jpeg;base64,"):
            self.images += 1


def test_cli_extract_search_and_page(tiny_folder, tiny_config, tiny_weights, tmp_path, capsys):
    out, page = tmp_path / "g.safetensors", tmp_path / "page" / "result.html"
    assert main(["extract", str(tiny_config), f"model.weights={tiny_weights}", "--images",
                 str(tiny_folder / "gallery"), "--out", str(out)]) == 0
    assert "(with pids and camids) written to" in capsys.readouterr().out
    query = tiny_folder / "query"
    assert main(["search", "--gallery", str(out), "--query", str(query), "--top", "3",
                 "--html", str(page)]) == 0
    printed = capsys.readouterr().out
    num_q = len(list(query.rglob("*.jpg")))
    assert printed.count("query ") == num_q and f"page: {page}" in printed
    parsed = _Figures()
    parsed.feed(page.read_text())
    assert parsed.classes.count("query") == num_q and parsed.images == num_q * 4
    assert len(parsed.classes) == num_q * 4
    marks = [line.split()[1] for line in printed.splitlines() if line.startswith("    ")]
    assert parsed.classes.count("match") == marks.count("+")
    assert parsed.classes.count("miss") == marks.count("-")


def test_render_page_without_ids_uses_neutral_borders(tiny_folder):
    from reidlab.inference.search import Match, QueryResult

    paths = [str(p) for p in sorted((tiny_folder / "gallery").rglob("*.jpg"))[:3]]
    result = QueryResult(paths[0], None, [Match(1, paths[1], 0.5, 3), Match(2, paths[2], 0.7, 4)])
    parsed = _Figures()
    parsed.feed(render_page([result]))
    assert parsed.classes == ["query", "unknown", "unknown"]


def test_cli_search_overrides_the_stored_config(gallery, capsys):
    out, written = gallery
    probe = written.paths[3]
    assert main(["search", "--gallery", str(out), "--query", probe, "--top", "2",
                 "test.metric=cosine"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"query {probe}"
    rank, dist, path = lines[1].split()
    assert (rank, path) == ("1", probe) and abs(float(dist)) < 1e-4
    g = written.feats.double()
    # the second line is the cosine nearest other image: 1 - cos, computed here directly
    cos = 1 - (g @ g[3]) / (g.norm(dim=1) * g[3].norm())
    second = float(np.sort(cos.numpy())[1])
    assert abs(float(lines[2].split()[1]) - second) < 1e-4
