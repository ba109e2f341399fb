"""The search result page in a real headless browser (Chromium): the thumbnails decode and
show, and the match / non-match borders are drawn in their colours where they belong."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reidlab.inference.page import COLOURS, THUMB_HEIGHT, write_page
from reidlab.inference.search import Match, QueryResult

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])


def count_near(shot: np.ndarray, colour: np.ndarray, tol: int = 24) -> int:
    return int((np.abs(shot.astype(int) - colour).max(axis=2) <= tol).sum())


@pytest.mark.slow
def test_page_renders_in_chromium(tmp_path):
    browser = find_browser()
    if browser is None:
        pytest.skip("no Chromium or Chrome found (apt-get install chromium)")
    colours = {"query": (0, 0, 255), "same": (255, 220, 0), "other": (160, 0, 200)}
    paths = {}
    for name, colour in colours.items():
        paths[name] = str(tmp_path / f"{name}.png")
        Image.new("RGB", (32, 64), colour).save(paths[name])
    result = QueryResult(paths["query"], 4, [Match(1, paths["same"], 0.0, 4),
                                             Match(2, paths["other"], 0.8123, 9)])
    page = write_page([result], tmp_path / "page.html")
    shot_file = tmp_path / "shot.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--screenshot={shot_file}", "--window-size=800,400", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot_file.is_file(), proc.stderr[-2000:]
    shot = np.array(Image.open(shot_file).convert("RGB"))
    # each thumbnail is 64 px wide at 128 px high: its own colour fills about 8,192 pixels
    area = THUMB_HEIGHT * THUMB_HEIGHT // 2
    for name, colour in colours.items():
        assert count_near(shot, np.array(colour)) > 0.8 * area, name
    # a 5 px border around a 64 x 128 thumbnail: 2 * 5 * (74 + 128) = 2,020 pixels
    green, red = count_near(shot, rgb(COLOURS[True])), count_near(shot, rgb(COLOURS[False]))
    assert 1500 < green < 2600 and 1500 < red < 2600
    # the green-bordered thumbnail is left of the red one, both right of the query
    cols = {k: np.flatnonzero((np.abs(shot.astype(int) - c).max(axis=2) <= 24).any(axis=0))
            for k, c in (("query", np.array(colours["query"])), ("green", rgb(COLOURS[True])),
                         ("red", rgb(COLOURS[False])))}
    assert cols["query"].max() < cols["green"].min() < cols["green"].max() < cols["red"].min()
    text = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True,
                          timeout=120).stdout
    assert "#2: 0.8123, pid 9" in text and "query (pid 4)" in text
    assert Path(page).stat().st_size < 200_000
