"""Pictures of results: CMC curves (matplotlib, Agg) and ranked-list grids (Pillow) in HTML.

matplotlib is imported inside the functions, so importing :mod:`reidlab.evaluation` stays
light and never touches a display.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

GREEN, RED, BLUE = (0, 170, 0), (220, 0, 0), (40, 90, 220)


def _curves(cmc: dict[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    curves = cmc if isinstance(cmc, dict) else {"CMC": cmc}
    out = {}
    for name, c in curves.items():
        arr = np.asarray(c, dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"CMC curve {name!r}: expected a non-empty 1-D array, got {arr.shape}")
        out[name] = arr
    return out


def cmc_figure(cmc: dict[str, np.ndarray] | np.ndarray, title: str = "CMC") -> Figure:
    """A matplotlib Figure of one or several CMC curves (rank 1..len, in percent).

    Args:
        cmc: one curve, or ``{label: curve}`` (e.g. one per test set or with/without
            re-ranking); each curve holds fractions, as :attr:`RankResult.cmc`.
        title: figure title.

    Returns:
        A Figure not registered with pyplot (no global state; pass it to
        ``SummaryWriter.add_figure`` or save it).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in _curves(cmc).items():
        ranks = np.arange(1, len(curve) + 1)
        ax.plot(ranks, 100 * curve, marker="." if len(curve) <= 50 else None, label=name)
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_title(title)
    ax.set_ylim(0, 100.5)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def plot_cmc(cmc: dict[str, np.ndarray] | np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Save the CMC curve(s) of :func:`cmc_figure` as a PNG at ``path``; return the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    cmc_figure(cmc).savefig(out, format="png")
    return out


def _tile(path: str, size: tuple[int, int], color: tuple[int, int, int], border: int):
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            img = im.convert("RGB").resize(size)
    except OSError as err:
        raise OSError(f"cannot read image {path!r} for the rank grid: {err}") from err
    return ImageOps.expand(img, border=border, fill=color)


def rank_grid(
    query_path: str,
    gallery_paths: Sequence[str],
    correct: Sequence[bool],
    size: tuple[int, int] = (64, 128),
    border: int = 4,
    gap: int = 8,
):
    """One row of tiles: the query (blue border) then its ranked gallery images, green when
    the identity is right and red when wrong, with the rank printed under each. Returns a
    PIL image."""
    from PIL import Image, ImageDraw

    w, h = size[0] + 2 * border, size[1] + 2 * border
    text_h = 14
    grid = Image.new("RGB", ((len(gallery_paths) + 1) * (w + 4) + gap, h + text_h), "white")
    draw = ImageDraw.Draw(grid)
    grid.paste(_tile(query_path, size, BLUE, border), (0, 0))
    draw.text((2, h + 1), "query", fill=(0, 0, 0))
    for r, (p, ok) in enumerate(zip(gallery_paths, correct, strict=True)):
        x = w + gap + r * (w + 4)
        grid.paste(_tile(p, size, GREEN if ok else RED, border), (x, 0))
        draw.text((x + 2, h + 1), str(r + 1), fill=(0, 0, 0))
    return grid


def write_rank_grids(
    query_paths: Sequence[str],
    query_pids: Sequence[int] | np.ndarray,
    query_camids: Sequence[int] | np.ndarray,
    gallery_paths: Sequence[str],
    gallery_pids: Sequence[int] | np.ndarray,
    gallery_camids: Sequence[int] | np.ndarray,
    topk_indices: np.ndarray,
    out_dir: str | os.PathLike[str],
    num: int = 10,
    *,
    top: int = 10,
    queries: Sequence[int] | None = None,
) -> Path:
    """PNG grids of queries and their top-ranked gallery images, and an HTML page of them.

    Gallery images the Market-1501 protocol excludes for a query (junk pid -1, same pid
    and same camera) and padding (-1) are skipped, so what is shown is the ranking that
    :func:`~reidlab.evaluation.rank` scores. Ask :func:`~reidlab.evaluation.topk` with the
    labels (already filtered) or for a few more than ``top`` neighbours.

    Args:
        query_paths, query_pids, query_camids: per query image.
        gallery_paths, gallery_pids, gallery_camids: per gallery image.
        topk_indices: (Q, k) gallery indices, nearest first, from :func:`topk`.
        out_dir: folder for ``index.html`` and ``grids/*.png`` (created).
        num: queries shown, spread evenly over the query list.
        top: gallery images per query.
        queries: explicit query indices to show (overrides ``num``).

    Returns:
        Path of the HTML page.
    """
    q_pids, q_cams = np.asarray(query_pids), np.asarray(query_camids)
    g_pids, g_cams = np.asarray(gallery_pids), np.asarray(gallery_camids)
    idx = np.asarray(topk_indices)
    if idx.ndim != 2 or idx.shape[0] != len(query_paths):
        raise ValueError(f"topk_indices: expected shape ({len(query_paths)}, k), got {idx.shape}")
    if not (len(query_paths) == len(q_pids) == len(q_cams)):
        raise ValueError("query_paths, query_pids and query_camids differ in length")
    if not (len(gallery_paths) == len(g_pids) == len(g_cams)):
        raise ValueError("gallery_paths, gallery_pids and gallery_camids differ in length")
    if queries is None:
        count = min(num, len(query_paths))
        chosen = np.unique(np.linspace(0, len(query_paths) - 1, count).round().astype(int))
    else:
        chosen = np.asarray(queries, dtype=np.int64)
    out = Path(out_dir)
    (out / "grids").mkdir(parents=True, exist_ok=True)
    items = []
    for q in chosen:
        row = idx[q][idx[q] >= 0]
        allowed = (g_pids[row] != -1) & ~((g_pids[row] == q_pids[q]) & (g_cams[row] == q_cams[q]))
        shown = row[allowed][:top]
        correct = g_pids[shown] == q_pids[q]
        name = f"grids/query_{q:06d}.png"
        rank_grid(query_paths[q], [gallery_paths[j] for j in shown], correct).save(out / name)
        caption = html.escape(
            f"query {q}: pid {q_pids[q]}, camera {q_cams[q]}, "
            f"{os.path.basename(query_paths[q])}; {int(correct.sum())}/{len(shown)} correct"
        )
        items.append(f'<figure><img src="{name}"><figcaption>{caption}</figcaption></figure>')
    page = out / "index.html"
    page.write_text(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>reidlab ranked lists</title>'
        "<style>body{font-family:sans-serif} figure{margin:0 0 16px 0}</style></head><body>\n"
        f"<h1>Ranked lists ({len(items)} queries, top {top})</h1>\n"
        "<p>Blue: query. Green: correct identity. Red: wrong identity. Junk and same-camera "
        "images of the query's identity are excluded, as in evaluation.</p>\n"
        + "\n".join(items)
        + "\n</body></html>\n",
        encoding="utf-8",
    )
    return page
