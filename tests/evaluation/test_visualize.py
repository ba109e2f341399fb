"""Picture functions write valid PNG / HTML files with the right content."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from reidlab.evaluation import cmc_figure, plot_cmc, write_rank_grids
from reidlab.evaluation.visualize import GREEN, RED


def test_import_does_not_load_matplotlib() -> None:
    import subprocess

    code = "import sys, reidlab.evaluation; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plot_cmc_writes_png(tmp_path) -> None:
    curves = {"plain": np.linspace(0.5, 1.0, 50), "re-ranked": np.linspace(0.6, 1.0, 50)}
    path = plot_cmc(curves, tmp_path / "plots" / "cmc.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100
    single = plot_cmc(np.array([0.3, 0.6, 0.9]), tmp_path / "one.png")
    assert single.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cmc_figure_has_one_line_per_curve() -> None:
    fig = cmc_figure({"a": np.ones(5), "b": np.zeros(5)})
    assert len(fig.axes[0].lines) == 2
    with pytest.raises(ValueError, match="CMC curve"):
        cmc_figure(np.zeros((2, 2)))


def make_images(tmp_path, n: int, prefix: str) -> list[str]:
    paths = []
    for i in range(n):
        p = tmp_path / f"{prefix}{i}.jpg"
        Image.new("RGB", (32, 64), (10 * i % 255, 100, 150)).save(p, "JPEG")
        paths.append(str(p))
    return paths


def test_write_rank_grids(tmp_path) -> None:
    q_paths, g_paths = make_images(tmp_path, 5, "q"), make_images(tmp_path, 14, "g")
    q_pids, q_cams = np.array([1, 2, 3, 4, 5]), np.zeros(5, dtype=int)
    g_pids = np.array([1, 1, -1, 2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9])
    g_cams = np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    # query 0's list starts with g0 (same pid and camera) and g2 (junk): both skipped, so
    # the shown list is g1 (correct), g3, g4, ... (wrong)
    order = np.array([0, 2, 1] + list(range(3, 14)))
    topk_indices = np.tile(order, (5, 1))
    html = write_rank_grids(
        q_paths, q_pids, q_cams, g_paths, g_pids, g_cams, topk_indices, tmp_path / "out", num=3
    )
    text = html.read_text()
    assert text.count("<img ") == 3
    pngs = sorted((tmp_path / "out" / "grids").glob("*.png"))
    assert len(pngs) == 3 and "query_000000.png" in pngs[0].name
    with Image.open(pngs[0]) as im:
        grid = im.convert("RGB")
        tile_w = 64 + 2 * 4
        assert grid.size[0] == 11 * (tile_w + 4) + 8  # query + top-10
        first_x = tile_w + 8  # the rank-1 tile's border
        assert grid.getpixel((first_x + 1, 1)) == GREEN
        assert grid.getpixel((first_x + tile_w + 4 + 1, 1)) == RED


def test_write_rank_grids_checks_shapes(tmp_path) -> None:
    with pytest.raises(ValueError, match="topk_indices"):
        write_rank_grids(["a"], [1], [0], ["b"], [1], [1], np.zeros((2, 1), int), tmp_path)
