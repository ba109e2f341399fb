"""Per-camera background styles: each camera keeps its style, each image varies it.

A style is a function ``(rng, colours, (W, H)) -> Image`` drawing with the camera's three
colours, jittered per image, and a random layout (horizon, tile offsets, clutter).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from reidlab.data.synthetic.domains import RGB

Colours = tuple[RGB, RGB, RGB]


def _jitter(rng: np.random.Generator, c: RGB, amount: float = 14.0) -> RGB:
    v = np.clip(np.asarray(c, dtype=np.float64) + rng.normal(0, amount, 3), 0, 255)
    return (int(v[0]), int(v[1]), int(v[2]))


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (
        int(a[0] + (b[0] - a[0]) * t),
        int(a[1] + (b[1] - a[1]) * t),
        int(a[2] + (b[2] - a[2]) * t),
    )


def _gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    w, h = size
    t = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    arr = np.asarray(top, np.float32) * (1 - t) + np.asarray(bottom, np.float32) * t
    return Image.fromarray(np.broadcast_to(arr, (h, w, 3)).astype(np.uint8))


def _floor_lines(
    d: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    size: tuple[int, int],
    horizon: int,
    colour: RGB,
) -> None:
    """Tile joints in perspective: rows denser near the horizon, rays to a vanishing point."""
    w, h = size
    y, step = float(horizon), 4.0 + 4.0 * rng.random()
    while y < h:
        d.line([(0, y), (w, y)], fill=colour, width=1)
        y, step = y + step, step * 1.35
    vx = w * rng.uniform(0.2, 0.8)
    for x in np.arange(-3 * w, 4 * w, w * rng.uniform(0.35, 0.6)) + rng.uniform(0, 20):
        d.line([(vx, horizon), (x, h)], fill=colour, width=1)


def pavement(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _jitter(rng, c[2]))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.35, 0.55))
    win = _mix(_jitter(rng, c[2]), (20, 20, 30), 0.5)
    ox, oy = rng.uniform(0, 30), rng.uniform(0, 30)
    for y in np.arange(oy - 30, horizon - 20, 34):
        for x in np.arange(ox - 30, w, 30):
            d.rectangle((x, y, x + 16, y + 20), fill=win)
    d.rectangle((0, horizon, w, h), fill=_jitter(rng, c[0]))
    _floor_lines(d, rng, size, horizon, _jitter(rng, c[1]))
    return img


def brick(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _jitter(rng, c[1]))
    d = ImageDraw.Draw(img)
    bh, bw = int(rng.integers(10, 15)), int(rng.integers(24, 36))
    ground = int(h * rng.uniform(0.72, 0.85))
    base = _jitter(rng, c[0])
    for r, y in enumerate(range(-int(rng.integers(0, bh)), ground, bh)):
        off = -(bw // 2) * (r % 2) - int(rng.integers(0, bw))
        for x in range(off, w, bw):
            d.rectangle((x + 1, y + 1, x + bw - 2, y + bh - 2), fill=_jitter(rng, base, 10))
    d.rectangle((0, ground, w, h), fill=_jitter(rng, c[2]))
    return img


def park(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    horizon = int(h * rng.uniform(0.3, 0.45))
    sky = _jitter(rng, c[0])
    img = _gradient(size, sky, _mix(sky, (255, 255, 255), 0.4))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        x, r = rng.uniform(-20, w + 20), rng.uniform(18, 40)
        d.ellipse((x - r, horizon - 1.6 * r, x + r, horizon + 5), fill=_jitter(rng, c[1], 20))
    d.rectangle((0, horizon, w, h), fill=_jitter(rng, c[2]))
    return img


def road(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _jitter(rng, c[0]))
    d = ImageDraw.Draw(img)
    kerb = int(h * rng.uniform(0.25, 0.45))
    d.rectangle((0, 0, w, kerb), fill=_jitter(rng, c[2]))
    d.rectangle((0, kerb, w, kerb + 5), fill=_jitter(rng, c[1]))
    paint = _jitter(rng, c[1])
    y0 = kerb + rng.uniform(30, 80)
    for x in np.arange(rng.uniform(-40, 0), w, 44):
        d.polygon([(x, y0), (x + 26, y0), (x + 34, y0 + 9), (x + 8, y0 + 9)], fill=paint)
    return img


def _blobs(
    rng: np.random.Generator,
    d: ImageDraw.ImageDraw,
    size: tuple[int, int],
    colours: list[RGB],
    n: int,
) -> None:
    w, h = size
    for _ in range(n):
        x, y = rng.uniform(-20, w), rng.uniform(-20, h)
        bw, bh = rng.uniform(10, 60), rng.uniform(10, 90)
        fill = _jitter(rng, colours[int(rng.integers(len(colours)))], 30)
        if rng.random() < 0.5:
            d.rectangle((x, y, x + bw, y + bh), fill=fill)
        else:
            d.ellipse((x, y, x + bw, y + bh), fill=fill)


def clutter(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    img = Image.new("RGB", size, _jitter(rng, c[0]))
    _blobs(rng, ImageDraw.Draw(img), size, list(c), int(rng.integers(8, 16)))
    return img


def gradient(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = _gradient(size, _jitter(rng, c[0]), _jitter(rng, c[1]))
    y = h * rng.uniform(0.2, 0.5)
    ImageDraw.Draw(img).rectangle((0, y, w, y + rng.uniform(10, 40)), fill=_jitter(rng, c[2]))
    return img


def tiles(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _jitter(rng, c[0]))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.4, 0.55))
    a, b = _jitter(rng, c[1]), _jitter(rng, c[2])
    y, step, row = float(horizon), 6.0, 0
    off = rng.uniform(0, 40)
    while y < h:
        tw = 12 + step * 2.5
        for i, x in enumerate(np.arange(-off, w, tw)):
            d.rectangle((x, y, x + tw, y + step), fill=a if (i + row) % 2 else b)
        y, step, row = y + step, step * 1.3, row + 1
    return img


def corridor(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _jitter(rng, c[0]))
    d = ImageDraw.Draw(img)
    horizon = int(h * rng.uniform(0.55, 0.7))
    for x in np.arange(rng.uniform(-50, 0), w, rng.uniform(50, 80)):
        d.rectangle((x, horizon - 110, x + 34, horizon), fill=_jitter(rng, c[1]))
    d.rectangle((0, 0, w, 8), fill=(250, 250, 240))
    d.rectangle((0, horizon, w, h), fill=_jitter(rng, c[2]))
    _floor_lines(d, rng, size, horizon, _mix(c[2], (0, 0, 0), 0.3))
    return img


def shopfront(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    img = Image.new("RGB", size, _jitter(rng, c[0]))
    d = ImageDraw.Draw(img)
    floor = int(h * rng.uniform(0.7, 0.82))
    for x in np.arange(rng.uniform(-60, 0), w, 70):
        d.rectangle((x + 6, 20, x + 64, floor - 10), fill=_jitter(rng, c[1]))
        _blobs(rng, d, (int(x) + 60, floor - 20), [c[2], c[0]], 2)
    d.rectangle((0, floor, w, h), fill=_mix(_jitter(rng, c[0]), (128, 128, 128), 0.4))
    return img


def night(rng: np.random.Generator, c: Colours, size: tuple[int, int]) -> Image.Image:
    w, h = size
    base = _jitter(rng, c[0])
    arr = np.asarray(_gradient(size, base, _mix(base, (0, 0, 0), 0.6)), np.float32).copy()
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for _ in range(int(rng.integers(1, 4))):
        lx, ly, r = rng.uniform(0, w), rng.uniform(0, h * 0.6), rng.uniform(8, 30)
        glow = np.exp(-((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * r * r))[..., None]
        arr += glow * (np.asarray(_jitter(rng, c[1]), np.float32) - arr) * 0.9
    ground = int(h * rng.uniform(0.65, 0.8))
    arr[ground:] = arr[ground:] * 0.5 + np.asarray(c[2], np.float32) * 0.5
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


BACKGROUNDS: dict[str, Callable[[np.random.Generator, Colours, tuple[int, int]], Image.Image]] = {
    "pavement": pavement,
    "brick": brick,
    "park": park,
    "road": road,
    "clutter": clutter,
    "gradient": gradient,
    "tiles": tiles,
    "corridor": corridor,
    "shopfront": shopfront,
    "night": night,
}


def background(
    rng: np.random.Generator, style: str, colours: Colours, size: tuple[int, int]
) -> Image.Image:
    """One background of ``style`` at ``size`` (W, H)."""
    if style not in BACKGROUNDS:
        raise KeyError(f"unknown background style {style!r} (known: {', '.join(BACKGROUNDS)})")
    return BACKGROUNDS[style](rng, colours, size)
