"""Drawing one pedestrian from polygons, seen from the front, the back or the side.

The figure is laid out in person-local units: ``y`` runs from 0 (top of the head) to 1
(soles), ``x`` is measured from the body axis in the same unit. A :class:`Pen` maps these to
scene pixels, applying the mirror of a left-facing side view and the lean as a shear, so
every part bends the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from reidlab.data.synthetic.domains import RGB
from reidlab.data.synthetic.identity import Identity

Point = tuple[float, float]
Fill = RGB | int


@dataclass(frozen=True)
class Pose:
    """How one image shows a person."""

    view: str  # "front", "back" or "side"
    mirror: int  # +1, or -1 for a side view facing left
    stride: float  # leg and arm swing, -1 .. 1
    lean: float  # tangent of the lean angle
    arm_out: float  # arms away from the body in front/back views, person units


class Pen:
    """Draws polygons given in person-local units onto an image."""

    def __init__(
        self, img: Image.Image, cx: float, top: float, u: float, mirror: int, lean: float
    ) -> None:
        self.img, self.cx, self.top, self.u = img, cx, top, u
        self.mirror, self.lean = mirror, lean
        self.draw = ImageDraw.Draw(img)

    def on(self, img: Image.Image) -> Pen:
        return Pen(img, self.cx, self.top, self.u, self.mirror, self.lean)

    def pt(self, x: float, y: float) -> Point:
        return (self.cx + (self.mirror * x + self.lean * (1.0 - y)) * self.u, self.top + y * self.u)

    def poly(self, pts: list[Point], fill: Fill) -> None:
        self.draw.polygon([self.pt(x, y) for x, y in pts], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: Fill) -> None:
        self.poly([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], fill)

    def ellipse(
        self,
        cx: float,
        cy: float,
        rx: float,
        ry: float,
        fill: Fill,
        a0: float = 0.0,
        a1: float = 2 * math.pi,
        n: int = 16,
    ) -> None:
        t = np.linspace(a0, a1, n)
        self.poly([(cx + rx * math.cos(a), cy + ry * math.sin(a)) for a in t], fill)

    def limb(self, a: Point, b: Point, w0: float, w1: float, fill: Fill) -> None:
        """A tapered segment from ``a`` (width ``w0``) to ``b`` (width ``w1``), round at ``a``."""
        dx, dy = b[0] - a[0], b[1] - a[1]
        n = math.hypot(dx, dy) or 1.0
        px, py = -dy / n / 2, dx / n / 2
        self.poly(
            [
                (a[0] + px * w0, a[1] + py * w0),
                (b[0] + px * w1, b[1] + py * w1),
                (b[0] - px * w1, b[1] - py * w1),
                (a[0] - px * w0, a[1] - py * w0),
            ],
            fill,
        )
        self.ellipse(a[0], a[1], w0 / 2, w0 / 2, fill, n=10)


def shade(c: RGB, f: float) -> RGB:
    return (int(min(255, c[0] * f)), int(min(255, c[1] * f)), int(min(255, c[2] * f)))


def _torso(p: Identity, side: bool) -> tuple[list[Point], float]:
    bottom = 0.64 if p.upper_type == "coat" else 0.51
    if side:
        d = 0.07 * (0.8 + 0.2 * p.width)
        return [
            (-d, 0.165),
            (0.9 * d, 0.165),
            (1.12 * d, 0.3),
            (d, 0.46),
            (1.05 * d, bottom),
            (-1.05 * d, bottom),
            (-1.05 * d, 0.3),
        ], bottom
    s, w = 0.118 * p.width, 0.098 * p.width
    h = (0.118 if bottom > 0.6 else 0.104) * p.width
    return [
        (-0.8 * s, 0.163),
        (0.8 * s, 0.163),
        (s, 0.19),
        (w, 0.46),
        (h, bottom),
        (-h, bottom),
        (-w, 0.46),
        (-s, 0.19),
    ], bottom


def _upper(pen: Pen, p: Identity, view: str) -> None:
    pts, bottom = _torso(p, view == "side")
    pen.poly(pts, p.upper)
    if p.pattern in ("stripes", "checks", "colorblock"):
        mask = Image.new("L", pen.img.size, 0)
        pen.on(mask).poly(pts, 255)
        pattern = Image.new("L", pen.img.size, 0)
        ppen = pen.on(pattern)
        if p.pattern == "stripes":
            for y in np.arange(0.2, bottom, 0.06):
                ppen.rect(-0.3, y, 0.3, y + 0.03, 255)
        elif p.pattern == "checks":
            for i, y in enumerate(np.arange(0.17, bottom, 0.045)):
                for j, x in enumerate(np.arange(-0.2, 0.2, 0.045)):
                    if (i + j) % 2 == 0:
                        ppen.rect(x, y, x + 0.045, y + 0.045, 255)
        else:
            ppen.rect(-0.3, 0.1, 0.3, 0.3, 255)
        pen.img.paste(p.accent, (0, 0), ImageChops.multiply(mask, pattern))
    elif p.pattern == "logo" and view == "front":
        c, r = (0.0, 0.29), 0.045 * p.width
        if p.logo_shape == 0:
            pen.ellipse(c[0], c[1], r, r, p.accent)
        elif p.logo_shape == 1:
            pen.rect(-r, c[1] - r, r, c[1] + r, p.accent)
        else:
            pen.poly([(0.0, c[1] - r), (r * 1.1, c[1] + r), (-r * 1.1, c[1] + r)], p.accent)
    elif p.pattern == "jacket" and view == "front":
        pen.rect(-0.032, 0.17, 0.032, bottom, p.accent)


def _leg(pen: Pen, p: Identity, hip: Point, foot: Point, f: float, side: bool) -> None:
    """One leg with its clothing and shoe, shaded by ``f`` (far legs are darker)."""
    w = p.width
    bend = 0.25 * abs(foot[0] - hip[0]) if side else 0.0  # knees bend forward in a stride
    knee = ((hip[0] + foot[0]) / 2 + bend, (hip[1] + foot[1]) / 2)
    skin = shade(p.skin, f)
    if p.lower_type == "trousers":
        pen.limb(hip, knee, 0.075 * w, 0.062 * w, shade(p.lower, f))
        pen.limb(knee, foot, 0.062 * w, 0.052 * w, shade(p.lower, f))
    else:
        pen.limb(hip, knee, 0.058 * w, 0.048 * w, skin)
        pen.limb(knee, foot, 0.048 * w, 0.036 * w, skin)
        if p.lower_type == "shorts":  # down to 80% of the thigh
            hem = (hip[0] + (knee[0] - hip[0]) * 0.8, hip[1] + (knee[1] - hip[1]) * 0.8)
            pen.limb(hip, hem, 0.08 * w, 0.072 * w, shade(p.lower, f))
    # seen from the side a shoe is longer and points forward
    pen.ellipse(
        foot[0] + (0.018 if side else 0.0),
        foot[1] + 0.008,
        0.05 if side else 0.036,
        0.022,
        shade(p.shoes, f),
    )


def _pelvis(pen: Pen, p: Identity, side: bool) -> None:
    h = (0.07 if side else 0.104) * p.width
    if p.lower_type == "skirt":
        pen.poly([(-h, 0.47), (h, 0.47), (h + 0.05, 0.73), (-h - 0.05, 0.73)], p.lower)
    else:
        pen.poly([(-h, 0.47), (h, 0.47), (h, 0.56), (0.0, 0.585), (-h, 0.56)], p.lower)


def _arm(pen: Pen, p: Identity, shoulder: Point, elbow: Point, hand: Point, f: float) -> None:
    w = 0.04 + 0.012 * p.width
    sleeve, skin = shade(p.upper, f), shade(p.skin, f)
    arm = skin if p.upper_type == "tshirt" else sleeve
    pen.limb(elbow, hand, w * 0.9, w * 0.8, arm)
    pen.limb(shoulder, elbow, w, w * 0.9, arm)
    if p.upper_type == "tshirt":  # a short sleeve over the upper arm
        mid = ((shoulder[0] + elbow[0]) / 2, (shoulder[1] + elbow[1]) / 2)
        pen.limb(shoulder, mid, w * 1.15, w * 1.1, sleeve)
    pen.ellipse(hand[0], hand[1], w * 0.5, w * 0.55, skin, n=10)


def _head(pen: Pen, p: Identity, view: str) -> None:
    pen.rect(-0.022, 0.11, 0.022, 0.17, p.skin)
    hair_len = {"short": 0.0, "medium": 0.16, "long": 0.26}[p.hair_length]
    if view == "front":
        pen.ellipse(0.0, 0.068, 0.052, 0.066, p.skin)
        pen.ellipse(0.0, 0.058, 0.056, 0.062, p.hair, math.pi, 2 * math.pi)
        pen.rect(-0.026, 0.066, -0.012, 0.074, (30, 25, 25))
        pen.rect(0.012, 0.066, 0.026, 0.074, (30, 25, 25))
        if hair_len:
            pen.rect(-0.062, 0.04, -0.042, hair_len * 0.8, p.hair)
            pen.rect(0.042, 0.04, 0.062, hair_len * 0.8, p.hair)
    elif view == "back":
        pen.ellipse(0.0, 0.068, 0.052, 0.066, p.skin)
        pen.ellipse(0.0, 0.066, 0.056, 0.066, p.hair, math.pi * 0.93, 2.07 * math.pi)
        if hair_len:
            pen.poly([(-0.056, 0.07), (0.056, 0.07), (0.06, hair_len), (-0.06, hair_len)], p.hair)
    else:
        if hair_len:
            pen.rect(-0.05, 0.06, -0.0, hair_len, p.hair)
        pen.ellipse(0.008, 0.068, 0.048, 0.066, p.skin)
        pen.ellipse(0.0, 0.066, 0.054, 0.066, p.hair, 0.5 * math.pi, 2.0 * math.pi)
        pen.rect(0.03, 0.064, 0.04, 0.072, (30, 25, 25))
    if p.hat is not None:
        pen.ellipse(0.0, 0.045, 0.058, 0.045, p.hat, math.pi, 2 * math.pi)
        if view == "side":
            pen.rect(0.0, 0.04, 0.09, 0.05, p.hat)
        elif view == "front":
            pen.rect(-0.06, 0.038, 0.06, 0.048, shade(p.hat, 0.8))


def _bag(pen: Pen, p: Identity, view: str, layer: str) -> None:
    """Backpacks show mainly from behind, shoulder bags from the side and the front."""
    c, s = p.bag_colour, 0.118 * p.width
    if p.bag == "backpack":
        if view == "back" and layer == "over":
            pen.rect(-0.1, 0.2, 0.1, 0.45, c)
            pen.rect(-0.07, 0.34, 0.07, 0.43, shade(c, 0.75))
        elif view == "front" and layer == "over":
            pen.rect(-0.085, 0.165, -0.06, 0.34, c)
            pen.rect(0.06, 0.165, 0.085, 0.34, c)
        elif view == "side" and layer == "under":
            d = 0.07 * (0.8 + 0.2 * p.width)
            pen.poly(
                [(-d - 0.085, 0.21), (-d + 0.01, 0.19), (-d + 0.01, 0.45), (-d - 0.09, 0.44)], c
            )
    elif p.bag == "shoulder" and layer == "over":
        sign = 1.0 if view != "back" else -1.0
        if view == "side":
            pen.limb((0.0, 0.18), (0.02, 0.47), 0.022, 0.022, shade(c, 0.85))
            pen.rect(-0.04, 0.46, 0.07, 0.58, c)
        else:
            pen.limb((-sign * 0.8 * s, 0.17), (sign * s, 0.48), 0.022, 0.022, shade(c, 0.85))
            pen.rect(sign * s - 0.02, 0.46, sign * s + 0.08, 0.58, c)


def draw_person(
    img: Image.Image, p: Identity, pose: Pose, cx: float, feet: float, height_px: float
) -> None:
    """Draw ``p`` onto ``img`` standing on pixel row ``feet``, centred on column ``cx``."""
    u = height_px * p.height
    pen = Pen(img, cx, feet - u, u, pose.mirror, pose.lean)
    side = pose.view == "side"
    w, st = p.width, pose.stride
    if side:
        th, ph = st * 0.38, -st * 0.5
        hip = (0.0, 0.52)
        near = (0.445 * math.sin(th), 0.52 + 0.445 * math.cos(th))
        far = (-near[0], near[1])
        sh = (0.0, 0.19)

        def arm(phi: float) -> tuple[Point, Point]:
            e = (sh[0] + 0.15 * math.sin(phi), sh[1] + 0.15 * math.cos(phi))
            return e, (e[0] + 0.14 * math.sin(phi + 0.3), e[1] + 0.14 * math.cos(phi + 0.3))

        _arm(pen, p, sh, *arm(-ph), 0.72)
        _leg(pen, p, hip, far, 0.78, True)
        _bag(pen, p, "side", "under")
        _leg(pen, p, hip, near, 1.0, True)
        _pelvis(pen, p, True)
        _upper(pen, p, "side")
        _head(pen, p, "side")
        _arm(pen, p, sh, *arm(ph), 1.0)
        _bag(pen, p, "side", "over")
        return
    spread = 0.012 + 0.02 * abs(st)
    lift = 0.015 * st
    for sign in (-1.0, 1.0):
        hip = (sign * 0.048 * w, 0.52)
        foot = (sign * (0.05 * w + spread), 0.965 - max(0.0, sign * lift))
        _leg(pen, p, hip, foot, 1.0, False)
    _pelvis(pen, p, False)
    if pose.view == "front" and p.hair_length != "short":
        pen.rect(-0.06, 0.06, 0.06, {"medium": 0.15, "long": 0.24}[p.hair_length], p.hair)
    _upper(pen, p, pose.view)
    s = 0.118 * w
    for sign in (-1.0, 1.0):
        out = pose.arm_out + 0.01 * sign * st
        sh = (sign * (s - 0.012), 0.19)
        _arm(
            pen, p, sh, (sign * (s + 0.02 + out * 0.5), 0.34), (sign * (s + 0.015 + out), 0.48), 1.0
        )
    _head(pen, p, pose.view)
    _bag(pen, p, pose.view, "over")
