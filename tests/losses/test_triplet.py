import math

import pytest
import torch
import torch.nn.functional as F

from reidlab.losses import (
    TripletLoss,
    cosine_dist,
    euclidean_dist,
    hard_example_mining,
)

# 1-D features, so distances are |a - b|. Identity counts vary: 3, 2 and 1 images,
# interleaved in the batch.
FEATS = torch.tensor([[0.0], [10.0], [1.0], [20.0], [3.0], [4.0]])
LABELS = torch.tensor([0, 1, 0, 2, 0, 1])
# hardest positive / negative worked out by hand, anchor by anchor:
# x=0 (id0): pos {1, 3} -> 3; neg {10, 20, 4} -> 4
# x=10 (id1): pos {4} -> 6; neg {0, 1, 20, 3} -> 7
# x=1 (id0): pos {0, 3} -> 2; neg -> |1 - 4| = 3
# x=20 (id2): only itself -> 1e-6 (sqrt of the 1e-12 clamp); neg -> |20 - 10| = 10
# x=3 (id0): pos -> 3; neg -> |3 - 4| = 1
# x=4 (id1): pos -> 6; neg -> |4 - 3| = 1
AP = [3.0, 6.0, 2.0, 1e-6, 3.0, 6.0]
AN = [4.0, 7.0, 3.0, 10.0, 1.0, 1.0]


def test_euclidean_and_cosine_against_a_loop():
    torch.manual_seed(0)
    x, y = torch.randn(4, 5), torch.randn(3, 5)
    d, c = euclidean_dist(x, y), cosine_dist(x, y)
    assert d.shape == (4, 3)
    for i in range(4):
        for j in range(3):
            ref = math.sqrt(
                sum((a - b) ** 2 for a, b in zip(x[i].tolist(), y[j].tolist(), strict=True))
            )
            assert d[i, j].item() == pytest.approx(ref, rel=1e-5)
            cos = torch.dot(x[i], y[j]) / (x[i].norm() * y[j].norm())
            assert c[i, j].item() == pytest.approx(1 - cos.item(), abs=1e-6)


def test_euclidean_self_distance_has_finite_gradient():
    x = torch.randn(3, 4, requires_grad=True)
    d = euclidean_dist(x, x)
    assert torch.allclose(d.diagonal(), torch.full((3,), 1e-6), atol=1e-4)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_batch_hard_mining_with_varying_id_counts():
    dist_ap, dist_an = hard_example_mining(euclidean_dist(FEATS, FEATS), LABELS)
    assert dist_ap.tolist() == pytest.approx(AP, abs=1e-5)
    assert dist_an.tolist() == pytest.approx(AN, abs=1e-5)


def test_mining_is_permutation_equivariant():
    perm = torch.tensor([5, 3, 0, 1, 4, 2])
    dist_ap, dist_an = hard_example_mining(euclidean_dist(FEATS[perm], FEATS[perm]), LABELS[perm])
    assert dist_ap.tolist() == pytest.approx([AP[i] for i in perm], abs=1e-5)
    assert dist_an.tolist() == pytest.approx([AN[i] for i in perm], abs=1e-5)


def test_margin_loss_value_and_logged_distances():
    out = TripletLoss(margin=0.3)(FEATS, LABELS)
    loss = out.loss
    assert loss.ndim == 0
    expected = (
        sum(max(0.0, ap - an + 0.3) for ap, an in zip(AP, AN, strict=True)) / 6
    )  # (2.3 + 5.3) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.dist_ap.tolist() == pytest.approx(AP, abs=1e-5)
    assert out.dist_an.tolist() == pytest.approx(AN, abs=1e-5)
    assert not out.dist_ap.requires_grad and not out.dist_an.requires_grad


def test_soft_margin_value():
    loss = TripletLoss(soft_margin=True)(FEATS, LABELS).loss
    expected = sum(math.log1p(math.exp(ap - an)) for ap, an in zip(AP, AN, strict=True)) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ap_penalty_value():
    loss = TripletLoss(margin=0.3, variant="ap_penalty")(FEATS, LABELS).loss
    expected = sum(ap + max(0.0, ap - an + 0.3) for ap, an in zip(AP, AN, strict=True)) / 6
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    soft = TripletLoss(soft_margin=True, variant="ap_penalty")(FEATS, LABELS).loss
    expected = sum(ap + math.log1p(math.exp(ap - an)) for ap, an in zip(AP, AN, strict=True)) / 6
    assert soft.item() == pytest.approx(expected, rel=1e-5)


def test_normalize_feature_ignores_row_scale():
    torch.manual_seed(1)
    feats = torch.randn(8, 6)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    scale = torch.rand(8, 1) * 5 + 0.1
    loss_fn = TripletLoss(normalize_feature=True)
    assert loss_fn(feats, labels).loss.item() == pytest.approx(
        loss_fn(feats * scale, labels).loss.item(), rel=1e-5
    )


def test_gradient_flows_and_single_identity_batch_is_zero():
    feats = torch.randn(4, 3, requires_grad=True)
    loss = TripletLoss(margin=100.0)(feats, torch.tensor([0, 0, 1, 1])).loss
    loss.backward()
    assert feats.grad.abs().sum() > 0
    feats.grad = None
    loss = TripletLoss()(feats, torch.tensor([5, 5, 5, 5])).loss
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(feats.grad).all()


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="variant"):
        TripletLoss(variant="semi_hard")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="labels"):
        TripletLoss()(torch.zeros(4, 2), torch.zeros(3))


def test_distances_stay_float32_under_autocast():
    torch.manual_seed(0)
    feats = torch.randn(8, 16) * 30 + 100  # large norms: |x|^2 cancels badly in bf16
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    ref = TripletLoss()(feats, labels)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = TripletLoss()(feats.bfloat16(), labels)
    assert out.loss.dtype == torch.float32 and out.dist_ap.dtype == torch.float32
    # only the bf16 rounding of the input features remains
    assert torch.allclose(out.dist_ap, ref.dist_ap, rtol=2e-2)
    assert torch.allclose(out.dist_an, ref.dist_an, rtol=2e-2)


def test_objective_triplet_normalize_uses_unit_features():
    """loss.triplet_normalize: the term equals the plain triplet loss on L2-normalised
    features, computed here by hand-normalising first."""
    from reidlab.config import LossConfig
    from reidlab.losses.objective import triplet_term
    from reidlab.models.reid import ReIDOutput

    torch.manual_seed(2)
    feats = torch.randn(8, 6) * 7
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = ReIDOutput(global_feat=feats, feat=feats, logits=None)
    term = triplet_term(LossConfig(triplet_normalize=True), 4, 6)
    reference = TripletLoss()(F.normalize(feats, dim=1), labels).loss
    assert term.fn(out, labels).item() == pytest.approx(reference.item(), rel=1e-6)
    raw = triplet_term(LossConfig(), 4, 6).fn(out, labels)
    assert raw.item() != pytest.approx(reference.item(), rel=1e-3)


def test_row17_forms_by_hand_and_where_they_differ():
    # double_ap (the notebook's code at 005ea40): [2 ap - an + m]+; ap_penalty (its text):
    # ap + [ap - an + m]+. Worked anchor by anchor from AP / AN above.
    double = TripletLoss(margin=0.3, variant="double_ap")(FEATS, LABELS).loss
    expected = sum(max(0.0, 2 * ap - an + 0.3) for ap, an in zip(AP, AN, strict=True)) / 6
    assert double.item() == pytest.approx(expected, rel=1e-5)
    # They agree where ap - an + m > 0 (then both are 2 ap - an + m), and differ elsewhere.
    feats, labels = torch.tensor([[0.0], [2.0], [2.5]]), torch.tensor([0, 0, 1])
    # anchor 0: ap 2, an 2.5: ap - an + m = -0.2, so ap_penalty = 2, double_ap = 1.8;
    # anchor 1: ap 2, an 0.5: hinge active, both 3.8;
    # anchor 2 (id 1 alone): ap 1e-6, an 0.5: double_ap 0, ap_penalty 1e-6
    d = TripletLoss(margin=0.3, variant="double_ap")(feats, labels).loss.item()
    p = TripletLoss(margin=0.3, variant="ap_penalty")(feats, labels).loss.item()
    assert d == pytest.approx((1.8 + 3.8 + 0.0) / 3, rel=1e-5)
    assert p == pytest.approx((2.0 + 3.8 + 1e-6) / 3, rel=1e-5)
    # hinge inactive with a large positive distance: ap_penalty keeps pulling, double_ap not
    feats, labels = torch.tensor([[0.0], [1.0], [10.0]]), torch.tensor([0, 0, 1])
    d = TripletLoss(margin=0.3, variant="double_ap")(feats, labels).loss.item()
    p = TripletLoss(margin=0.3, variant="ap_penalty")(feats, labels).loss.item()
    assert d == pytest.approx(0.0, abs=1e-6)  # 2 - 10 + .3 < 0, 2 - 9 + .3 < 0, id 1 alone
    assert p == pytest.approx((1.0 + 1.0 + 1e-6) / 3, rel=1e-5)
