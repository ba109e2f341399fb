"""DEC's soft assignment, target distribution and KL gradient on hand-worked cases, and
the clustering loop on separable data."""

import numpy as np
import pytest
import torch

from reidlab.adapt.dec import DEC, kl_loss, soft_assign, target_distribution

Z = torch.tensor([[0.0], [1.0], [3.0]])
MU = torch.tensor([[0.0], [2.0]])


def test_soft_assign_by_hand():
    # alpha 1: q_ij ~ 1 / (1 + d^2). Squared distances (0, 4), (1, 1), (9, 1).
    q = soft_assign(Z, MU, alpha=1.0)
    expected = torch.tensor([[5 / 6, 1 / 6], [1 / 2, 1 / 2], [1 / 6, 5 / 6]])
    assert torch.allclose(q, expected, atol=1e-6)
    # The nearer centre gets the larger weight (the notebook's kernel gives it 1/6).
    assert q[0, 0] > q[0, 1]
    # alpha 2: (1 + d^2 / 2)^(-3/2): for z = 0, weights 1 and 3^(-3/2).
    q2 = soft_assign(Z, MU, alpha=2.0)
    assert q2[0, 0].item() == pytest.approx(1 / (1 + 3 ** -1.5), abs=1e-6)
    assert torch.allclose(q2.sum(1), torch.ones(3))


def test_target_distribution_by_hand():
    q = soft_assign(Z, MU)  # f = (3/2, 3/2): p ~ q^2
    p = target_distribution(q)
    assert torch.allclose(p[0], torch.tensor([25 / 26, 1 / 26]), atol=1e-6)
    assert torch.allclose(p[1], torch.tensor([0.5, 0.5]), atol=1e-6)
    # Unequal cluster sizes: z = (0, 0, 3) give q rows (5/6, 1/6) twice and (1/6, 5/6);
    # f = (11/6, 7/6), so p_0 ~ (25/36 / (11/6), 1/36 / (7/6)) = (25/66, 1/42).
    q = soft_assign(torch.tensor([[0.0], [0.0], [3.0]]), MU)
    p = target_distribution(q)
    a, b = 25 / 66, 1 / 42
    assert torch.allclose(p[0], torch.tensor([a / (a + b), b / (a + b)]), atol=1e-6)
    assert torch.allclose(p.sum(1), torch.ones(3))


def test_kl_gradient_pulls_points_towards_their_nearest_centre():
    # Points between the centres (beyond a centre, the push away from the far one wins).
    z = torch.tensor([[0.5], [1.4], [0.8]], requires_grad=True)
    with torch.no_grad():
        p = target_distribution(soft_assign(z, MU))
    kl_loss(soft_assign(z, MU), p).backward()
    moved = z.detach() - 0.1 * z.grad
    nearest = torch.tensor([[0.0], [2.0], [0.0]])
    # dKL/dz_i = 2 sum_j (1 + d_ij^2)^-1 (p_ij - q_ij)(z_i - mu_j) for alpha = 1 (Eq. 4).
    q = soft_assign(z.detach(), MU)
    kernel = 1 / (1 + (z.detach() - MU.T) ** 2)
    by_hand = 2 * (kernel * (p - q) * (z.detach() - MU.T)).sum(1, keepdim=True) / 3
    assert torch.allclose(z.grad, by_hand, atol=1e-6)
    assert ((moved - nearest).abs() < (z.detach() - nearest).abs()).all()
    # KL(P || P) is 0 and KL(P || Q) > 0 otherwise.
    assert kl_loss(p, p).item() == pytest.approx(0.0, abs=1e-7)
    assert kl_loss(soft_assign(z.detach(), MU), p).item() > 0


def test_dec_clusters_separable_blobs():
    gen = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0, 0, 0], [0, 4.0, 0, 0], [0, 0, 4.0, 0]])
    x = torch.cat([c + 0.3 * torch.randn(40, 4, generator=gen) for c in centres])
    true = np.repeat(np.arange(3), 40)
    result = DEC(3, dims=(16, 2), layer_iters=150, finetune_iters=300, update_interval=20,
                 max_iters=200, batch_size=64).fit(x)
    from reidlab.adapt.cluster import cluster_accuracy

    assert cluster_accuracy(result.labels, true) == 1.0
    assert result.embedding.shape == (120, 2) and result.centers.shape == (3, 2)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="soft_assign"):
        soft_assign(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="num_clusters"):
        DEC(1)
