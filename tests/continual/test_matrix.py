"""The accuracy-matrix bookkeeping on hand-made matrices."""

import pytest

from reidlab.continual.matrix import (
    average_seen,
    backward_transfer,
    forgetting,
    format_matrix,
    summary,
)

R = [[0.8, 0.1, 0.2],
     [0.6, 0.7, 0.3],
     [0.5, 0.65, 0.9]]


def test_average_over_seen_datasets():
    assert average_seen(R) == pytest.approx([0.8, (0.6 + 0.7) / 2, (0.5 + 0.65 + 0.9) / 3])
    assert average_seen([[0.4, 0.2, 0.9]], seen=[2]) == pytest.approx([0.3])  # joint


def test_forgetting_is_best_earlier_minus_final():
    # a: max(0.8, 0.6) - 0.5; b: 0.7 - 0.65; the last task has none
    assert forgetting(R) == pytest.approx([0.3, 0.05])
    # the best earlier value need not be the first: a rose after task 2, then dropped
    rising = [[0.5, 0.0, 0.0], [0.6, 0.7, 0.0], [0.4, 0.8, 0.9]]
    assert forgetting(rising) == pytest.approx([0.2, -0.1])  # b improved: negative
    assert forgetting([[0.7, 0.1]]) == []


def test_backward_transfer():
    # ((0.5 - 0.8) + (0.65 - 0.7)) / 2
    assert backward_transfer(R) == pytest.approx(-0.175)
    assert backward_transfer([[0.7, 0.1]]) is None


def test_summary_and_table():
    s = summary(R, ["a", "b", "c"])
    assert s["forgetting"] == pytest.approx({"a": 0.3, "b": 0.05})
    assert s["matrix"] == R
    text = format_matrix(R, ["a", "b", "c"], ["a", "b", "c"])
    lines = text.splitlines()
    assert lines[1].split()[-1] == "80.00" and lines[3].split()[-1] == "68.33"
    assert lines[4].split()[1:] == ["30.00", "5.00"]
    assert lines[-1] == "backward transfer: -17.50"


def test_bad_matrices_are_refused():
    with pytest.raises(ValueError, match="different lengths"):
        average_seen([[0.1, 0.2], [0.3]])
    with pytest.raises(ValueError, match="2 tasks but only 1"):
        forgetting([[0.1], [0.2]])
