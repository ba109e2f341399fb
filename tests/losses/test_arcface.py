import math

import pytest
import torch

from reidlab.models.arcface import ArcFace

S, M = 30.0, 0.5


def _unit(deg: float, length: float = 1.0) -> list[float]:
    return [length * math.cos(math.radians(deg)), length * math.sin(math.radians(deg))]


def _head(easy_margin: bool = False) -> ArcFace:
    head = ArcFace(2, 2, scale=S, margin=M, easy_margin=easy_margin)
    with torch.no_grad():  # class 0 along 0 degrees, class 1 along 90; lengths must not matter
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5]]))
    return head


def test_target_gets_the_angular_margin_and_others_do_not():
    head = _head()
    feats = torch.tensor([_unit(30, 3.0), _unit(70, 0.2)])
    logits = head(feats, torch.tensor([0, 1]))
    t30, t60, t70, t20 = (math.radians(a) for a in (30, 60, 70, 20))
    assert logits[0, 0].item() == pytest.approx(S * math.cos(t30 + M), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(S * math.cos(t60), rel=1e-5)
    assert logits[1, 1].item() == pytest.approx(S * math.cos(t20 + M), rel=1e-5)
    assert logits[1, 0].item() == pytest.approx(S * math.cos(t70), rel=1e-5)


def test_fallback_beyond_pi_minus_m():
    head = _head()
    # 170 degrees from class 0: theta + m > pi, so the target logit is cos(theta) - m sin(m)
    logits = head(torch.tensor([_unit(170)]), torch.tensor([0]))
    theta = math.radians(170)
    assert theta > math.pi - M
    assert logits[0, 0].item() == pytest.approx(S * (math.cos(theta) - M * math.sin(M)), rel=1e-5)
    assert logits[0, 1].item() == pytest.approx(S * math.cos(math.radians(80)), rel=1e-5)
    # just inside pi - m the margin still applies
    inside = math.degrees(math.pi - M) - 1
    logits = head(torch.tensor([_unit(inside)]), torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(S * math.cos(math.radians(inside) + M), rel=1e-5)


def test_easy_margin_keeps_cosine_beyond_ninety_degrees():
    head = _head(easy_margin=True)
    logits = head(torch.tensor([_unit(100), _unit(40)]), torch.tensor([0, 0]))
    assert logits[0, 0].item() == pytest.approx(S * math.cos(math.radians(100)), rel=1e-5)
    assert logits[1, 0].item() == pytest.approx(S * math.cos(math.radians(40) + M), rel=1e-5)


def test_eval_without_labels_is_scaled_cosine():
    head = _head()
    logits = head(torch.tensor([_unit(30, 5.0)]))
    expected = [S * math.cos(math.radians(30)), S * math.cos(math.radians(60))]
    assert logits[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert not any(isinstance(m, torch.nn.Linear) for m in head.modules())
    assert [n for n, _ in head.named_parameters()] == ["weight"]


def test_gradient_is_finite_at_zero_angle():
    head = _head()
    feats = torch.tensor([[1.0, 0.0]], requires_grad=True)
    head(feats, torch.tensor([0])).sum().backward()
    assert torch.isfinite(feats.grad).all()
    assert torch.isfinite(head.weight.grad).all()


def test_shapes_random_input():
    head = ArcFace(16, 10)
    out = head(torch.randn(4, 16), torch.tensor([0, 3, 9, 3]))
    assert out.shape == (4, 10) and out.dtype == torch.float32
    with pytest.raises(ValueError):
        head(torch.randn(4, 15))


def test_float32_logits_under_autocast():
    head = _head()
    feats = torch.tensor([_unit(30, 3.0)])
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        logits = head(feats, torch.tensor([0]))
    assert logits.dtype == torch.float32
    assert logits[0, 0].item() == pytest.approx(S * math.cos(math.radians(30) + M), rel=1e-5)
