"""What the regression attacks of Balda, Behboodi and Mathar ("Perturbation Analysis of Learning
Algorithms", §III–IV, §VI-B) return, checked against explicit Jacobians: quadratic-ℓ2's direction at
the default settings, quadratic-ℓ1's box-aware rule, the subset rankings of linear-pixel-T, the
block-greedy label of quadratic-ℓ∞ and the realised budget after clipping."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import explicit_jacobian, tiny_regressor

from percviz.attacks import get_attack
from percviz.attacks.base import AttackContext
from percviz.attacks.regression import reg_subset
from percviz.attacks.regression_run import run_regression_attack
from percviz.attacks.solvers.jacobian import Jacobian, lanczos_top_singular_vector, top_singular_vector
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.models.regression import Regressor, load_regressor
from percviz.regression_eval import CurveRun, fig4_figure, output_psnr_curve, report

PHOTOS = ("chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def ae() -> Regressor:
    return load_regressor("autoencoder", "cpu")


def photos(size: int) -> torch.Tensor:
    return torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, size)) for n in PHOTOS])


def explicit_top_vectors(model: Regressor, x: torch.Tensor) -> tuple[list[torch.Tensor], list[float]]:
    """Per image: the top right singular vector of the explicit Jacobian, and σ₂/σ₁."""
    vectors, ratios = [], []
    for image in x:
        jac = torch.func.jacrev(lambda z: model(z[None])[0].flatten())(image).reshape(-1, image.numel())
        _, s, vh = torch.linalg.svd(jac.double())
        vectors.append(vh[0])
        ratios.append(float(s[1] / s[0]))
    return vectors, ratios


def cosines(v: torch.Tensor, refs: list[torch.Tensor]) -> list[float]:
    flat = v.flatten(1).double()
    return [abs(float(flat[i] @ refs[i])) for i in range(len(refs))]


def test_default_quadratic_l2_is_the_top_singular_vector_at_32px(ae: Regressor) -> None:
    """At 32×32 the explicit Jacobians (3072×3072) have σ₂/σ₁ up to 0.996; the default (Lanczos, the
    default iteration budget) reaches |cos| ≥ 0.99 with v_max on every photo, power iteration with the
    same budget does not (measured 0.65 on chelsea) — the reason Lanczos is the default."""
    x = photos(32)
    refs, ratios = explicit_top_vectors(ae, x)
    assert max(ratios) > 0.99  # the hard case: nearly equal top singular values
    steps = int(get_attack("reg_quad").param("steps").default)  # type: ignore[call-overload]
    assert get_attack("reg_quad").param("solver").default == "lanczos"
    ctx = AttackContext(ae, 0, None)
    v, info = lanczos_top_singular_vector(ctx, Jacobian(ctx, x), steps)
    assert min(cosines(v, refs)) >= 0.99, cosines(v, refs)
    assert info["solver"] == "lanczos" and info["converged"] and info["iterations"] <= steps
    assert ctx.backward_passes == info["iterations"] and ctx.forward_passes == info["iterations"] + 2
    ctx = AttackContext(ae, 0, None)
    power, _ = top_singular_vector(ctx, Jacobian(ctx, x), steps)
    assert min(cosines(power, refs)) < 0.99


def test_default_quadratic_l2_at_the_model_size_matches_a_tight_lanczos_run(ae: Regressor) -> None:
    """At 128×128 (49,152 values; no explicit Jacobian) the reference is Lanczos to residual 1e-9;
    the attack's default η is ±ε·v_max there too, and result.json says how the solve went."""
    x = photos(128)
    ctx = AttackContext(ae, 1, None)
    ref, ref_info = lanczos_top_singular_vector(ctx, Jacobian(ctx, x), 300, tol=1e-9)
    assert ref_info["converged"]
    eps = 0.05  # small: clipping leaves the direction alone
    result = run_regression_attack("reg_quad", ae, x, {"p": "2", "eps": eps}, seed=0)
    eta = (result.x_adv - result.x).flatten(1).double()
    eta = eta / eta.norm(dim=1, keepdim=True)
    assert min(cosines(eta, list(ref.flatten(1).double()))) >= 0.99
    saved = json.loads(json.dumps(report(result, ae)))
    assert (
        saved["info"]["solver"] == "lanczos" and "residual" in saved["info"] and "converged" in saved["info"]
    )


def test_box_aware_l1_beats_the_paper_rule_where_the_box_binds() -> None:
    """At ε = 1 a value can move by at most max(x_k, 1 − x_k): the box-aware rule maximises
    ‖J_k‖·min(ε, room_k) over every column (explicit Jacobian), so its linearised objective is ≥ the
    paper's rule's, and here, where the largest column sits on a mid-grey value (room 0.5) among dark
    ones (room ≥ 0.9), strictly larger."""
    model = tiny_regressor()
    g = torch.Generator().manual_seed(3)
    x = 0.02 + 0.08 * torch.rand(1, 3, 8, 8, generator=g)
    x.view(-1)[int(explicit_jacobian(model, x).norm(dim=0).argmax())] = 0.5
    norms = explicit_jacobian(model, x).norm(dim=0)
    flat = x.flatten().double()
    room = torch.minimum(torch.maximum(flat, 1 - flat), torch.tensor(1.0))
    best_box = float((norms * room).max())
    eps, m = 1.0, x.numel()
    box = run_regression_attack("reg_quad", model, x, {"p": "1", "eps": eps, "candidates": m})
    paper = run_regression_attack(
        "reg_quad", model, x, {"p": "1", "eps": eps, "candidates": m, "l1_rule": "paper"}
    )
    assert paper.info["coordinate"][0] == int(norms.argmax())
    assert box.info["linearised_objective"][0] == pytest.approx(best_box, rel=1e-5)
    assert box.info["linearised_objective"][0] >= paper.info["linearised_objective"][0]
    assert box.info["linearised_objective"][0] > 1.05 * paper.info["linearised_objective"][0]
    for result in (box, paper):
        delta = (result.x_adv - x).flatten()
        assert int((delta != 0).sum()) == 1 and result.constraints["lp"][0] <= eps


class _Recording(AttackContext):
    """An attack context that keeps every gradient it hands out (to re-derive a ranking)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.grads: list[torch.Tensor] = []

    def gradient(self, x, objective):  # type: ignore[no-untyped-def]
        grad, value, out = super().gradient(x, objective)
        self.grads.append(grad.detach().clone())
        return grad, value, out


@pytest.mark.parametrize("rule", ["abs", "box"])
def test_linear_pixel_ranks_subsets_by_the_chosen_score(ae: Regressor, rule: str) -> None:
    """One round of linear-pixel-T changes the pixel that maximises the chosen score of the gradient
    it got: Σ|∇L| over the pixel's values (eq. 22) or the gain that survives the box; the formula
    shown is the rule's."""
    x = photos(32)[:2]
    x[:, :, :4, :4] = 1.0  # saturated corner: only the box-aware gain sees that it cannot move up
    spec = get_attack("reg_subset")
    params = spec.validate({"eps": 1.0, "subsets": 1, "subset_score": rule})
    ctx = _Recording(ae, 0, None)
    y0 = ctx.logits(x)
    out = reg_subset(ctx, x.clone(), y0, params)
    (grad,) = ctx.grads
    moved = (x + grad.sign()).clamp(0, 1)
    score = grad.abs() if rule == "abs" else grad * (moved - x)
    expected = score.sum(dim=1).flatten(1).argmax(dim=1)
    changed = (out.x_adv != x).any(dim=1).flatten(1)
    for i in range(x.shape[0]):
        assert changed[i].nonzero().flatten().tolist() == [int(expected[i])]
    formula = spec.formula_for(params)
    assert ("|\\nabla L" in formula) == (rule == "abs") and ("clip" in formula) == (rule == "box")


def test_quadratic_linf_says_it_is_block_greedy_unless_exact(ae: Regressor) -> None:
    x = photos(128)[:1]
    result = run_regression_attack("reg_quad", ae, x, {"p": "inf", "eps": 4 / 255})
    assert not result.info["exact_eq19"]
    assert result.info["method"] == "block-greedy approximation of eq. 19 (40 blocks)"
    assert "block-greedy" in get_attack("reg_quad").summary


def test_the_realised_budget_is_recorded_and_the_curve_uses_it(ae: Regressor) -> None:
    """Clipping to [0, 1] takes norm from quadratic-ℓ2 at ε = 4 (measured ≈ 0.90·ε) while Gaussian
    noise keeps almost all of it; result.json and the Fig. 4 curve carry the realised ‖η‖_p."""
    x = photos(128)
    quad = run_regression_attack("reg_quad", ae, x, {"p": "2", "eps": 4.0, "steps": 10}, seed=0)
    for metrics, measured in zip(quad.metrics, quad.constraints["l2"], strict=True):
        assert metrics["eta_norm"] == pytest.approx(measured, rel=1e-9) and metrics["eta_norm"] <= 4.0
        assert metrics["eta_norm_ratio"] == pytest.approx(metrics["eta_norm"] / 4.0)
    assert min(m["eta_norm_ratio"] for m in quad.metrics) < 0.97  # the box binds
    saved = json.loads(json.dumps(report(quad, ae)))
    assert saved["metrics"]["eta_norm"] == pytest.approx(quad.metrics[0]["eta_norm"])
    rows = output_psnr_curve(ae, x[:1], [CurveRun("reg_quad", {"p": "2", "steps": 10})], [1.0, 4.0])
    assert all(r["realised_norm"] <= r["eps"] for r in rows)
    fig = fig4_figure(rows)
    assert (
        list(fig.data[0].x) == [r["realised_norm"] for r in rows]
        and "realised" in fig.layout.xaxis.title.text
    )
    assert list(fig4_figure(rows, against="nominal").data[0].x) == [1.0, 4.0]
