"""Student and teacher of a new task: the grown classifier keeps its old rows bit for bit,
and the teacher gets no gradient, stays in eval mode and does not move in a train step."""

import torch

from reidlab.config import load_config
from reidlab.continual.classifier import make_teacher, start_student
from reidlab.engine.task import Batch, ReIDTask, build_optimizers, build_task
from reidlab.engine.trainer import make_train_step
from reidlab.losses.distill import distill_terms

OVERRIDES = ["model.backbone=resnet18", "model.width=16", "solver.lr=1e-2",
             "solver.warmup_epochs=0", "loss.name=softmax_triplet_center"]


def tiny_task(num_classes: int, seed: int) -> ReIDTask:
    torch.manual_seed(seed)
    return build_task(load_config(None, OVERRIDES), num_classes)


def test_grow_keeps_old_rows_bit_for_bit_and_copies_the_rest():
    previous = tiny_task(5, seed=0).model
    student = tiny_task(8, seed=1).model
    fresh_new_rows = student.classifier.fc.weight[5:].clone()
    start_student(student, previous, "grow")
    old, new = previous.classifier.fc.weight, student.classifier.fc.weight
    assert new.shape == (8, old.shape[1])
    assert torch.equal(new[:5], old)
    assert torch.equal(new[5:], fresh_new_rows)  # the new identities' rows are the fresh ones
    for key, value in previous.state_dict().items():
        if not key.startswith("classifier."):
            assert torch.equal(student.state_dict()[key], value), key


def test_replace_drops_the_old_classifier():
    previous = tiny_task(5, seed=0).model
    student = tiny_task(3, seed=1).model
    fresh = student.classifier.fc.weight.clone()
    start_student(student, previous, "replace")
    assert torch.equal(student.classifier.fc.weight, fresh)
    assert torch.equal(student.neck.bn.running_var, previous.neck.bn.running_var)
    assert make_teacher(previous, "replace").classifier is None
    assert make_teacher(previous, "grow").classifier is not None


def test_teacher_gets_no_gradient_stays_in_eval_and_does_not_move():
    previous = tiny_task(4, seed=0).model
    previous.train()
    # give the teacher BN statistics that a train-mode forward would change
    with torch.no_grad():
        previous(torch.randn(8, 3, 64, 32))
    teacher = make_teacher(previous, "grow")
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    base = tiny_task(6, seed=1)
    start_student(base.model, previous, "grow")
    for term in distill_terms(1.0, 1.0, 1.0, temperature=2.0, margin=0.3):
        base.objective.add_term(term)
    task = ReIDTask(base.model, base.objective, teacher)
    cfg = load_config(None, OVERRIDES)
    slots = build_optimizers(cfg, task)
    assert not any(p is q for s in slots for g in s.optimizer.param_groups for p in g["params"]
                   for q in teacher.parameters())
    step = make_train_step(task, slots, torch.device("cpu"))
    images = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([4, 4, 4, 4, 5, 5, 5, 5])
    student_before = next(task.model.backbone.parameters()).clone()
    out = step(None, Batch(images, {"pid": pids}, torch.zeros(8, dtype=torch.long),
                           torch.arange(8)))
    assert {"ce_dist", "tr_dist", "logit_dist"} <= set(out)
    assert task.model.training and not teacher.training
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN running statistics included
    assert not torch.equal(next(task.model.backbone.parameters()), student_before)
