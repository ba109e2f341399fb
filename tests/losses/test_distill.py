"""Distillation terms against hand-computed values on constructed batches, their minima
and the direction their gradient moves the student."""

import math

import pytest
import torch

from reidlab.losses.distill import ce_dist, distill_terms, logit_dist, tr_dist, with_teacher
from reidlab.losses.objective import Objective
from reidlab.models.reid import ReIDOutput

LN3 = math.log(3.0)


def test_ce_dist_bce_hand_value_and_temperature():
    # T = 10: teacher (10 ln 3, 0) / T gives p_t = (3/4, 1/4); student (0, 0): p_s = (1/2, 1/2).
    # Each element: -(p_t ln 1/2 + (1 - p_t) ln 1/2) = ln 2, so the mean is ln 2.
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[10 * LN3, 0.0]])
    assert ce_dist(student, teacher, 10.0).item() == pytest.approx(math.log(2), abs=1e-6)
    # the soft cross-entropy form (commit 7bcccb9): -(3/4 ln 1/2 + 1/4 ln 1/2) = ln 2 too
    assert ce_dist(student, teacher, 10.0, "soft_ce").item() == pytest.approx(math.log(2))


def test_ce_dist_is_smallest_when_the_student_equals_the_teacher():
    # at s = t the BCE is the mean binary entropy of p_t: H(3/4) for both elements
    teacher = torch.tensor([[LN3, 0.0]])
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert ce_dist(teacher.clone(), teacher, 1.0).item() == pytest.approx(entropy, abs=1e-6)
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 16, generator=g)
    at_min = ce_dist(teacher.clone(), teacher, 2.0)
    for _ in range(20):
        moved = teacher + 0.3 * torch.randn(4, 16, generator=g)
        assert ce_dist(moved, teacher, 2.0) > at_min
        assert ce_dist(moved, teacher, 2.0, "soft_ce") > ce_dist(teacher, teacher, 2.0, "soft_ce")


@pytest.mark.parametrize("form", ["bce", "soft_ce"])
def test_ce_dist_gradient_moves_the_student_towards_the_teacher(form):
    student = torch.zeros(1, 2, requires_grad=True)
    teacher = torch.tensor([[LN3, 0.0]])
    ce_dist(student, teacher, 1.0, form).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]  # descent raises f_0, lowers f_1
    with torch.no_grad():
        stepped = student - 0.5 * student.grad
    gap = (torch.softmax(stepped, 1) - torch.softmax(teacher, 1)).abs().sum()
    assert gap < (torch.softmax(student, 1) - torch.softmax(teacher, 1)).abs().sum()


def plain_batch_hard(feats: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    """Batch-hard triplet loss on L2-normalised features, written out by loops."""
    f = torch.nn.functional.normalize(feats, dim=1).tolist()
    n, total = len(f), 0.0
    for i in range(n):
        d = [math.dist(f[i], f[j]) for j in range(n)]
        ap = max(d[j] for j in range(n) if labels[j] == labels[i])
        an = min(d[j] for j in range(n) if labels[j] != labels[i])
        total += max(0.0, ap - an + margin)
    return total / n


def test_tr_dist_hand_value():
    # Student: ids 0 at (1, 0) twice and ids 1 at (-1, 0) twice: d_ap^s ~ 0, d_an^s = 2.
    # Teacher: (1, 0), (-1, 0) for id 0; (0, 1), (0, -1) for id 1: d_ap^t = 2, d_an^t = sqrt 2.
    # Every anchor: max(0, 2 - sqrt 2 + 0.3).
    labels = torch.tensor([0, 0, 1, 1])
    student = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-3.0, 0.0]])
    teacher = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    expected = 2 - math.sqrt(2) + 0.3
    assert tr_dist(student, teacher, labels, 0.3).item() == pytest.approx(expected, abs=1e-5)


def test_tr_dist_equals_batch_hard_triplet_when_student_equals_teacher():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(12, 8, generator=g)
    labels = torch.arange(3).repeat_interleave(4)
    assert tr_dist(feats, feats.clone(), labels, 0.3).item() == pytest.approx(
        plain_batch_hard(feats, labels, 0.3), abs=1e-5)


def test_tr_dist_gradient_pulls_the_student_positive_in():
    # the student's positive (0, 1) is farther than the teacher's: the gradient on it
    # points away from the anchor (1, 0), so a descent step brings it closer
    labels = torch.tensor([0, 0, 1, 1])
    student = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [-1.0, 0.1]],
                           requires_grad=True)
    teacher = torch.tensor([[1.0, 0.0], [1.0, 0.1], [-1.0, 0.0], [-1.0, 0.1]])
    loss = tr_dist(student, teacher, labels, 0.3)
    loss.backward()
    with torch.no_grad():
        stepped = student - 0.1 * student.grad
    n = torch.nn.functional.normalize
    before = (n(student[1:2], dim=1) - n(student[0:1], dim=1)).norm()
    after = (n(stepped[1:2], dim=1) - n(stepped[0:1], dim=1)).norm()
    assert after < before
    assert tr_dist(stepped, teacher, labels, 0.3) < loss


def test_logit_dist_hand_value_zero_at_equality_and_old_columns_only():
    # T = 2: teacher (2 ln 3, 0) / 2 -> (3/4, 1/4); student old columns (0, 0) -> (1/2, 1/2);
    # KL = 3/4 ln(3/2) + 1/4 ln(1/2); times T^2 = 4. The student's new column is ignored.
    teacher = torch.tensor([[2 * LN3, 0.0]])
    student = torch.tensor([[0.0, 0.0, 5.0]])
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert logit_dist(student, teacher, 2.0).item() == pytest.approx(4 * kl, abs=1e-6)
    same = torch.cat([teacher, torch.tensor([[-7.0]])], dim=1)
    assert logit_dist(same, teacher, 2.0).item() == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="grow"):
        logit_dist(torch.zeros(1, 1), teacher, 2.0)


def test_logit_dist_gradient_moves_the_old_logits_towards_the_teacher():
    student = torch.zeros(1, 3, requires_grad=True)
    teacher = torch.tensor([[LN3, 0.0]])
    logit_dist(student, teacher, 1.0).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]
    assert student.grad[0, 2] == 0  # a new class is not distilled


def output(feat: torch.Tensor, logits: torch.Tensor | None = None) -> ReIDOutput:
    return ReIDOutput(global_feat=feat, feat=feat, logits=logits)


def test_terms_are_named_weighted_and_need_a_teacher():
    terms = distill_terms(2.0, 0.5, 0.0, temperature=1.0, margin=0.3)
    assert [t.name for t in terms] == ["ce_dist", "tr_dist"]
    objective = Objective(list(terms))
    labels = torch.tensor([0, 0, 1, 1])
    g = torch.Generator().manual_seed(2)
    s, t = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    total, values = objective(with_teacher(output(s), output(t)), labels)
    assert set(values) == {"ce_dist", "tr_dist"}
    assert total.item() == pytest.approx(
        2.0 * ce_dist(s, t, 1.0).item() + 0.5 * tr_dist(s, t, labels).item(), rel=1e-6)
    with pytest.raises(ValueError, match="needs a teacher"):
        objective(output(s), labels)


def test_with_teacher_detaches_the_teacher():
    t = torch.randn(2, 3, requires_grad=True)
    out = with_teacher(output(torch.randn(2, 3)), output(t * 2, t * 3))
    assert out.teacher is not None
    assert not out.teacher.feat.requires_grad and not out.teacher.logits.requires_grad
