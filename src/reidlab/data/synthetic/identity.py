"""The appearance of one synthetic person: what stays the same in every image of them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reidlab.data.synthetic.domains import (
    BAGS,
    HAIR_LENGTHS,
    LOWER_TYPES,
    PATTERNS,
    RGB,
    UPPER_TYPES,
    DomainStyle,
)


@dataclass(frozen=True)
class Identity:
    """Clothing, body and accessories of one person.

    Each attribute comes from a small shared palette, so any single attribute is shared by
    many people; the combination is what identifies someone.
    """

    upper: RGB
    accent: RGB  # second colour of the upper pattern
    pattern: str  # one of PATTERNS
    logo_shape: int  # 0 disc, 1 square, 2 triangle (used by the "logo" pattern)
    upper_type: str  # one of UPPER_TYPES
    lower: RGB
    lower_type: str  # one of LOWER_TYPES
    shoes: RGB
    hair: RGB
    hair_length: str  # one of HAIR_LENGTHS
    skin: RGB
    height: float  # relative body height, 1 the tallest
    width: float  # relative body width
    bag: str  # one of BAGS
    bag_colour: RGB
    hat: RGB | None


def _pick(rng: np.random.Generator, names: tuple[str, ...], weights: tuple[float, ...]) -> str:
    p = np.asarray(weights, dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_identity(rng: np.random.Generator, style: DomainStyle) -> Identity:
    """Draw one person from the population of ``style``."""
    upper = style.upper.draw(rng)
    upper_type = _pick(rng, UPPER_TYPES, style.upper_types)
    lower_type = _pick(rng, LOWER_TYPES, style.lower_types)
    lower = style.lower.draw(rng)
    if lower_type == "skirt":
        # a skirt shows the lower colour only over a short region: avoid one equal to the top
        lower = style.lower.draw(rng, avoid=upper)
    return Identity(
        upper=upper,
        accent=style.upper.draw(rng, avoid=upper),
        pattern=_pick(rng, PATTERNS, style.patterns),
        logo_shape=int(rng.integers(3)),
        upper_type=upper_type,
        lower=lower,
        lower_type=lower_type,
        shoes=style.shoes.draw(rng),
        hair=style.hair.draw(rng),
        hair_length=_pick(rng, HAIR_LENGTHS, style.hair_lengths),
        skin=style.skin.draw(rng),
        height=float(rng.uniform(0.86, 1.0)),
        width=float(rng.uniform(0.85, 1.2)),
        bag=_pick(rng, BAGS, style.bags),
        bag_colour=style.bag.draw(rng),
        hat=style.hat.draw(rng) if rng.random() < style.hat_prob else None,
    )
