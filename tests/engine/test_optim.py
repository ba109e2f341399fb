import pytest
import torch

from reidlab.config import SolverConfig
from reidlab.engine.optim import build_optimizer, warmup_multistep
from reidlab.engine.task import OptimizerSlot


def test_warmup_multistep_by_hand():
    f = warmup_multistep(SolverConfig(warmup_epochs=10, warmup_factor=0.01,
                                      milestones=[40, 70], gamma=0.1))
    assert f(0) == pytest.approx(0.01)
    assert f(5) == pytest.approx(0.01 * 0.5 + 0.5)  # halfway through warm-up: 0.505
    assert f(10) == pytest.approx(1.0)
    assert f(39) == pytest.approx(1.0)
    assert f(40) == pytest.approx(0.1)
    assert f(69) == pytest.approx(0.1)
    assert f(70) == pytest.approx(0.01)
    assert f(119) == pytest.approx(0.01)


def test_epoch_e_trains_at_the_reference_factor_of_e():
    """reid-strong-baseline steps its scheduler when each epoch starts: epoch 1 at
    0.01 + 0.99 x 1/10 = 0.109, epochs 10-39 at 1, 40-69 at 0.1, 70 on at 0.01."""
    f = warmup_multistep(SolverConfig())
    assert f(1) == pytest.approx(0.109)
    assert f(9) == pytest.approx(0.01 + 0.99 * 0.9)
    assert [f(e) for e in (10, 39, 40, 69, 70, 120)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_slot_schedule_per_epoch_and_bias_groups():
    model = torch.nn.Linear(3, 2)
    cfg = SolverConfig(lr=0.1, bias_lr_factor=2.0, weight_decay=5e-4, weight_decay_bias=0.0,
                       warmup_epochs=2, warmup_factor=0.5, milestones=[3])
    opt = build_optimizer(model.named_parameters(), cfg)
    groups = {id(g["params"][0]): g for g in opt.param_groups}
    assert groups[id(model.weight)]["weight_decay"] == 5e-4
    assert groups[id(model.bias)]["weight_decay"] == 0.0
    slot = OptimizerSlot("main", opt, schedule=warmup_multistep(cfg))
    seen = []
    for epoch in range(1, 6):
        slot.set_epoch(epoch)
        seen.append((groups[id(model.weight)]["lr"], groups[id(model.bias)]["lr"]))
    expected_w = [0.075, 0.1, 0.01, 0.01, 0.01]  # 0.1 x (0.75, 1, 0.1, 0.1, 0.1)
    assert [w for w, _ in seen] == pytest.approx(expected_w)
    assert [b for _, b in seen] == pytest.approx([2 * w for w in expected_w])
    constant = OptimizerSlot("center", torch.optim.SGD(model.parameters(), lr=0.5))
    constant.set_epoch(3)
    assert constant.optimizer.param_groups[0]["lr"] == 0.5


def test_center_solver_momentum_nesterov_decay_and_grad_scale():
    from reidlab.config import Config
    from reidlab.engine.task import build_optimizers, build_task

    cfg = Config.model_validate({
        "model": {"backbone": "resnet18", "width": 16},
        "loss": {"name": "softmax_triplet_center", "center_lr": 0.5, "center_weight": 0.0005,
                 "center_solver": {"momentum": 0.9, "weight_decay": 1e-4, "nesterov": True,
                                   "gamma": 0.995}},
    })
    slots = {s.name: s for s in build_optimizers(cfg, build_task(cfg, num_classes=3))}
    center = slots["center"]
    group = center.optimizer.param_groups[0]
    assert isinstance(center.optimizer, torch.optim.SGD)
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, 1e-4, True)
    assert center.grad_scale == pytest.approx(2000.0)
    for epoch, factor in ((1, 1.0), (2, 0.995), (11, 0.995 ** 10)):
        center.set_epoch(epoch)
        assert group["lr"] == pytest.approx(0.5 * factor)
    plain = Config.model_validate({"model": {"backbone": "resnet18", "width": 16},
                                   "loss": {"name": "softmax_triplet_center"}})
    slot = {s.name: s for s in build_optimizers(plain, build_task(plain, 3))}["center"]
    assert slot.schedule is None and slot.optimizer.param_groups[0]["momentum"] == 0.0
    with pytest.raises(Exception, match="nesterov"):
        Config.model_validate({"loss": {"center_solver": {"nesterov": True}}})
