"""The search result page: one self-contained HTML file (``reidlab search --html``).

Each query is a row: the query image, then its ranked gallery images with rank and
distance. When both ids are known a match has a green border and a non-match a red one;
otherwise the border is grey. Thumbnails are embedded as base64 JPEG data, so the page
can be moved or mailed without the images.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from PIL import Image

from reidlab.inference.search import QueryResult

THUMB_HEIGHT = 128
#: Border colours of a match, a non-match and an unknown pair (also read by the tests).
COLOURS = {True: "#00b000", False: "#e00000", None: "#b0b0b0"}

_STYLE = f"""
body {{ font-family: sans-serif; margin: 16px; background: #ffffff; }}
.query-row {{ display: flex; align-items: flex-start; gap: 8px; margin-bottom: 18px; }}
figure {{ margin: 0; text-align: center; font-size: 12px; }}
figure img {{ display: block; height: {THUMB_HEIGHT}px; border: 5px solid; }}
.query img {{ border-color: #2060ff; }}
.match img {{ border-color: {COLOURS[True]}; }}
.miss img {{ border-color: {COLOURS[False]}; }}
.unknown img {{ border-color: {COLOURS[None]}; }}
figcaption {{ max-width: 160px; overflow-wrap: anywhere; }}
"""


def thumbnail(path: str | Path, height: int = THUMB_HEIGHT) -> str:
    """A ``data:image/jpeg;base64,...`` URI of the image scaled to ``height`` pixels."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
        width = max(1, round(rgb.width * height / rgb.height))
        small = rgb.resize((width, height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    small.save(buf, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(css: str, path: str, caption: str, uris: dict[str, str]) -> str:
    if path not in uris:
        uris[path] = thumbnail(path)
    return (f'<figure class="{css}" title="{html.escape(path)}">'
            f'<img src="{uris[path]}" alt="{html.escape(Path(path).name)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_page(results: list[QueryResult], title: str = "reidlab search") -> str:
    """The page's HTML text for ``results``."""
    uris: dict[str, str] = {}
    rows = []
    for res in results:
        label = f"query (pid {res.pid})" if res.pid is not None else "query"
        cells = [_figure("query", res.path, f"{label}: {Path(res.path).name}", uris)]
        for m in res.matches:
            ok = res.correct(m)
            css = {True: "match", False: "miss", None: "unknown"}[ok]
            pid = f", pid {m.pid}" if m.pid is not None else ""
            cells.append(_figure(css, m.path, f"#{m.rank}: {m.distance:.4f}{pid}", uris))
        rows.append(f'<div class="query-row">{"".join(cells)}</div>')
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}"
            f"</title><style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n"
            + "\n".join(rows) + "\n</body></html>\n")


def write_page(results: list[QueryResult], out: str | Path, title: str = "reidlab search") -> Path:
    """Write :func:`render_page` to ``out`` and return its path."""
    path = Path(out).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(results, title), encoding="utf-8")
    return path
