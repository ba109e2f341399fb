import math

import pytest
import torch
import torch.nn.functional as F

from reidlab.losses import CrossEntropyLabelSmooth


def test_three_class_example_by_hand():
    # logits (1, 2, 3), target 2, epsilon 0.1: q = (0.1/3, 0.1/3, 0.9 + 0.1/3)
    lse = math.log(math.exp(1) + math.exp(2) + math.exp(3))
    log_p = [1 - lse, 2 - lse, 3 - lse]
    q = [0.1 / 3, 0.1 / 3, 0.9 + 0.1 / 3]
    expected = -sum(qi * lp for qi, lp in zip(q, log_p, strict=True))
    assert expected == pytest.approx(0.507606, abs=1e-6)
    loss = CrossEntropyLabelSmooth(3, epsilon=0.1)(
        torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2])
    )
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_batch_mean_and_zero_epsilon_is_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, 7)
    targets = torch.tensor([0, 6, 3, 3, 1])
    plain = CrossEntropyLabelSmooth(7, epsilon=0.0)(logits, targets)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)
    smooth = CrossEntropyLabelSmooth(7, epsilon=0.2)(logits, targets)
    per_sample = [
        CrossEntropyLabelSmooth(7, epsilon=0.2)(logits[i : i + 1], targets[i : i + 1]).item()
        for i in range(5)
    ]
    assert smooth.item() == pytest.approx(sum(per_sample) / 5, rel=1e-6)


def test_wrong_class_count_raises():
    with pytest.raises(ValueError, match="shape"):
        CrossEntropyLabelSmooth(4)(torch.zeros(2, 3), torch.tensor([0, 1]))
