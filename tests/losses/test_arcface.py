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


def _extra_objective(frozen: bool):
    from reidlab.config import LossConfig
    from reidlab.losses.objective import build_objective

    cfg = LossConfig(name="softmax_arcface_triplet", arcface_head="extra", arcface_scale=64.0,
                     arcface_frozen=frozen, label_smooth=0.0)
    return build_objective(cfg, num_classes=2, feat_dim=2)


def test_extra_head_is_a_term_with_plain_cross_entropy_at_known_angles():
    from reidlab.models.reid import ReIDOutput

    objective = _extra_objective(frozen=False)
    assert [t.name for t in objective.terms] == ["id", "triplet", "arcface"]
    head = objective.term_modules["arcface"]
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    feat = torch.tensor([_unit(30), _unit(100)])  # the neck feature feeds the head
    labels = torch.tensor([0, 1])
    out = ReIDOutput(global_feat=torch.randn(2, 2), feat=feat, logits=torch.zeros(2, 2))
    _, values = objective(out, labels)
    s, m = 64.0, 0.5
    # sample 0: target angle 30, other 60; sample 1: target angle 10, other 100
    l0 = [s * math.cos(math.radians(30) + m), s * math.cos(math.radians(60))]
    l1 = [s * math.cos(math.radians(100)), s * math.cos(math.radians(10) + m)]
    ce = [-(l0[0] - math.log(sum(math.exp(v) for v in l0))),
          -(l1[1] - math.log(sum(math.exp(v) for v in l1)))]
    assert values["arcface"].item() == pytest.approx(sum(ce) / 2, rel=1e-5)
    # the id term still reads the linear classifier's logits (zeros: log 2 each)
    assert values["id"].item() == pytest.approx(math.log(2), rel=1e-5)


@pytest.mark.parametrize("frozen", [False, True])
def test_extra_head_trains_with_the_model_unless_frozen(frozen):
    from reidlab.config import Config
    from reidlab.engine.task import build_optimizers, build_task

    cfg = Config.model_validate({
        "model": {"backbone": "resnet18", "width": 16},
        "loss": {"name": "softmax_arcface_triplet", "arcface_head": "extra",
                 "arcface_frozen": frozen},
    })
    task = build_task(cfg, num_classes=4)
    assert task.model.classifier is not None and not isinstance(task.model.classifier, ArcFace)
    head = task.objective.term_modules["arcface"]
    in_main = {id(p) for g in build_optimizers(cfg, task)[0].optimizer.param_groups
               for p in g["params"]}
    assert (id(head.weight) in in_main) is not frozen
    assert head.weight.requires_grad is not frozen
