import math

import pytest
import torch

from reidlab.losses import UncertaintyWeighting


def test_starts_as_the_plain_sum():
    w = UncertaintyWeighting(["id", "triplet"])
    total = w({"id": torch.tensor(2.0), "triplet": torch.tensor(3.0)})
    assert total.item() == pytest.approx(5.0)
    assert w.values() == {"id": 0.0, "triplet": 0.0}


def test_total_and_gradient_by_hand():
    w = UncertaintyWeighting(["id", "triplet"])
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([0.5, -0.2]))
    losses = {"triplet": torch.tensor(3.0), "id": torch.tensor(2.0)}
    total = w(losses)
    expected = math.exp(-0.5) * 2.0 + 0.5 + math.exp(0.2) * 3.0 - 0.2
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()
    # d total / d s_i = -exp(-s_i) * L_i + 1
    grad_id = -math.exp(-0.5) * 2.0 + 1
    grad_tri = -math.exp(0.2) * 3.0 + 1
    assert w.log_vars.grad.tolist() == pytest.approx([grad_id, grad_tri], rel=1e-6)
    assert w.values() == pytest.approx({"id": 0.5, "triplet": -0.2})


def test_gradient_reaches_the_losses():
    w = UncertaintyWeighting(["a"])
    x = torch.tensor(1.5, requires_grad=True)
    w({"a": x * 2}).backward()
    assert x.grad.item() == pytest.approx(2.0)


def test_key_mismatch_and_bad_names_raise():
    w = UncertaintyWeighting(["id", "triplet"])
    with pytest.raises(KeyError, match="missing"):
        w({"id": torch.tensor(1.0)})
    with pytest.raises(KeyError, match="unknown"):
        w({"id": torch.tensor(1.0), "triplet": torch.tensor(1.0), "center": torch.tensor(1.0)})
    with pytest.raises(ValueError):
        UncertaintyWeighting(["a", "a"])
