"""Loss terms: label-smoothed ID loss, batch-hard triplet, center loss, learned weighting."""

from reidlab.losses.center import CenterLoss
from reidlab.losses.softmax import CrossEntropyLabelSmooth
from reidlab.losses.triplet import (
    TripletLoss,
    TripletOutput,
    cosine_dist,
    euclidean_dist,
    hard_example_mining,
)
from reidlab.losses.weighting import UncertaintyWeighting

__all__ = [
    "CenterLoss",
    "CrossEntropyLabelSmooth",
    "TripletLoss",
    "TripletOutput",
    "UncertaintyWeighting",
    "cosine_dist",
    "euclidean_dist",
    "hard_example_mining",
]
