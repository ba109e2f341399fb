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


def test_notebook_id_weighting_by_hand():
    """loss.weighting=notebook_id: exp(-s) * CE + 0.5 * s on the ID term only; the triplet
    term keeps its fixed metric-loss weight. With s = 0.3, CE = 2, triplet = 3, weight 2:
    total = exp(-0.3) * 2 + 0.15 + 6, and d total / d s = -exp(-0.3) * 2 + 0.5."""
    from reidlab.losses.objective import LossTerm, Objective

    terms = [LossTerm("id", lambda out, y: torch.tensor(2.0)),
             LossTerm("triplet", lambda out, y: torch.tensor(3.0), weight=2.0)]
    objective = Objective(terms, weighting="notebook_id")
    assert objective.weighting is not None and objective.weighting.names == ["id"]
    with torch.no_grad():
        objective.weighting.log_vars.fill_(0.3)
    total, values = objective(None, torch.zeros(1))
    assert total.item() == pytest.approx(math.exp(-0.3) * 2 + 0.15 + 6, rel=1e-6)
    assert set(values) == {"id", "triplet"}
    total.backward()
    assert objective.weighting.log_vars.grad.item() == pytest.approx(
        -math.exp(-0.3) * 2 + 0.5, rel=1e-6)


def test_learned_weights_own_optimiser_and_decay():
    from reidlab.config import load_config
    from reidlab.engine.task import build_optimizers, build_task

    cfg = load_config(None, ["model.backbone=resnet18", "loss.weighting=notebook_id",
                             "loss.weight_solver={lr: 0.5, momentum: 0.9, weight_decay: 1e-4, "
                             "nesterov: true, gamma: 0.95}"])
    task = build_task(cfg, 4)
    slots = {s.name: s for s in build_optimizers(cfg, task)}
    assert set(slots) == {"main", "weights"}
    weights = slots["weights"]
    (group,) = weights.optimizer.param_groups
    assert group["params"][0] is task.objective.weighting.log_vars
    assert (group["momentum"], group["weight_decay"], group["nesterov"]) == (0.9, 1e-4, True)
    weights.set_epoch(3)
    assert group["lr"] == pytest.approx(0.5 * 0.95**2)
    main_params = {id(p) for g in slots["main"].optimizer.param_groups for p in g["params"]}
    assert id(task.objective.weighting.log_vars) not in main_params
