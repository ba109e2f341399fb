"""The train step on CPU, including the AMP code path (bfloat16 autocast on CPU), built with
the same builders as a real run."""

import pytest
import torch

from reidlab.config import load_config
from reidlab.engine.task import build_optimizers, build_task
from reidlab.engine.trainer import make_train_step


def batch(num_ids: int = 4, k: int = 2):
    # 64x32 images: at 32x16, torch 2.13's CPU bfloat16 convolution returned NaN for finite
    # inputs (layer3's strided 3x3 on a 4x2 map, for some initialisations)
    torch.manual_seed(0)
    pids = torch.arange(num_ids).repeat_interleave(k)
    return torch.randn(num_ids * k, 3, 64, 32), pids, torch.zeros_like(pids), pids


def tiny_task(loss: str, *extra: str):
    cfg = load_config(None, ["model.backbone=resnet18", f"loss.name={loss}", "solver.lr=1e-2",
                             *extra])
    task = build_task(cfg, 4)
    return cfg, task, build_optimizers(cfg, task)


@pytest.mark.parametrize("loss", ["softmax", "triplet", "softmax_triplet_center",
                                  "softmax_arcface_triplet"])
@pytest.mark.parametrize("amp", [False, True])
def test_step_runs_and_moves_weights(loss, amp):
    _, task, slots = tiny_task(loss)
    centers = [p for m in task.objective.center_modules() for p in m.parameters()]
    before = task.model.backbone.conv1.weight.detach().clone()
    centers_before = [c.detach().clone() for c in centers]
    step = make_train_step(task, slots, torch.device("cpu"), amp=amp)
    out = step(None, batch())
    assert torch.isfinite(torch.tensor(out["loss"]))
    names = {"softmax": {"id"}, "triplet": {"triplet"}, "softmax_triplet_center":
             {"id", "triplet", "center"}, "softmax_arcface_triplet": {"id", "triplet"}}[loss]
    assert names <= set(out)
    assert not torch.equal(before, task.model.backbone.conv1.weight)
    assert [s.name for s in slots] == (["main", "center"] if centers else ["main"])
    for c, b in zip(centers, centers_before, strict=True):
        assert not torch.equal(c.detach(), b)


def test_learned_weights_are_in_the_main_optimiser_without_decay():
    _, task, slots = tiny_task("softmax_triplet", "loss.weighting=uncertainty")
    weights = set(map(id, task.objective.weighting.parameters()))
    groups = [g for g in slots[0].optimizer.param_groups
              if {id(p) for p in g["params"]} & weights]
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0
    out = make_train_step(task, slots, torch.device("cpu"))(None, batch())
    assert {"s_id", "s_triplet"} <= set(out)


def test_center_gradient_is_rescaled_to_the_center_lr():
    """With weight w, the centres move by lr * dL_center/dc, independent of w."""
    _, task, slots = tiny_task("softmax_triplet_center", "loss.center_weight=0.01",
                               "solver.lr=1e-12", "solver.weight_decay=0.0",
                               "solver.weight_decay_bias=0.0")
    model, center = task.model, task.objective.center_modules()[0]
    assert slots[1].grad_scale == pytest.approx(100.0)
    images, pids, _, _ = batch()
    task.eval()  # BN statistics frozen, so the step sees the features computed here
    task.train = lambda mode=True: task  # type: ignore[method-assign]
    with torch.no_grad():
        feats = model(images, pids).global_feat
    grad = torch.autograd.grad(center(feats, pids), center.centers)[0]
    before = center.centers.detach().clone()
    make_train_step(task, slots, torch.device("cpu"))(None, batch())
    assert torch.allclose(center.centers.detach(), before - 0.5 * grad, atol=1e-5)
