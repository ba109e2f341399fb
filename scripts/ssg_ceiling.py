"""SSG's round loop with the target's true identities in place of every part's clustering:
the ceiling of what the rounds can reach with perfect pseudo labels, to read the real
rounds against. Everything else (features, training, scoring, rounds.json) is reidlab's.

    python scripts/ssg_ceiling.py configs/synthetic/adapt/ssg_a_to_b.yaml [key=value ...]

Run from the repository root; it takes the same arguments as ``reidlab adapt``.
"""

from __future__ import annotations

import sys

import numpy as np

from reidlab.adapt import ssg
from reidlab.adapt.cluster import PseudoLabels, renumber
from reidlab.cli import main
from reidlab.data.pipeline import load_named
from reidlab.engine.modes import MODES

true_ids: dict[str, np.ndarray] = {}
adapt = ssg.adapt


def true_labels(feats: dict, a: object, eps: dict, seed: int = 0) -> dict[str, PseudoLabels]:
    return {part: renumber(true_ids["target"]) for part in feats}


def adapt_with_true_labels(ctx):  # noqa: ANN001, ANN201
    target = load_named(ctx.cfg.data, ctx.cfg.adapt.target)
    true_ids["target"] = np.array([r.pid for r in target.train])
    return adapt(ctx)


ssg.cluster_parts = true_labels
MODES._items["adapt"] = adapt_with_true_labels
sys.exit(main(["adapt", *sys.argv[1:]]))
