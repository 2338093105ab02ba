"""Where an attack offers the paper's variant next to ours, the paper's is there and does what it says."""

from __future__ import annotations

import math

import pytest
import torch

from percviz.attacks import get_attack, run_attack
from percviz.attacks.cw import SigmoidBox, TanhBox
from percviz.attacks.perturbation import dither_radius


def test_cw_sigmoid_box_is_tanh_at_twice_the_latent() -> None:
    """Zhang et al. 2020 eq. 4 writes the box as σ(w); C&W's (tanh w + 1)/2 = σ(2w)."""
    x0 = torch.rand(2, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 0.98 + 0.01
    tanh, sig = TanhBox(x0), SigmoidBox(x0)
    torch.testing.assert_close(sig.init(), 2 * tanh.init(), rtol=1e-4, atol=1e-4)
    w = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(tanh.image(w), sig.image(2 * w))
    c, gx = torch.full((2, 1, 1, 1), 3.0), torch.randn(2, 3, 5, 5)
    # chain rule: ∇_w of the same loss is twice ∇_v at v = 2w
    torch.testing.assert_close(tanh.gradient(w, gx, c), 2 * sig.gradient(2 * w, gx, c), rtol=1e-5, atol=1e-6)


def test_cw_paper_presets_use_the_sigmoid_box(tiny, photos32) -> None:
    spec = get_attack("cw_l2")
    assert spec.param("box").default == "tanh" and set(spec.param("box").choices) == {
        "tanh",
        "sigmoid",
        "clip",
    }
    paper = {k: v for k, v in spec.presets.items() if k.startswith("paper")}
    assert paper and all(v["box"] == "sigmoid" for v in paper.values())
    params = {"steps": 5, "search_steps": 1, "step_size": 0.1, "c": 100.0}
    sig = run_attack("cw_l2", tiny, photos32, {**params, "box": "sigmoid"})
    tanh = run_attack("cw_l2", tiny, photos32, {**params, "box": "tanh"})
    assert sig.history[0]["l2"] == pytest.approx(0.0, abs=1e-3)  # starts at the image
    assert sig.history[-1]["l2"] != pytest.approx(tanh.history[-1]["l2"], rel=1e-3)


def _grad(model, x: torch.Tensor, fn) -> torch.Tensor:
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(model(xg)).sum(), xg)
    return g


@pytest.mark.parametrize("attack_id", ["gnm", "balda_iter"])
def test_targeted_loss_is_balda_eq_23(tiny, photos32, attack_id: str) -> None:
    """Targeted: ``L = f_k − f_t`` (eq. 23), not the CW margin ``z_t − max_{i≠t} z_i``."""
    target, k = 3, tiny(photos32).argmax(1)
    params = {"p": "2", "eps": 0.5, "target": target, **({"steps": 1} if attack_id == "balda_iter" else {})}
    result = run_attack(attack_id, tiny, photos32, params)
    g = _grad(tiny, photos32, lambda z: z[:, target] - z.gather(1, k[:, None])[:, 0])
    step = g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) * 0.5
    expected = (photos32 + step).clamp(0, 1)
    torch.testing.assert_close(result.x_adv, expected, atol=2e-6, rtol=0)


def test_minnorm_targeted_uses_eq_23(tiny, photos32) -> None:
    target, k = 3, tiny(photos32).argmax(1)
    result = run_attack("minnorm", tiny, photos32, {"p": "2", "target": target, "overshoot": 0.0})
    z = tiny(photos32)
    loss = (z.gather(1, k[:, None])[:, 0] - z[:, target]).double()
    g = _grad(tiny, photos32, lambda z: z[:, target] - z.gather(1, k[:, None])[:, 0])
    rho = loss / g.flatten(1).double().norm(dim=1)
    torch.testing.assert_close(
        torch.tensor(result.constraints["rho_2"], dtype=torch.float64), rho, rtol=1e-5, atol=1e-7
    )


def test_minnorm_paper_preset_has_one_candidate() -> None:
    spec = get_attack("minnorm")
    assert any(v["candidates"] == 1 and k.startswith("paper") for k, v in spec.presets.items())


def test_subset_printed_rule_picks_the_largest_summed_gradient(tiny, photos32) -> None:
    """``subset_score=abs``: eq. 22's ``argmax_s Σ|∇L|`` over the pixel's three values."""
    result = run_attack("subset", tiny, photos32, {"eps": 0.5, "subsets": 1, "subset_score": "abs"})
    k = tiny(photos32).argmax(1)
    from percviz.attacks.losses import margin

    g = _grad(tiny, photos32, lambda z: margin(z, k))
    best = g.abs().sum(1).flatten(1).argmax(1)
    changed = (result.x_adv != photos32).any(1).flatten(1)
    for i in range(3):
        assert changed[i].nonzero().flatten().tolist() == [int(best[i])]
    assert (
        get_attack("subset").presets["paper linear-pixel-100 (ε = 1, Σ|∇L| ranking)"]["subset_score"] == "abs"
    )


def test_subset_dithering_moves_the_gradient_point_only(tiny, photos32) -> None:
    base = {"eps": 0.5, "subsets": 4}
    plain = run_attack("subset", tiny, photos32, base)
    a = run_attack("subset", tiny, photos32, {**base, "dither": 0.3}, seed=1)
    b = run_attack("subset", tiny, photos32, {**base, "dither": 0.3}, seed=1)
    assert torch.equal(a.x_adv, b.x_adv) and not torch.equal(a.x_adv, plain.x_adv)
    assert max(a.constraints["l0"]) <= 4 and max(a.constraints["linf"]) <= 0.5 + 1e-6
    # one gradient at the dithered point plus one forward at the iterate per round
    assert a.forward_passes == 1 + 2 * len(a.history) + 1 and a.backward_passes == len(a.history)


@pytest.mark.parametrize("p", ["1", "1.5", "3", "inf"])
def test_balda_iter_any_p(tiny, photos32, p: str) -> None:
    result = run_attack("balda_iter", tiny, photos32, {"p": p, "eps": 0.5, "steps": 4, "dither": 0.1})
    assert max(result.constraints["lp"]) <= 0.5 * (1 + 1e-5)
    assert result.within_bound.all()


def test_dither_schedules() -> None:
    assert [dither_radius(0.3, "constant", t, 3) for t in (1, 2, 3)] == [0.3, 0.3, 0.3]
    assert [dither_radius(0.3, "first", t, 3) for t in (1, 2, 3)] == [0.3, 0.0, 0.0]
    assert [dither_radius(0.3, "linear", t, 3) for t in (1, 2, 3)] == pytest.approx([0.3, 0.2, 0.1])


def test_balda_iter_pgd_special_case_preset(tiny, photos32) -> None:
    """Balda et al.: PGD is Algorithm 1 with ε̃₁ = ε and ε̃_t = 0 afterwards."""
    spec = get_attack("balda_iter")
    (preset,) = [v for k, v in spec.presets.items() if "PGD as a special case" in k]
    assert preset["dither"] == preset["eps"] and preset["dither_schedule"] == "first"
    first = run_attack("balda_iter", tiny, photos32, preset, seed=2)
    plain = run_attack("balda_iter", tiny, photos32, {**preset, "dither": 0.0})
    # only the first gradient differs; afterwards it is plain Algorithm 1-T (BIM)
    assert first.forward_passes == plain.forward_passes and not torch.equal(first.x_adv, plain.x_adv)


def test_fast_lpa_defaults_to_unclipped_margin() -> None:
    assert get_attack("fast_lpa").param("kappa").default == math.inf
    assert (
        get_attack("lpa").param("kappa").default == 1.0 and get_attack("ppgd").param("kappa").default == 1.0
    )


def test_qpgd_paper_presets_use_margin_loss() -> None:
    paper = {k: v for k, v in get_attack("qpgd_l2").presets.items() if k.startswith("paper")}
    assert paper and all(v["loss"] == "cw" and v["kappa"] == 0.0 for v in paper.values())


@pytest.mark.parametrize(("eps1", "eps2"), [(0.0, 0.05), (0.05, 0.11)])
def test_exact_solver_reports_a_true_duality_gap(eps1: float, eps2: float) -> None:
    """The gap is D(λ, ν) − gᵀy with D the dual function: ≈ 0 at the solver's multipliers, > 0 at
    others (weak duality), and D bounds cvxpy's optimum from above."""
    from percviz.attacks.solvers import qcqp

    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3 * 12 * 12, generator=gen, dtype=torch.float64)
    x[1] = x[1] * 0.3 + 0.7  # many values end at the box
    g = torch.randn(3, 3 * 12 * 12, generator=gen, dtype=torch.float64)
    sol = qcqp.solve(x, g, eps1, eps2, "exact")
    assert torch.isfinite(sol.duality_gap).all() and sol.duality_gap.abs().max() < 1e-9
    unit = g / g.norm(dim=-1, keepdim=True)
    bd = qcqp.make_bounds(x, eps1, eps2)
    for scale in (0.5, 2.0):
        dual = qcqp.lagrangian_dual(unit, bd, sol.dual_norm * scale, sol.dual_mean)
        assert (dual - sol.objective > 1e-6).all()
    if qcqp.cvxpy_available()[0]:
        ref = qcqp.solve(x, g, eps1, eps2, "cvxpy")
        torch.testing.assert_close(ref.objective, sol.objective, rtol=1e-6, atol=1e-7)


def test_pgap_reports_the_exact_duality_gap(tiny, photos32) -> None:
    result = run_attack("pgap", tiny, photos32, {"eps1": 0.05, "eps2": 0.11, "steps": 2})
    gaps = [v for row in result.info["duality_gap"] for v in row]
    assert gaps and all(math.isfinite(v) and abs(v) < 1e-9 for v in gaps)
