"""The technique math as plain functions, and argument validation, without a Trainer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.techniques import (
    FGM,
    L2SP,
    PGD,
    SMART,
    AdversarialEvaluation,
    Distillation,
    FreeLB,
    Mixup,
    RDrop,
    TechniqueConfigError,
)
from zoo.techniques.adversarial import (
    apply_delta,
    ascent_step,
    embedding_grad,
    fgm_perturb,
    normalize_direction,
    pgd_delta,
    project,
    smart_delta,
)
from zoo.techniques.distillation import distillation_term
from zoo.techniques.divergence import output_divergence
from zoo.techniques.l2sp import l2sp_penalty
from zoo.techniques.mixing import cutmix_box, mix_embeddings, mix_targets, paste_box
from zoo.techniques.rdrop import rdrop_term


def test_normalize_direction_is_per_sample():
    g = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    d = normalize_direction(g, "l2")
    assert torch.allclose(d.norm(dim=1), torch.ones(2))
    assert torch.equal(normalize_direction(g, "linf"), torch.tensor([[1.0, 1.0], [0.0, 1.0]]))


def test_project_onto_ball():
    delta = torch.tensor([[3.0, 4.0], [0.1, 0.0]])
    p = project(delta, 1.0, "l2")
    assert torch.allclose(p[0], torch.tensor([0.6, 0.8]))
    assert torch.equal(p[1], delta[1])  # inside the ball: unchanged
    assert torch.equal(project(delta, 0.5, "linf"), torch.tensor([[0.5, 0.5], [0.1, 0.0]]))


def test_fgm_on_a_dict_moves_float_leaves_only_and_clamps():
    emb = {"user": torch.zeros(2, 3), "mask": torch.ones(2, 3, dtype=torch.long)}
    grad = {"user": torch.tensor([[1.0, 0.0, 0.0], [0.0, -2.0, 0.0]]), "mask": torch.zeros(2, 3, dtype=torch.long)}
    adv = fgm_perturb(emb, grad, eps=0.5)
    assert torch.allclose(adv["user"], torch.tensor([[0.5, 0.0, 0.0], [0.0, -0.5, 0.0]]))
    assert adv["mask"] is emb["mask"]
    clamped = fgm_perturb(emb, grad, eps=0.5, norm="linf", bounds=(0.0, 1.0))
    assert clamped["user"].min() >= 0.0 and clamped["user"].max() <= 1.0


def test_embedding_grad_uses_autograd_grad_and_keeps_graph():
    w = torch.randn(3, requires_grad=True)
    emb = torch.randn(2, 3, requires_grad=True)
    loss = (emb * w).sum()
    g = embedding_grad(loss, emb)
    assert torch.allclose(g, w.detach().expand(2, 3))
    assert w.grad is None  # no parameter gradient produced
    loss.backward()  # the graph is still there for the step's one backward
    assert w.grad is not None


def test_pgd_on_a_linear_loss_reaches_the_boundary_along_the_gradient():
    w = torch.tensor([1.0, 2.0, 2.0])
    emb = torch.zeros(4, 3)
    delta = pgd_delta(lambda e: (e * w).sum(), emb, eps=0.3, steps=5, alpha=0.1)
    expected = 0.3 * w / w.norm()
    assert torch.allclose(delta, expected.expand(4, 3), atol=1e-5)
    box = pgd_delta(lambda e: (e * w).sum(), emb + 0.95, eps=0.3, steps=3, alpha=0.2, norm="linf", bounds=(0.0, 1.0))
    assert torch.allclose(apply_delta(emb + 0.95, box), torch.ones(4, 3))  # clamped to the valid range


def test_output_divergence_kinds():
    a, b = torch.randn(4, 5), torch.randn(4, 5)
    assert float(output_divergence(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert float(output_divergence(a, b)) == pytest.approx(float(output_divergence(b, a)), rel=1e-5)
    assert float(output_divergence(a, b)) > 0
    s, t = torch.randn(6), torch.randn(6)
    assert float(output_divergence(s, t)) == pytest.approx(float(F.mse_loss(t, s)), rel=1e-6)
    d = output_divergence({"pos": s, "neg": t}, {"pos": t, "neg": t})
    assert float(d) == pytest.approx(float(F.mse_loss(t, s)), rel=1e-6)


def test_distillation_term_is_t2_scaled_kl_of_teacher_to_student():
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    T = 3.0
    p = F.softmax(teacher / T, -1)
    manual = (p * (p.log() - F.log_softmax(student / T, -1))).sum(-1).mean() * T * T
    assert float(distillation_term(student, teacher, T)) == pytest.approx(float(manual), rel=1e-5)


def test_mix_targets_and_embeddings():
    target = torch.tensor([0, 2])
    perm = torch.tensor([1, 0])
    soft = mix_targets(target, 3, perm, 0.7)
    assert torch.allclose(soft, torch.tensor([[0.7, 0.0, 0.3], [0.3, 0.0, 0.7]]))
    emb = {"tokens": torch.tensor([[1.0], [3.0]]), "mask": torch.tensor([[1], [0]])}
    mixed = mix_embeddings(emb, perm, 0.75)
    assert torch.allclose(mixed["tokens"], torch.tensor([[1.5], [2.5]]))
    assert mixed["mask"] is emb["mask"]


def test_cutmix_box_area_and_paste():
    rng = np.random.default_rng(0)
    top, bottom, left, right = cutmix_box(8, 8, 0.75, rng)
    assert 0 <= top < bottom <= 8 and 0 <= left < right <= 8
    images = torch.stack([torch.zeros(1, 8, 8), torch.ones(1, 8, 8)])
    pasted = paste_box(images, torch.tensor([1, 0]), (2, 4, 2, 4))
    assert float(pasted[0].sum()) == 4.0 and float(pasted[1].sum()) == 60.0
    assert float(images[0].sum()) == 0.0  # input untouched


def test_l2sp_penalty():
    params = {"a": torch.tensor([1.0, 2.0]), "head": torch.tensor([3.0])}
    ref = {"a": torch.tensor([0.0, 0.0])}
    assert float(l2sp_penalty(params, ref, alpha=0.1, beta=0.2)) == pytest.approx(0.05 * 5 + 0.1 * 9)


def test_mixup_state_dict_restores_the_draws():
    a = Mixup(alpha=0.4, seed=3)
    a.draw(8, "cpu")
    state = a.state_dict()
    lam1, perm1 = a.draw(8, "cpu")
    b = Mixup(alpha=0.4, seed=99)
    b.load_state_dict(state)
    lam2, perm2 = b.draw(8, "cpu")
    assert lam1 == lam2 and torch.equal(perm1, perm2)


# -- bad inputs: one clear error each --------------------------------------------------------------------
@pytest.mark.parametrize("cls", [FGM, PGD, FreeLB, SMART])
def test_negative_epsilon_is_refused(cls):
    with pytest.raises(TechniqueConfigError, match=rf"{cls.__name__}: eps must be > 0 .*got -0.1"):
        cls(eps=-0.1)


def test_pgd_with_zero_steps_is_refused():
    with pytest.raises(TechniqueConfigError, match=r"PGD: steps must be an integer >= 1.*got 0"):
        PGD(eps=0.1, steps=0)
    with pytest.raises(TechniqueConfigError, match="steps must be an integer >= 1"):
        AdversarialEvaluation(eps=0.1, steps=0)


@pytest.mark.parametrize("kwargs,match", [
    ({"norm": "l3"}, "norm must be one of l2, linf"),
    ({"clamp": [1, 0]}, "clamp must be 'auto', 'none' or"),
])
def test_other_bad_adversarial_arguments(kwargs, match):
    with pytest.raises(TechniqueConfigError, match=match):
        FGM(eps=0.1, **kwargs)


def test_bad_regularization_arguments():
    with pytest.raises(TechniqueConfigError, match="RDrop: alpha must be > 0"):
        RDrop(alpha=0)
    with pytest.raises(TechniqueConfigError, match="Mixup: alpha must be > 0"):
        Mixup(alpha=-1)
    with pytest.raises(TechniqueConfigError, match="L2SP: beta must be >= 0"):
        L2SP(beta=-1)
    with pytest.raises(TechniqueConfigError, match="Distillation: temperature must be > 0"):
        Distillation(teacher="x.ckpt", temperature=0)
    with pytest.raises(ValueError, match="probability must be in"):
        FGM(eps=0.1, probability=2.0)
    assert math.isfinite(FGM(eps=0.1).eps)


def test_rdrop_term_is_symmetric_kl_for_logits_and_mse_for_scores():
    a, b = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]]), torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 2.0]])
    assert rdrop_term(a, a) == pytest.approx(0.0, abs=1e-7)
    assert rdrop_term(a, b) == pytest.approx(float(rdrop_term(b, a)))
    pa, pb = F.log_softmax(a, -1), F.log_softmax(b, -1)
    kl = lambda p, q: float((p.exp() * (p - q)).sum(-1).mean())  # noqa: E731
    assert float(rdrop_term(a, b)) == pytest.approx(0.5 * (kl(pa, pb) + kl(pb, pa)), rel=1e-5)
    scores1, scores2 = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 4.0])  # recommendation scores: MSE
    assert float(rdrop_term(scores1, scores2)) == pytest.approx(2.0)
    both = rdrop_term({"logits": a, "mask": torch.ones(2, dtype=torch.long)},
                      {"logits": b, "mask": torch.zeros(2, dtype=torch.long)})
    assert float(both) == pytest.approx(float(rdrop_term(a, b)))  # integer leaves are not compared


def test_ascent_step_and_smart_delta_stay_in_the_ball():
    delta = torch.zeros(3, 4)
    grad = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    step = ascent_step(delta, grad, alpha=0.5, eps=0.2)
    assert torch.all(step.norm(dim=1) <= 0.2 + 1e-6)
    net = torch.nn.Linear(4, 3)
    emb = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    d = smart_delta(net, emb, net(emb).detach(), eps=0.1, steps=2, noise=0.1, norm="linf")
    assert d.shape == emb.shape and not d.requires_grad and float(d.abs().max()) <= 0.1 + 1e-6
