"""The train step on CPU, including the AMP code path (bfloat16 autocast on CPU)."""

import pytest
import torch

from reidlab.config import LossConfig, ModelConfig, SolverConfig
from reidlab.engine.optim import build_optimizer
from reidlab.engine.trainer import make_train_step
from reidlab.losses.objective import build_objective, uses_arcface
from reidlab.models.build import build_model


def batch(num_ids: int = 4, k: int = 2):
    torch.manual_seed(0)
    pids = torch.arange(num_ids).repeat_interleave(k)
    return torch.randn(num_ids * k, 3, 32, 16), pids, torch.zeros_like(pids), pids


@pytest.mark.parametrize("loss", ["softmax", "triplet", "softmax_triplet_center",
                                  "softmax_arcface_triplet"])
@pytest.mark.parametrize("amp", [False, True])
def test_step_runs_and_moves_weights(loss, amp):
    cfg = LossConfig(name=loss)
    model = build_model(ModelConfig(backbone="resnet18"), 4, arcface=uses_arcface(loss), loss=cfg)
    objective = build_objective(cfg, 4, model.feat_dim)
    opt = build_optimizer(model.named_parameters(), SolverConfig(lr=1e-2))
    centers = [p for m in objective.center_modules() for p in m.parameters()]
    center_opt = torch.optim.SGD(centers, lr=0.5) if centers else None
    before = model.backbone.conv1.weight.detach().clone()
    step = make_train_step(model, objective, opt, torch.device("cpu"), center_opt,
                           cfg.center_weight, amp=amp)
    out = step(None, batch())
    assert torch.isfinite(torch.tensor(out["loss"]))
    names = {"softmax": {"id"}, "triplet": {"triplet"}, "softmax_triplet_center":
             {"id", "triplet", "center"}, "softmax_arcface_triplet": {"id", "triplet"}}[loss]
    assert names <= set(out)
    assert not torch.equal(before, model.backbone.conv1.weight)
    if centers:
        assert not torch.equal(centers[0].detach(), objective.center_modules()[0].centers * 0)


def test_center_gradient_is_rescaled_to_the_center_lr():
    """With weight w, the centres move by lr * dL_center/dc, independent of w."""
    cfg = LossConfig(name="softmax_triplet_center", center_weight=0.01)
    model = build_model(ModelConfig(backbone="resnet18"), 4, loss=cfg)
    objective = build_objective(cfg, 4, model.feat_dim)
    center = objective.center_modules()[0]
    opt = build_optimizer(model.named_parameters(), SolverConfig(lr=0.0, weight_decay=0.0,
                                                                 weight_decay_bias=0.0))
    center_opt = torch.optim.SGD(center.parameters(), lr=0.5)
    images, pids, _, _ = batch()
    model.eval()  # BN statistics frozen, so the step sees the features computed here
    model.train = lambda mode=True: model  # type: ignore[method-assign]
    with torch.no_grad():
        feats = model(images, pids).global_feat
    grad = torch.autograd.grad(center(feats, pids), center.centers)[0]
    before = center.centers.detach().clone()
    step = make_train_step(model, objective, opt, torch.device("cpu"), center_opt, 0.01)
    step(None, (images, pids))
    assert torch.allclose(center.centers.detach(), before - 0.5 * grad, atol=1e-5)
