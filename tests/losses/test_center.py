import pytest
import torch

from reidlab.losses import CenterLoss


def test_value_against_a_loop():
    torch.manual_seed(0)
    loss_fn = CenterLoss(num_classes=5, feat_dim=3)
    feats = torch.randn(6, 3)
    labels = torch.tensor([0, 4, 4, 2, 0, 1])
    expected = 0.0
    for x, y in zip(feats, labels, strict=True):
        c = loss_fn.centers[y].detach()
        expected += sum((a - b) ** 2 for a, b in zip(x.tolist(), c.tolist(), strict=True))
    expected /= 6
    assert loss_fn(feats, labels).item() == pytest.approx(expected, rel=1e-5)


def test_feature_on_its_centre_counts_the_clamp_floor():
    loss_fn = CenterLoss(num_classes=2, feat_dim=2)
    feats = loss_fn.centers.detach()[[1]].clone()
    assert loss_fn(feats, torch.tensor([1])).item() == pytest.approx(1e-12, rel=1e-3)


def test_centres_get_the_analytic_gradient():
    torch.manual_seed(0)
    loss_fn = CenterLoss(num_classes=4, feat_dim=3)
    feats = torch.randn(5, 3, requires_grad=True)
    labels = torch.tensor([0, 2, 2, 3, 0])
    loss_fn(feats, labels).backward()
    grad = loss_fn.centers.grad
    assert grad is not None
    # d/dc_k of sum_i |x_i - c_{y_i}|^2 / B is -2/B * sum_{i: y_i = k} (x_i - c_k)
    for k in range(4):
        rows = [i for i in range(5) if labels[i] == k]
        ref = torch.zeros(3)
        for i in rows:
            ref -= 2.0 / 5 * (feats[i].detach() - loss_fn.centers[k].detach())
        assert torch.allclose(grad[k], ref, atol=1e-6)
    assert grad[1].abs().sum() == 0  # class 1 is not in the batch
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="feats"):
        CenterLoss(3, 4)(torch.zeros(2, 5), torch.tensor([0, 1]))


def test_plain_l2_distance_by_hand():
    """The notebook's form: mean of |x_i - c_{y_i}|, not squared. Centres set by hand:
    x = (3, 4) against c = (0, 0) is 5; x = (1, 1) against c = (1, 2) is 1: mean 3."""
    loss_fn = CenterLoss(num_classes=2, feat_dim=2, distance="l2")
    with torch.no_grad():
        loss_fn.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 2.0]]))
    feats = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1])
    assert loss_fn(feats, labels).item() == pytest.approx(3.0)
    squared = CenterLoss(num_classes=2, feat_dim=2)
    squared.load_state_dict(loss_fn.state_dict())
    assert squared(feats, labels).item() == pytest.approx((25.0 + 1.0) / 2)
    # d/dc of |x - c| / B is -(x - c) / (|x - c| B): (-0.3, -0.4) and (0, +0.5)
    loss_fn(feats, labels).backward()
    assert torch.allclose(loss_fn.centers.grad, torch.tensor([[-0.3, -0.4], [0.0, 0.5]]))


def test_unknown_distance_raises():
    with pytest.raises(ValueError, match="'manhattan'"):
        CenterLoss(2, 2, distance="manhattan")
