"""Regression attacks of Balda, Behboodi and Mathar, "Perturbation Analysis of Learning Algorithms"
(§III–IV, §VI-B): maximise the output distortion ``‖f(x + η) − f(x)‖₂²`` of a regression model
``f: R^M → R^K`` (an autoencoder, an embedding) under ``‖η‖_p ≤ ε``, with ``y ≈ f(x)`` (§III).

- ``reg_quad`` (quadratic-ℓp, eq. 12): linearise ``f`` and maximise ``‖J η‖²``. p = 2: ``η = ±ε v_max``,
  the top right singular vector of the Jacobian ``J`` by power iteration on ``JᵀJ`` with JVPs and
  VJPs (eq. 13; ``J`` is never stored). p = 1: ``±ε e_k`` for the column of ``J`` with the largest
  norm (eq. 14). p = ∞: the greedy sign rule (eq. 19, the case S = 1).
- ``reg_linear`` (linear-ℓp-T, eq. 15 and Algorithm 1): T gradient steps of ℓp norm ε/T. The
  gradient ``2Jᵀ(f(x+η) − f(x))`` is exactly zero at ``η = 0``, so each step linearises at a point
  dithered within ε̃ (eq. 9); without dithering the attack stays at ``η = 0``.
- ``reg_subset`` (linear-pixel-T, eq. 21–22 with §V's multiple-subset Algorithm 1): T rounds, each
  setting the not yet used pixel (or block) with the largest linearised gain to ``x ± ε``.
- ``reg_random``: the paper's baselines (random-ℓ2: Gaussian direction of norm ε; random-ℓ∞: ±ε
  Bernoulli; random-pixel-T: the same on T random pixels).

:func:`~percviz.attacks.regression_run.run_regression_attack` is their template (the regression
counterpart of :func:`~percviz.attacks.base.run_attack`); the matrix-free Jacobian products live in
:mod:`percviz.attacks.solvers.jacobian`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from percviz.attacks._norms import lp_norm, measure_lp, parse_p, project, random_in_ball, steepest_step
from percviz.attacks.base import (
    AttackContext,
    AttackOutput,
    AttackSpec,
    register,
)
from percviz.attacks.bounds import Constraint
from percviz.attacks.params import STEPS, SUBSET_FORMULAS, SUBSET_SCORE, with_default
from percviz.attacks.regression_quad import QUAD, best_sign, snap_linf
from percviz.attacks.schema import Param
from percviz.attacks.solvers.jacobian import _unit

SOURCE = "Balda, Behboodi, Mathar, Perturbation Analysis of Learning Algorithms"
FAMILY = "regression (perturbation analysis)"


# --- the attacks ------------------------------------------------------------------------------


def reg_quad(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """quadratic-ℓp (eq. 12): the maximiser of ``‖J_f(x) η‖²`` over ``‖η‖_p ≤ ε``, sign by the true f."""
    p = parse_p(params["p"])
    eta, info = QUAD[p](ctx, x, y0, params)
    eta = best_sign(ctx, x, y0, eta)
    x_adv = project(x, x + eta, p, params["eps"])
    if p != 2.0:
        x_adv = snap_linf(x, x_adv, params["eps"])
    return AttackOutput(x_adv, info=info)


def _distortion(y0: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    return lambda out, _x: (out - y0).pow(2).flatten(1).sum(1)


def reg_linear(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """linear-ℓp-T (eq. 15, Algorithm 1): ``η_{t+1} = η_t + argmax_{‖η‖_p ≤ ε/T} ηᵀ∇L(x, η̃_t)``.

    ``L(x, η) = ‖f(x+η) − f(x)‖²``, ``η̃_t = η_t + random(ε̃)`` with ``ε̃ = min(dither, ε)`` (eq. 9).
    Each step is the closed form of eq. 5; the iterate stays in the ℓp ball and in [0, 1].
    """
    p, eps, steps = parse_p(params["p"]), params["eps"], params["steps"]
    radius = min(params["dither"], eps)
    obj = _distortion(y0)
    x_adv = x.clone()
    for t in range(steps):
        x_eval = x_adv
        if radius > 0:
            x_eval = (x_adv + random_in_ball(ctx, x.shape, p, radius)).clamp(0.0, 1.0)
        grad, value, _ = ctx.gradient(x_eval, obj)
        x_adv = project(x, x_adv + steepest_step(grad, p, eps / steps), p, eps)
        if ctx.step(t + 1, steps, loss_at_eval_point=value.mean(), grad_norm=lp_norm(grad, 2.0).max()):
            break
    if math.isinf(p):
        x_adv = snap_linf(x, x_adv, eps)
    return AttackOutput(x_adv, info={"dither_radius": radius})


def _block_sums(values: torch.Tensor, size: int) -> torch.Tensor:
    """``N×H×W`` → ``N×B`` sums over ``size×size`` blocks (edge blocks may be smaller)."""
    h, w = values.shape[-2:]
    padded = F.pad(values, (0, (-w) % size, 0, (-h) % size))
    return F.avg_pool2d(padded[:, None], size).flatten(1) * size * size


def _block_mask(chosen: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """``N×B`` bool → ``N×1×H×W`` bool pixel mask."""
    hb, wb = -(-h // size), -(-w // size)
    grid = chosen.view(-1, 1, hb, wb)
    return grid.repeat_interleave(size, dim=2).repeat_interleave(size, dim=3)[..., :h, :w]


def reg_subset(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """linear-pixel-T: multiple subset attack (eq. 21–22, §V), T = ``subsets`` rounds.

    Each round takes ``g = ∇L(x, η̃_t)`` at a point dithered within ε̃ (L∞) of the current iterate
    and sets the unused subset with the best score to ``clip(x + ε·sign g)``: ``subset_score =
    abs`` ranks by ``Σ|g_i|`` (the paper's eq. 22), ``box`` (default) by the gain that survives
    the [0, 1] box, ``Σ g_i·(clip(x_i + ε·sign g_i) − x_i^{(t)})``.
    """
    eps, rounds, size = params["eps"], params["subsets"], params["subset_size"]
    radius = min(params["dither"], eps)
    obj = _distortion(y0)
    n, _, h, w = x.shape
    rows = torch.arange(n, device=x.device)
    x_adv = x.clone()
    used = torch.zeros(n, (-(-h // size)) * (-(-w // size)), dtype=torch.bool, device=x.device)
    for t in range(rounds):
        x_eval = x_adv
        if radius > 0:
            x_eval = (x_adv + random_in_ball(ctx, x.shape, math.inf, radius)).clamp(0.0, 1.0)
        grad, value, _ = ctx.gradient(x_eval, obj)
        moved = (x + eps * grad.sign()).clamp(0.0, 1.0)
        gain = grad.abs() if params["subset_score"] == "abs" else grad * (moved - x_adv)
        score = _block_sums(gain.sum(dim=1), size).masked_fill(used, float("-inf"))
        best = score.argmax(dim=1)
        pick = score[rows, best] > 0
        chosen = torch.zeros_like(used)
        chosen[rows[pick], best[pick]] = True
        used |= chosen
        x_adv = torch.where(_block_mask(chosen, size, h, w), moved, x_adv)
        if ctx.step(t + 1, rounds, loss_at_eval_point=value.mean(), changed=float(pick.sum())):
            break
    x_adv = snap_linf(x, x_adv, eps)
    return AttackOutput(x_adv, constraints={"subsets_changed": used.sum(dim=1).double()})


def reg_random(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """random-ℓp baselines (§VI-B): p = 2 ``ε w/‖w‖₂`` (Gaussian w); p = ∞ ``±ε`` Bernoulli(1/2);
    p = 1 ``±ε`` on one random value. ``subsets = T > 0`` restricts the noise to T random pixels
    (random-pixel-T)."""
    p, eps, count = parse_p(params["p"]), params["eps"], params["subsets"]
    n, c, h, w = x.shape
    mask = torch.ones(n, 1, h, w, dtype=x.dtype, device=x.device)
    if 0 < count < h * w:
        pixels = ctx.rand((n, h * w)).argsort(dim=1)[:, :count]
        mask = torch.zeros(n, h * w, dtype=x.dtype, device=x.device).scatter_(1, pixels, 1.0).view(n, 1, h, w)
    if math.isinf(p):
        eta = eps * torch.where(ctx.rand(x.shape) < 0.5, -1.0, 1.0).to(x.dtype) * mask
    elif p == 2.0:
        z = ctx.randn(x.shape) * mask
        eta = eps * (1.0 - 1e-6) * _unit(z)
    else:
        score = (ctx.rand(x.shape) * mask.expand_as(x)).flatten(1)
        k = score.argmax(dim=1)
        sign = torch.where(ctx.rand((n,)) < 0.5, -1.0, 1.0).to(x.dtype)
        eta = torch.zeros(n, c * h * w, dtype=x.dtype, device=x.device)
        eta[torch.arange(n), k] = eps * sign
        eta = eta.view_as(x)
    ctx.step(1, 1)
    x_adv = (x + eta).clamp(0.0, 1.0)
    return AttackOutput(x_adv if p == 2.0 else snap_linf(x, x_adv, eps))


# --- registry entries ------------------------------------------------------------------------

P_REG = Param(
    name="p",
    kind="choice",
    default="2",
    choices=("1", "2", "inf"),
    help="Norm of the budget: 2 (whole-image L2), inf (per value) or 1 (one value changes).",
    source=f"{SOURCE}, eq. 12–15",
)
EPS_REG = Param(
    name="eps",
    kind="float",
    default=1.0,
    low=0.0,
    high=1000.0,
    unit="ℓp norm of the whole perturbation, [0,1] units",
    help="Budget ‖η‖_p ≤ eps in the chosen norm, same units as the classifier attacks (L∞ per value "
    "in [0,1], e.g. 4/255; L2 over the whole image, e.g. 1).",
    label="ε (ℓp)",
)
DITHER_REG = Param(
    name="dither",
    kind="float",
    default=0.1,
    low=0.0,
    high=1000.0,
    unit="ℓp norm, [0,1] units (capped at ε)",
    help="Dithering radius ε̃: each step linearises at a random point within ε̃ of the iterate. "
    "Needed: the gradient of ‖f(x+η) − f(x)‖² is zero at η = 0, so with 0 the attack never moves.",
    source=f"{SOURCE}, §III-B and eq. 9",
)
BOUND_LP = Constraint(distance="lp", kind="hard", param="eps", measure=measure_lp, text="‖x_adv − x‖_p ≤ eps")
BOUND_LINF = Constraint(distance="linf", kind="hard", param="eps", text="‖x_adv − x‖∞ ≤ eps")


def _pixel_limit(params: Mapping[str, Any]) -> float:
    return float(params["subsets"] * params.get("subset_size", 1) ** 2) if params["subsets"] else math.inf


BOUND_PIXELS = Constraint(
    distance="l0", kind="hard", limit=_pixel_limit, text="at most subsets·subset_size² pixels change"
)

register(
    AttackSpec(
        id="reg_quad",
        title="Quadratic-ℓp (top singular vector)",
        family=FAMILY,
        source=f"{SOURCE}, §III-A eq. 12–14, §IV-A eq. 19",
        summary="Linearise the model and maximise the linearised output change ‖Jη‖² within the budget. "
        "For L2 the answer is ε times the Jacobian's top right singular vector, found with "
        "Jacobian-vector products (the Jacobian is never stored) by Lanczos — the paper names power "
        "iteration, kept as solver = power, which converges far more slowly when σ₂ ≈ σ₁; for L1 the "
        "single value whose column times its room inside [0, 1] is largest (the paper's largest column "
        "with L1 rule = paper); for L∞ a block-greedy approximation of eq. 19's sign rule (exact with "
        "M − 1 blocks). One shot, no iterations on the input.",
        formula=r"\max_{\|\eta\|_p\le\varepsilon}\|J_f(x)\,\eta\|_2^2,\quad p=2:\ \eta=\pm\varepsilon\,v_{\max}(J_f^\top J_f)",
        params=(
            P_REG,
            EPS_REG,
            Param(
                name="steps",
                kind="int",
                default=40,
                low=1,
                high=1000,
                help="p = 2: Lanczos (or power) iterations at most, one JVP and one VJP each; stops when "
                "the residual ‖JᵀJv − λv‖/λ is below 1e-6; p = ∞: sign blocks of the block-greedy "
                "eq. 19 (more = closer; M − 1 with candidates ≥ M = exact eq. 19).",
                source=f"{SOURCE}, eq. 13 and 19",
                label="iterations (p = 2) / sign blocks (p = ∞)",
                used_when=(("p", ("2", "inf")),),
            ),
            Param(
                name="solver",
                kind="choice",
                default="lanczos",
                choices=("lanczos", "power"),
                help="p = 2: how v_max is found. lanczos (default): Krylov iteration with full "
                "reorthogonalisation, reaches v_max when σ₂/σ₁ is near 1; power: the paper's power "
                "iteration (eq. 13), which then returns a mix of the top singular vectors.",
                source=f"{SOURCE}, eq. 13",
                used_when=(("p", ("2",)),),
            ),
            Param(
                name="l1_rule",
                kind="choice",
                default="box",
                choices=("box", "paper"),
                help="p = 1: which value changes. box (default): the largest ‖J_k‖·min(ε, room_k), "
                "room_k = max(x_k, 1 − x_k), what survives clipping to [0, 1]; paper: the largest "
                "column ‖J_k‖ (eq. 14), which may pick a value that can barely move.",
                source=f"{SOURCE}, eq. 14",
                label="L1 rule",
                used_when=(("p", ("1",)),),
            ),
            Param(
                name="candidates",
                kind="int",
                default=16,
                low=1,
                high=1_000_000,
                help="p = 1: columns of the Jacobian measured exactly (one JVP each), chosen by an "
                "estimate of all column norms; ≥ the number of values = exact eq. 14 (and, for "
                "p = ∞, the exact column order of eq. 19).",
                source=f"{SOURCE}, eq. 14",
                used_when=(("p", ("1", "inf")),),
            ),
        ),
        fn=reg_quad,
        presets={
            "quadratic-ℓ2 (ε = 1)": {"p": "2", "eps": 1.0},
            "quadratic-ℓ∞ (ε = 4/255)": {"p": "inf", "eps": 4 / 255},
            "quadratic-ℓ1 single value (ε = 1)": {"p": "1", "eps": 1.0},
        },
        bound="‖x_adv − x‖_p ≤ ε",
        strength="eps",
        iteration_params=("steps",),
        cost_params=("candidates",),
        constraints=(BOUND_LP,),
        task="regression",
    )
)

register(
    AttackSpec(
        id="reg_linear",
        title="Linear-ℓp-T (Algorithm 1, dithering)",
        family=FAMILY,
        source=f"{SOURCE}, §III-B eq. 15, eq. 9, §V Algorithm 1",
        summary="T gradient-ascent steps of ℓp norm ε/T on the output distortion ‖f(x+η) − f(x)‖². Its "
        "gradient is exactly zero at η = 0, so every step is linearised at a randomly dithered point; "
        "set the dithering radius to 0 to see the attack stay at η = 0.",
        formula=r"\eta_{t+1}=\eta_t+\arg\max_{\|\eta\|_p\le\varepsilon/T}\eta^\top\nabla L(x,\eta_t+\tilde\eta_t),"
        r"\ \|\tilde\eta_t\|_p\le\tilde\varepsilon",
        params=(P_REG, EPS_REG, STEPS, DITHER_REG),
        fn=reg_linear,
        presets={
            "linear-ℓ2-10 (ε = 1)": {"p": "2", "eps": 1.0, "steps": 10, "dither": 0.1},
            "linear-ℓ∞-10 (ε = 4/255)": {"p": "inf", "eps": 4 / 255, "steps": 10, "dither": 1 / 255},
            "no dithering (stalls at η = 0)": {"p": "2", "eps": 1.0, "steps": 10, "dither": 0.0},
        },
        bound="‖x_adv − x‖_p ≤ ε",
        strength="eps",
        iteration_params=("steps",),
        constraints=(BOUND_LP,),
        task="regression",
    )
)

register(
    AttackSpec(
        id="reg_subset",
        title="Linear-pixel-T (multiple subset)",
        family=FAMILY,
        source=f"{SOURCE}, §IV-B eq. 21–22, §V (multiple subsets), §VI-B linear-pixel-T",
        summary="Changes only T pixels (3 values each) or small blocks: each round linearises the output "
        "distortion at a dithered point and pushes the unused pixel with the best score by ε along the "
        "gradient sign — by default the gain that survives the [0, 1] box; the paper's Σ|∇L| (eq. 22) "
        "with subset ranking = abs. subsets = 1 is the single-pixel attack.",
        formula=SUBSET_FORMULAS["box"],
        formula_variants={"subset_score": SUBSET_FORMULAS},
        params=(
            Param(
                name="eps",
                kind="float",
                default=1.0,
                low=0.0,
                high=1.0,
                unit="[0,1] pixel units",
                help="L∞ change of each value of a chosen pixel (1 = any value).",
                label="ε (L∞)",
            ),
            Param(
                name="subsets",
                kind="int",
                default=100,
                low=1,
                high=100000,
                help="T: how many pixels (or blocks) change, one per round (one gradient each).",
                source=f"{SOURCE}, §V",
            ),
            Param(
                name="subset_size",
                kind="int",
                default=1,
                low=1,
                high=64,
                unit="pixels",
                help="Side of the square blocks forming the subsets (1 = single pixels).",
                source=f"{SOURCE}, §IV",
            ),
            SUBSET_SCORE,
            with_default(DITHER_REG, 0.05, unit="L∞, [0,1] units (capped at ε)"),
        ),
        fn=reg_subset,
        presets={
            "linear-pixel-100 (ε = 1)": {"eps": 1.0, "subsets": 100},
            "paper linear-pixel-100 (ε = 1, Σ|∇L| ranking)": {
                "eps": 1.0,
                "subsets": 100,
                "subset_score": "abs",
            },
            "single pixel (ε = 1)": {"eps": 1.0, "subsets": 1},
        },
        bound="at most subsets·subset_size² pixels change, each value by ≤ ε",
        strength="eps",
        iteration_params=("subsets",),
        constraints=(BOUND_LINF, BOUND_PIXELS),
        task="regression",
    )
)

register(
    AttackSpec(
        id="reg_random",
        title="Random noise baseline (ℓp / pixels)",
        family=FAMILY,
        source=f"{SOURCE}, §VI-B (random-ℓp, random-pixel-T)",
        summary="The paper's yardstick: random noise of the same budget. L2: a Gaussian direction scaled "
        "to norm ε; L∞: ±ε on every value at random; with subsets = T only T random pixels change "
        "(random-pixel-T). An attack is worth its name when it distorts the output far more than this.",
        formula=r"\eta=\varepsilon\,w/\|w\|_2,\ w\sim\mathcal N(0,I)\quad\text{or}\quad\eta_i=\pm\varepsilon",
        params=(
            P_REG,
            EPS_REG,
            Param(
                name="subsets",
                kind="int",
                default=0,
                low=0,
                high=1_000_000,
                help="0 = noise on every pixel; T > 0 = only T random pixels (random-pixel-T).",
                source=f"{SOURCE}, §VI-B",
            ),
        ),
        fn=reg_random,
        presets={
            "random-ℓ2 (ε = 1)": {"p": "2", "eps": 1.0},
            "random-ℓ∞ (ε = 4/255)": {"p": "inf", "eps": 4 / 255},
            "random-pixel-100 (ε = 1)": {"p": "inf", "eps": 1.0, "subsets": 100},
        },
        bound="‖x_adv − x‖_p ≤ ε",
        strength="eps",
        constraints=(BOUND_LP, BOUND_PIXELS),
        task="regression",
    )
)
