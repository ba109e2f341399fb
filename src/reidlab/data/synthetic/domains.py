"""Domains of the synthetic dataset: six cameras and the clothing palettes of a population.

Domain ``"a"`` is a sunny street in summer (bright, varied clothing, outdoor backgrounds);
``"b"`` is an indoor mall and night street in winter (muted dark clothing, tungsten and
fluorescent casts, darker and noisier cameras, indoor backgrounds). Any other name derives
a domain from a hash of the name, so ``"c"``, ``"night2"``... are stable, different domains.
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

RGB = tuple[int, int, int]

BACKGROUNDS_OUTDOOR = ("pavement", "brick", "park", "road", "clutter", "gradient")
BACKGROUNDS_INDOOR = ("tiles", "corridor", "shopfront", "night")
PATTERNS = ("plain", "stripes", "checks", "logo", "colorblock", "jacket")
UPPER_TYPES = ("tshirt", "longsleeve", "coat")
LOWER_TYPES = ("trousers", "shorts", "skirt")
HAIR_LENGTHS = ("short", "medium", "long")
BAGS = ("none", "backpack", "shoulder")


@dataclass(frozen=True)
class Palette:
    """Colours with sampling weights; small on purpose, so that colours repeat across people."""

    colours: tuple[RGB, ...]
    weights: tuple[float, ...]

    def draw(self, rng: np.random.Generator, avoid: RGB | None = None) -> RGB:
        p = np.array(self.weights, dtype=np.float64)
        if avoid is not None:
            p = p * np.array([c != avoid for c in self.colours])
        return self.colours[int(rng.choice(len(p), p=p / p.sum()))]


@dataclass(frozen=True)
class CameraStyle:
    """One camera: background style and colours, illumination and image quality."""

    background: str
    colours: tuple[RGB, RGB, RGB]
    gain: float  # multiplies intensities
    cast: tuple[float, float, float]  # per-channel gain (R, G, B)
    contrast: float  # around the image mean
    noise: float  # gaussian sigma in grey levels
    haze: float  # fraction blended towards mid grey
    views: tuple[float, float, float]  # how often front, back, side is seen


@dataclass(frozen=True)
class DomainStyle:
    """Cameras and the population's palettes and type frequencies."""

    name: str
    cameras: tuple[CameraStyle, ...]
    upper: Palette
    lower: Palette
    shoes: Palette
    hair: Palette
    skin: Palette
    bag: Palette
    hat: Palette
    patterns: tuple[float, ...]  # weights over PATTERNS
    upper_types: tuple[float, ...]  # weights over UPPER_TYPES
    lower_types: tuple[float, ...]  # weights over LOWER_TYPES
    hair_lengths: tuple[float, ...]  # weights over HAIR_LENGTHS
    bags: tuple[float, ...]  # weights over BAGS
    hat_prob: float


def _pal(*entries: tuple[RGB, float]) -> Palette:
    return Palette(tuple(c for c, _ in entries), tuple(w for _, w in entries))


# fmt: off
BLACK, WHITE, GREY = (28, 28, 30), (232, 232, 228), (128, 128, 132)
SKIN = _pal(((238, 200, 168), 2), ((222, 178, 138), 2), ((196, 146, 106), 2),
            ((152, 104, 70), 1), ((104, 70, 46), 1))


def _cam(bg: str, colours: tuple[RGB, RGB, RGB], gain: float, cast: tuple[float, float, float],
         contrast: float, noise: float, haze: float, views: tuple[float, float, float]
         ) -> CameraStyle:
    return CameraStyle(bg, colours, gain, cast, contrast, noise, haze, views)


# _cam(background, colours, gain, cast, contrast, noise, haze, views (front, back, side))
DOMAIN_A = DomainStyle(
    name="a",
    cameras=(
        _cam("pavement", ((170, 160, 150), (120, 118, 115), (90, 110, 140)), 1.0,
             (1.0, 1.0, 1.0), 1.0, 2.0, 0.0, (0.5, 0.3, 0.2)),
        _cam("brick", ((150, 70, 50), (200, 190, 180), (110, 105, 100)), 1.05,
             (1.12, 1.0, 0.84), 1.05, 3.0, 0.0, (0.2, 0.5, 0.3)),
        _cam("park", ((150, 190, 225), (60, 110, 50), (80, 140, 60)), 0.95,
             (0.86, 0.97, 1.16), 0.95, 3.0, 0.05, (0.3, 0.3, 0.4)),
        _cam("road", ((80, 82, 85), (220, 220, 210), (150, 150, 140)), 1.25,
             (1.02, 1.02, 0.96), 0.85, 2.0, 0.12, (0.4, 0.4, 0.2)),
        _cam("clutter", ((180, 175, 160), (90, 60, 40), (60, 90, 120)), 0.72,
             (0.92, 1.1, 0.96), 1.1, 5.0, 0.0, (0.3, 0.2, 0.5)),
        _cam("gradient", ((200, 200, 215), (110, 100, 95), (160, 150, 140)), 1.1,
             (1.08, 0.9, 1.06), 1.0, 3.0, 0.06, (0.35, 0.35, 0.3)),
    ),
    upper=_pal((BLACK, 3), (WHITE, 3), (GREY, 2), ((196, 32, 38), 2), ((28, 38, 92), 2),
               ((40, 100, 200), 2), ((140, 190, 232), 1), ((40, 140, 62), 1),
               ((236, 200, 40), 1), ((236, 140, 180), 1), ((240, 120, 30), 1),
               ((110, 50, 140), 1)),
    lower=_pal((BLACK, 4), ((40, 55, 100), 3), ((72, 104, 154), 3), (GREY, 2),
               ((192, 172, 122), 2), (WHITE, 1), ((100, 68, 44), 1), ((48, 72, 40), 1),
               ((176, 40, 44), 0.5)),
    shoes=_pal((WHITE, 3), (BLACK, 3), (GREY, 1), ((110, 70, 40), 1), ((200, 40, 40), 0.5),
               ((40, 80, 180), 0.5)),
    hair=_pal(((20, 18, 18), 4), ((62, 40, 24), 3), ((112, 76, 40), 2), ((216, 180, 110), 1),
              ((165, 165, 165), 0.5), ((150, 62, 30), 0.5)),
    skin=SKIN,
    bag=_pal((BLACK, 3), ((110, 70, 40), 2), (GREY, 1), ((190, 40, 40), 1),
             ((40, 80, 170), 1), ((60, 110, 60), 1), ((210, 190, 150), 1)),
    hat=_pal((BLACK, 1), (WHITE, 1), ((196, 32, 38), 1), ((40, 80, 170), 1),
             ((192, 172, 122), 1)),
    patterns=(4, 2, 1.5, 2, 1.5, 1.5),
    upper_types=(4, 3, 1),
    lower_types=(5, 2, 1.5),
    hair_lengths=(4, 2, 2),
    bags=(4, 2.5, 2),
    hat_prob=0.15,
)

DOMAIN_B = DomainStyle(
    name="b",
    cameras=(
        _cam("tiles", ((210, 200, 170), (120, 110, 100), (200, 190, 180)), 1.1,
             (1.18, 1.0, 0.72), 1.0, 3.0, 0.0, (0.4, 0.4, 0.2)),
        _cam("corridor", ((180, 190, 185), (90, 100, 110), (150, 150, 140)), 0.9,
             (0.88, 1.12, 0.94), 0.9, 4.0, 0.05, (0.5, 0.2, 0.3)),
        _cam("shopfront", ((50, 50, 60), (250, 230, 180), (120, 40, 60)), 1.2,
             (1.1, 0.98, 0.86), 1.15, 3.0, 0.0, (0.3, 0.4, 0.3)),
        _cam("night", ((20, 25, 45), (250, 210, 120), (60, 60, 70)), 0.78,
             (1.05, 0.95, 1.2), 1.15, 6.0, 0.0, (0.3, 0.3, 0.4)),
        _cam("tiles", ((90, 100, 120), (40, 40, 45), (170, 170, 175)), 0.8,
             (0.8, 0.95, 1.25), 1.1, 6.0, 0.0, (0.2, 0.5, 0.3)),
        _cam("corridor", ((220, 215, 200), (160, 120, 80), (110, 90, 70)), 1.3,
             (1.06, 1.06, 0.8), 0.8, 3.0, 0.15, (0.35, 0.35, 0.3)),
    ),
    upper=_pal((BLACK, 2.5), ((70, 70, 74), 2), ((28, 36, 70), 2), ((86, 90, 50), 2),
               ((112, 22, 36), 2), ((180, 140, 90), 2), ((212, 198, 166), 1.5),
               ((30, 72, 52), 1.5), ((30, 110, 120), 1.5), ((190, 150, 40), 1.5),
               ((236, 226, 202), 1.5), ((150, 160, 175), 1.5), ((196, 90, 60), 1.5)),
    lower=_pal((BLACK, 3), ((70, 70, 74), 2), ((46, 60, 92), 3), ((92, 62, 40), 2),
               ((86, 90, 50), 1.5), ((150, 130, 100), 1.5), ((180, 180, 186), 1)),
    shoes=_pal((BLACK, 4), ((92, 62, 40), 2), ((70, 70, 74), 1), ((200, 190, 170), 1)),
    hair=_pal(((20, 18, 18), 4), ((62, 40, 24), 3), ((112, 76, 40), 2), ((216, 180, 110), 1),
              ((165, 165, 165), 1)),
    skin=SKIN,
    bag=_pal((BLACK, 4), ((92, 62, 40), 2), ((70, 70, 74), 1), ((112, 22, 36), 1)),
    hat=_pal((BLACK, 1), ((70, 70, 74), 1), ((112, 22, 36), 1), ((212, 198, 166), 1)),
    patterns=(6, 1, 1.5, 1, 2, 2),
    upper_types=(1, 3, 3),
    lower_types=(8, 0.5, 1.5),
    hair_lengths=(3, 3, 2),
    bags=(3, 3, 2),
    hat_prob=0.3,
)
# fmt: on


def domain_key(name: str) -> int:
    """A stable non-negative integer for a domain name (the same in every process)."""
    return zlib.crc32(name.encode("utf-8"))


def _hsv(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> RGB:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return (int(r * 255), int(g * 255), int(b * 255))


def _random_palette(
    rng: np.random.Generator, n: int, sat: tuple[float, float], val: tuple[float, float]
) -> Palette:
    colours = tuple(_hsv(rng, sat, val) for _ in range(n))
    return Palette(colours, tuple(float(w) for w in rng.uniform(0.5, 3.0, n)))


def _views(rng: np.random.Generator) -> tuple[float, float, float]:
    front, back, side = rng.dirichlet((3.0, 3.0, 3.0)).tolist()
    return (front, back, side)


def _random_domain(name: str) -> DomainStyle:
    rng = np.random.default_rng(domain_key(name))
    backgrounds = BACKGROUNDS_OUTDOOR + BACKGROUNDS_INDOOR
    cameras = tuple(
        _cam(
            str(rng.choice(backgrounds)),
            (
                _hsv(rng, (0, 0.6), (0.2, 0.9)),
                _hsv(rng, (0, 0.6), (0.2, 0.9)),
                _hsv(rng, (0, 0.6), (0.2, 0.9)),
            ),
            float(rng.uniform(0.6, 1.3)),
            (
                float(rng.uniform(0.8, 1.2)),
                float(rng.uniform(0.8, 1.2)),
                float(rng.uniform(0.8, 1.2)),
            ),
            float(rng.uniform(0.8, 1.15)),
            float(rng.uniform(2, 7)),
            float(rng.uniform(0, 0.15)),
            _views(rng),
        )
        for _ in range(6)
    )
    return DomainStyle(
        name=name,
        cameras=cameras,
        upper=_random_palette(rng, 12, (0.1, 0.9), (0.12, 0.95)),
        lower=_random_palette(rng, 8, (0.05, 0.7), (0.1, 0.8)),
        shoes=_random_palette(rng, 5, (0.0, 0.6), (0.1, 0.95)),
        hair=DOMAIN_A.hair,
        skin=SKIN,
        bag=_random_palette(rng, 6, (0.1, 0.8), (0.1, 0.8)),
        hat=_random_palette(rng, 4, (0.1, 0.9), (0.1, 0.95)),
        patterns=tuple(float(w) for w in rng.uniform(0.5, 4.0, len(PATTERNS))),
        upper_types=tuple(float(w) for w in rng.uniform(0.5, 4.0, len(UPPER_TYPES))),
        lower_types=tuple(float(w) for w in rng.uniform(0.5, 4.0, len(LOWER_TYPES))),
        hair_lengths=DOMAIN_A.hair_lengths,
        bags=tuple(float(w) for w in rng.uniform(1.0, 3.0, len(BAGS))),
        hat_prob=float(rng.uniform(0.05, 0.35)),
    )


@lru_cache(maxsize=64)
def domain_style(name: str) -> DomainStyle:
    """The style of domain ``name``: the tables above for ``"a"``/``"b"``, else hashed."""
    if not name:
        raise ValueError("synthetic domain name must be a non-empty string")
    return {"a": DOMAIN_A, "b": DOMAIN_B}.get(name) or _random_domain(name)
