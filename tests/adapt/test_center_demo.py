"""The center-loss picture's compactness measure, by hand."""

import numpy as np
import pytest

from reidlab.adapt.center_demo import distance_ratio


def test_distance_ratio_by_hand():
    # Class 0 at (+-1, 0) around (0, 0); class 1 at (10, +-1) around (10, 0).
    feats = np.array([[1.0, 0], [-1, 0], [10, 1], [10, -1]])
    labels = np.array([0, 0, 1, 1])
    assert distance_ratio(feats, labels) == pytest.approx(1.0 / 10.0)
    # Scaling all features changes nothing; pulling each class in halves the ratio.
    assert distance_ratio(3 * feats, labels) == pytest.approx(0.1)
    tight = np.array([[0.5, 0], [-0.5, 0], [10, 0.5], [10, -0.5]])
    assert distance_ratio(tight, labels) == pytest.approx(0.05)
    with pytest.raises(ValueError):
        distance_ratio(feats, np.zeros(4))
