import pytest
import torch

from reidlab.config import SolverConfig
from reidlab.engine.optim import build_optimizer, build_scheduler, warmup_multistep


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


def test_scheduler_steps_per_epoch_and_bias_groups():
    model = torch.nn.Linear(3, 2)
    cfg = SolverConfig(lr=0.1, bias_lr_factor=2.0, weight_decay=5e-4, weight_decay_bias=0.0,
                       warmup_epochs=2, warmup_factor=0.5, milestones=[3])
    opt = build_optimizer(model.named_parameters(), cfg)
    groups = {id(g["params"][0]): g for g in opt.param_groups}
    assert groups[id(model.weight)]["weight_decay"] == 5e-4
    assert groups[id(model.bias)]["weight_decay"] == 0.0
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(5):
        seen.append((groups[id(model.weight)]["lr"], groups[id(model.bias)]["lr"]))
        opt.step()
        sched.step()
    expected_w = [0.05, 0.075, 0.1, 0.01, 0.01]  # 0.1 x (0.5, 0.75, 1, 0.1, 0.1)
    assert [w for w, _ in seen] == pytest.approx(expected_w)
    assert [b for _, b in seen] == pytest.approx([2 * w for w in expected_w])
