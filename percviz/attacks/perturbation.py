"""Perturbation-analysis attacks of Balda et al. 2019: GNM, Proposition 1, Algorithm 1-T, subsets.

All linearise the Balda et al. 2019 classification loss ``L(x, η) = f_k(x+η) − max_{l≠k} f_l(x+η)``
(k = the label, by default the prediction), which percviz writes as the CW margin to *maximise*
with κ = ∞ (``loss='cw'``, ``kappa=inf``, the default here); cross-entropy is offered too.

- ``gnm``: Theorem 2, eq. 4–6 — the best step of ℓp norm ε for the linearised loss, any p ≥ 1.
- ``minnorm``: Proposition 1, eq. 7–8 — the smallest ℓp step that crosses the linearised boundary.
  Eq. 8 as printed divides by ``‖∇L‖_q^{q−1}``; the solution of (7) (and Theorem 1's bound, ρ₂)
  needs ``‖∇L‖_q^{q}``, which is what is implemented (its norm is exactly ``L/‖∇L‖_q``).
- ``balda_iter``: Algorithm 1-T (§V) — T steps of ℓp norm ε/T, each linearised at a dithered point.
- ``subset``: single / multiple subset attack, eq. 21–22 (§IV-B) and the §V variant of Algorithm 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from percviz.attacks._norms import (
    CANDIDATES,
    OVERSHOOT,
    TINY,
    candidate_classes,
    closest_boundary,
    dual,
    lp_norm,
    measure_lp,
    pairwise_gradients,
    parse_p,
    project,
    random_in_ball,
    steepest_step,
)
from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register, validate_batch
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import is_adversarial, objective, pair_margin
from percviz.attacks.params import (
    EPS_LINF,
    KAPPA,
    LOSS,
    STEPS,
    SUBSET_FORMULAS,
    SUBSET_SCORE,
    TARGET,
    with_default,
)
from percviz.attacks.schema import Param

SOURCE = "Balda et al. 2019, Perturbation Analysis of Learning Algorithms"

P_ANY = Param(
    name="p",
    kind="float",
    default=math.inf,
    low=1.0,
    allow_inf=True,
    help="Norm of the budget: any p ≥ 1 or inf (inf: sign step = FGSM; 2: normalised gradient; "
    "1: a single coordinate).",
    source="Balda et al. 2019 Theorem 2, eq. 5–6",
)
P_CHOICE = Param(
    name="p",
    kind="choice",
    default="inf",
    choices=("1", "2", "inf"),
    help="Norm of the perturbation: 1, 2 or inf.",
    source="Balda et al. 2019 eq. 5–8",
)
EPS_P = Param(
    name="eps",
    kind="float",
    default=4 / 255,
    low=0.0,
    high=1000.0,
    unit="ℓp norm of the whole perturbation, [0,1] units",
    help="Budget ‖η‖_p ≤ eps in the chosen norm (4/255 ≈ 0.0157 for L∞; L2 budgets of ~1 suit 224×224).",
    label="ε (ℓp)",
    symbol="ε",
)
LOSS_003 = with_default(
    LOSS,
    "cw",
    help="Objective: cw = the Balda et al. 2019 loss, the largest other output minus the true class's "
    "output f_k (clipped at κ; κ = inf is the paper's), "
    "or cross-entropy (ce).",
)
KAPPA_INF = with_default(
    KAPPA,
    math.inf,
    high=None,
    allow_inf=True,
    help="Confidence κ of the CW margin (inf = the unclipped Balda et al. 2019 loss).",
)
DITHER = Param(
    name="dither",
    kind="float",
    default=0.0,
    low=0.0,
    high=1000.0,
    unit="ℓp norm, [0,1] units",
    help="Dithering radius ε̃: each step linearises the loss at a random point within ε̃ of the "
    "current iterate (0 = no dithering). It only moves where the gradient is taken, never the output.",
    source="Balda et al. 2019 §III-C eq. 9, Algorithm 1",
)
DITHER_SCHEDULE = Param(
    name="dither_schedule",
    kind="choice",
    default="constant",
    choices=("constant", "first", "linear"),
    help="Radius ε̃_t per step: constant = ε̃ every step; first = ε̃ at step 1, then 0 (with ε̃ = ε "
    "the paper's 'PGD as a special case'); linear = ε̃·(T − t + 1)/T, decaying to ε̃/T.",
    source="Balda et al., Algorithm 1 (ε̃_1, …, ε̃_T); §III-C",
    label="dithering schedule",
)
SUBSETS = Param(
    name="subsets",
    kind="int",
    default=10,
    low=1,
    high=100000,
    help="How many subsets (pixels or blocks) may change: one per round, each round one gradient.",
    source="Balda et al. 2019 §V (multiple subset attack)",
)
SUBSET_SIZE = Param(
    name="subset_size",
    kind="int",
    default=1,
    low=1,
    high=64,
    unit="pixels",
    help="Side of the square blocks forming the subsets (1 = single pixels, 3 values each).",
    source="Balda et al. 2019 §IV (partition into subsets)",
)
LOSS_PARAMS = (LOSS_003, KAPPA_INF, TARGET)
LP_BOUND = Constraint(distance="lp", kind="hard", param="eps", measure=measure_lp, text="‖x_adv − x‖_p ≤ eps")


def balda_objective(params: dict[str, Any], labels: torch.Tensor):
    """The objective to maximise: untargeted as :func:`~percviz.attacks.losses.objective`;
    targeted with ``loss='cw'`` the paper's eq. 23, ``f_t − f_k`` (= −L), clipped at κ."""
    target = params["target"]
    if target is not None and params["loss"] == "cw":
        return lambda z, _x: pair_margin(z, labels, target, params["kappa"])
    return objective(params["loss"], labels, target, params["kappa"])


def gnm(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """GNM, Balda et al. 2019 Theorem 2 (eq. 4–6): ``η = ε·sign(∇L)⊙|∇L|^{q−1}/‖∇L‖_q^{q−1}``.

    One gradient; the step has ℓp norm exactly ε before clipping to [0, 1] (which only shrinks it).
    """
    p, eps = params["p"], params["eps"]
    obj = balda_objective(params, labels)
    grad, value, _ = ctx.gradient(x, obj)
    x_adv = project(x, x + steepest_step(grad, p, eps), p, eps)
    ctx.step(1, 1, loss=value.mean())
    return AttackOutput(x_adv, constraints={"lp": lp_norm(x_adv - x, p)})


def _loss_and_gradient(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, target: int | None, candidates: int, q: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, w, ‖w‖_q)``: Balda et al. 2019 loss at ``η = 0`` and the ascent direction that lowers it.

    Untargeted: the closest of the top-``candidates`` class pairs (``candidates = 1`` is exactly
    ``L = f_k − max_{l≠k} f_l``). Targeted: the paper's eq. 23, ``L = f_k − f_t``.
    """
    if target is None:
        cand = candidate_classes(ctx.logits(x), labels, candidates)
        loss, w, wq, _ = closest_boundary(ctx, x, labels, cand, q)
        return loss, w, wq
    w, m, _ = ctx.gradient(x, lambda z, _x: pair_margin(z, labels, target))
    return -m.double(), w, lp_norm(w, q)


def minnorm(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]
) -> AttackOutput:
    """Proposition 1 (Balda et al. 2019 eq. 7–8): ``η = −L/‖∇L‖_q^q · sign(∇L)⊙|∇L|^{q−1}``.

    The step's ℓp norm is ``L/‖∇L‖_q``.

    The step is scaled by ``1 + overshoot`` to cross the boundary, not just reach it. Also reports
    ``rho_2 = L(x,0)/‖∇L(x,0)‖_q`` per image (Theorem 1's robustness estimate, Balda et al. 2019 §II-B).
    """
    p = parse_p(params["p"])
    q = dual(p)
    loss, w, wq = _loss_and_gradient(ctx, x, labels, params["target"], params["candidates"], q)
    rho = loss / wq.clamp_min(TINY)
    radius = (1.0 + params["overshoot"]) * rho.clamp_min(0.0)
    x_adv = (x + steepest_step(w, p, radius)).clamp(0.0, 1.0)
    ctx.step(1, 1, loss=loss.mean(), rho_2=rho.mean())
    return AttackOutput(x_adv, constraints={"rho_2": rho, "lp": lp_norm(x_adv - x, p)})


@torch.no_grad()
def robustness_rho(
    model: torch.nn.Module,
    x: torch.Tensor,
    labels: torch.Tensor | None = None,
    p: float | str = 2,
    candidates: int = 10,
) -> torch.Tensor:
    """``ρ₂ = L(x,0)/‖∇L(x,0)‖_q`` per image (Balda et al. 2019 Theorem 1 / §II-B), as an ``(N,)`` CPU tensor.

    The linearised ℓp distance to the closest decision boundary among the top-``candidates``
    other classes (``candidates = 1``: the runner-up only, the paper's ``max_{l≠k}``). Negative
    when ``labels`` (default: the predictions) are not what the model predicts. ``x``:
    ``N×3×H×W`` in [0, 1]; costs one forward and a few batched gradient passes.
    """
    return robustness_rhos(model, x, (p,), labels, candidates)[0]


@torch.no_grad()
def robustness_rhos(
    model: torch.nn.Module,
    x: torch.Tensor,
    norms: Sequence[float | str],
    labels: torch.Tensor | None = None,
    candidates: int = 10,
) -> list[torch.Tensor]:
    """:func:`robustness_rho` for several ℓp norms from one set of gradients (one per candidate)."""
    from percviz.attacks.base import AttackContext

    validate_batch(x)
    ctx = AttackContext(model, 0, None)
    x0 = x.detach().to(ctx.device, torch.float32)
    logits = ctx.logits(x0)
    y = logits.argmax(1) if labels is None else labels.to(ctx.device)
    diff, grads, _ = pairwise_gradients(ctx, x0, y, candidate_classes(logits, y, candidates))
    out = []
    for p in norms:
        wq = lp_norm(grads.flatten(0, 1), dual(parse_p(p))).view(diff.shape)
        out.append((-diff.double() / wq.clamp_min(TINY)).min(dim=1).values.cpu())
    return out


def balda_iter(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]
) -> AttackOutput:
    """Algorithm 1-T (Balda et al. §V): ``η_{t+1} = η_t + argmax_{‖η‖_p ≤ ε/T} ηᵀ∇L(x, η̃_t)``.

    ``η̃_t = η_t + random(ε̃_t)`` (eq. 9) with ``ε̃_t`` from ``dither`` and ``dither_schedule``
    (:func:`dither_radius`); each step is the closed form of eq. 5 for any p ≥ 1. The T steps sum
    to at most ε in ℓp (clipping to [0, 1] only shrinks coordinates).
    """
    p, eps, steps, dither = parse_p(params["p"]), params["eps"], params["steps"], params["dither"]
    target = params["target"]
    obj = balda_objective(params, labels)
    x_adv = x.clone()
    for t in range(steps):
        x_eval = x_adv
        radius = dither_radius(dither, params["dither_schedule"], t + 1, steps)
        if radius > 0:
            x_eval = (x_adv + random_in_ball(ctx, x.shape, p, radius)).clamp(0.0, 1.0)
        grad, value, logits = ctx.gradient(x_eval, obj)
        x_adv = project(x, x_adv + steepest_step(grad, p, eps / steps), p, eps)
        fooled = is_adversarial(logits, labels, target).float().mean()
        if ctx.step(t + 1, steps, x_adv, loss=value.mean(), fooled_at_eval_point=fooled):
            break
    return AttackOutput(x_adv, constraints={"lp": lp_norm(x_adv - x, p)})


def dither_radius(dither: float, schedule: str, t: int, steps: int) -> float:
    """``ε̃_t`` of Algorithm 1 at step ``t`` (1-based) of ``steps``: constant, first step only, or
    linearly decaying from ``dither`` to ``dither/T``."""
    if schedule == "first":
        return dither if t == 1 else 0.0
    if schedule == "linear":
        return dither * (steps - t + 1) / steps
    return dither


def _block_sums(values: torch.Tensor, size: int) -> torch.Tensor:
    """``N×H×W`` → ``N×(⌈H/s⌉·⌈W/s⌉)`` sums over ``s×s`` blocks (the edge blocks may be smaller)."""
    n, h, w = values.shape
    hb, wb = -(-h // size), -(-w // size)
    padded = F.pad(values, (0, wb * size - w, 0, hb * size - h))
    return padded.view(n, hb, size, wb, size).sum(dim=(2, 4)).view(n, hb * wb)


def _block_mask(chosen: torch.Tensor, size: int, h: int, w: int) -> torch.Tensor:
    """``N×(blocks)`` bool → ``N×1×H×W`` bool pixel mask."""
    hb, wb = -(-h // size), -(-w // size)
    grid = chosen.view(-1, 1, hb, wb)
    return grid.repeat_interleave(size, dim=2).repeat_interleave(size, dim=3)[..., :h, :w]


def subset(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """Single / multiple subset attack (Balda et al. eq. 21–22, §IV-B and §V).

    Each round takes ``g = ∇L(x, η̃)`` at a point ``η̃`` dithered within ``dither`` (ℓ∞) of the
    current iterate (eq. 21; 0 = at the iterate) and, among the subsets not yet used, picks the
    best by ``subset_score``: ``abs`` = ``argmax_s Σ_{i∈S_s} |g_i|`` (the paper's eq. 22), ``box``
    (default) = ``argmax_s Σ_{i∈S_s} g_i·(clip(x_i + ε·sign g_i) − x_i)``, eq. 22 with the [0, 1]
    box taken into account. That subset is set to ``clip(x + ε·sign(g))``. At most ``subsets``
    rounds; images stop once misclassified (or when no subset can still help). With dithering,
    whether an image is fooled costs one extra forward at the iterate per round.
    """
    eps, rounds, size, target = params["eps"], params["subsets"], params["subset_size"], params["target"]
    dither = params["dither"]
    obj = balda_objective(params, labels)
    n, _, h, w = x.shape
    rows = torch.arange(n, device=x.device)
    x_adv = x.clone()
    used = torch.zeros(n, (-(-h // size)) * (-(-w // size)), dtype=torch.bool, device=x.device)
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    for t in range(rounds):
        x_eval = x_adv
        if dither > 0:
            x_eval = (x_adv + random_in_ball(ctx, x.shape, float("inf"), dither)).clamp(0.0, 1.0)
        grad, value, logits = ctx.gradient(x_eval, obj)
        if dither > 0:
            logits = ctx.logits(x_adv)
        active &= ~is_adversarial(logits, labels, target)
        moved = (x + eps * grad.sign()).clamp(0.0, 1.0)
        gain = grad.abs() if params["subset_score"] == "abs" else grad * (moved - x_adv)
        score = _block_sums(gain.sum(dim=1), size).masked_fill(used, float("-inf"))
        best = score.argmax(dim=1)
        pick = active & (score[rows, best] > 0)
        chosen = torch.zeros_like(used)
        chosen[rows[pick], best[pick]] = True
        used |= chosen
        x_adv = torch.where(_block_mask(chosen, size, h, w), moved, x_adv)
        done = not bool(pick.any())
        if ctx.step(t + 1, rounds, x_adv, loss=value.mean(), changed=float(pick.sum())) or done:
            break
    return AttackOutput(x_adv, constraints={"subsets_changed": used.sum(dim=1).double()})


register(
    AttackSpec(
        id="gnm",
        title="GNM (any ℓp, closed form)",
        family="perturbation analysis",
        source=f"{SOURCE}, §II-C Theorem 2, eq. 4–6",
        summary="The gradient-based norm-constrained method: linearise the classification loss and take "
        "the best step whose ℓp norm is ε, in closed form for any p ≥ 1. p = ∞ is FGSM's sign step, "
        "p = 2 the normalised gradient (FGM), p = 1 changes the single most sensitive value.",
        formula=r"\eta = \varepsilon\,\frac{\mathrm{sign}(\nabla L)\odot|\nabla L|^{q-1}}{\|\nabla L\|_q^{q-1}},"
        r"\quad q = \frac{p}{p-1}",
        params=(P_ANY, EPS_P, *LOSS_PARAMS),
        fn=gnm,
        presets={
            "paper Algorithm 1 (L∞, ε = 4/255)": {"p": "inf", "eps": 4 / 255},
            "L2 (ε = 1)": {"p": "2", "eps": 1.0},
            "L1.5 (ε = 3)": {"p": "1.5", "eps": 3.0},
        },
        bound="‖x_adv − x‖_p ≤ ε",
        strength="eps",
        constraints=(LP_BOUND,),
    )
)

register(
    AttackSpec(
        id="minnorm",
        title="Minimum-norm linearised step (Prop. 1)",
        family="perturbation analysis",
        source=f"{SOURCE}, §II-C Proposition 1, eq. 7–8; ρ₂ from Theorem 1",
        summary="The smallest ℓp perturbation that crosses the linearised decision boundary to the "
        "closest of the top candidate classes: one gradient pass per candidate, no budget. Its norm "
        "L/‖∇L‖_q is the robustness estimate ρ₂ reported next to the prediction (small = easy to fool).",
        formula=r"\eta = -\frac{L(x,0)}{\|\nabla L\|_q^{q}}\,\mathrm{sign}(\nabla L)\odot|\nabla L|^{q-1},"
        r"\quad \rho_2 = \frac{L(x,0)}{\|\nabla L(x,0)\|_q}",
        params=(
            with_default(P_CHOICE, "2"),
            with_default(OVERSHOOT, 0.1, help="Relative overshoot past the linearised boundary."),
            CANDIDATES,
            TARGET,
        ),
        fn=minnorm,
        presets={
            "paper (L2, runner-up class only)": {"p": "2", "candidates": 1, "overshoot": 0.02},
            "L∞, 10 classes, overshoot 0.5": {"p": "inf", "candidates": 10, "overshoot": 0.5},
        },
        bound="none (minimum-norm; rho_2 is the linearised distance)",
        strength="overshoot",
        cost_params=("candidates",),
        constraints=(
            Constraint(
                distance="lp", kind="soft", measure=measure_lp, text="‖x_adv − x‖_p reached (no budget)"
            ),
        ),
    )
)

register(
    AttackSpec(
        id="balda_iter",
        title="Algorithm 1-T (iterative ℓp, dithering)",
        family="perturbation analysis",
        source=f"{SOURCE}, §V Algorithm 1 (T steps), eq. 5 and 9",
        summary="T successive linearisations, each taking the closed-form best step of ℓp norm ε/T "
        "(GNM) at a point dithered randomly within ε̃ of the current iterate; the sum stays within ε. "
        "Dithering radius 0 is BIM/PGD with the paper's loss.",
        formula=r"\tilde\eta_t = \eta_t + \mathrm{random}(\tilde\varepsilon),\quad"
        r"\eta_{t+1} = \eta_t + \arg\max_{\|\eta\|_p\le\varepsilon/T} \eta^\top \nabla L(x, \tilde\eta_t)",
        params=(P_ANY, EPS_P, with_default(STEPS, 5), DITHER, DITHER_SCHEDULE, *LOSS_PARAMS),
        fn=balda_iter,
        presets={
            "paper Algorithm 1-5 (L∞, ε = 4/255, T = 5)": {"p": "inf", "eps": 4 / 255, "steps": 5},
            "paper: PGD as a special case (L∞, ε̃₁ = ε, then 0, T = 10)": {
                "p": "inf",
                "eps": 4 / 255,
                "steps": 10,
                "dither": 4 / 255,
                "dither_schedule": "first",
            },
            "L∞ T = 10 with dithering (ε̃ = ε/2)": {
                "p": "inf",
                "eps": 4 / 255,
                "steps": 10,
                "dither": 2 / 255,
            },
            "L2 (ε = 1, T = 10)": {"p": "2", "eps": 1.0, "steps": 10},
        },
        bound="‖x_adv − x‖_p ≤ ε",
        strength="eps",
        iteration_params=("steps",),
        constraints=(LP_BOUND,),
    )
)

register(
    AttackSpec(
        id="subset",
        title="Single / multiple subset (pixel) attack",
        family="perturbation analysis",
        source=f"{SOURCE}, §IV-B eq. 21–22 and §V (multiple subsets)",
        summary="Changes only a few pixels (each with its 3 values) or small blocks: every round picks "
        "the unused subset with the largest summed gradient magnitude and pushes it by ε along the "
        "gradient sign. subsets = 1 is the single-pixel attack; more rounds give the multiple-subset "
        "attack (the paper's linear-pixel-T).",
        formula=SUBSET_FORMULAS["box"],
        formula_variants={"subset_score": SUBSET_FORMULAS},
        params=(
            with_default(EPS_LINF, 1.0, help="L∞ change of the values in a chosen subset."),
            SUBSETS,
            SUBSET_SIZE,
            SUBSET_SCORE,
            with_default(DITHER, 0.0, unit="ℓ∞, [0,1] units", source="Balda et al. eq. 21"),
            *LOSS_PARAMS,
        ),
        fn=subset,
        presets={
            "paper linear-pixel-100 (ε = 1, Σ|∇L| ranking)": {
                "eps": 1.0,
                "subsets": 100,
                "subset_size": 1,
                "subset_score": "abs",
            },
            "single pixel (ε = 1)": {"eps": 1.0, "subsets": 1, "subset_size": 1},
            "20 blocks of 4×4 (ε = 0.5)": {"eps": 0.5, "subsets": 20, "subset_size": 4},
        },
        bound="at most subsets·subset_size² pixels change, each value by ≤ ε",
        strength="subsets",
        iteration_params=("subsets",),
        constraints=(
            Constraint(distance="linf", kind="hard", param="eps", text="‖x_adv − x‖∞ ≤ eps"),
            Constraint(
                distance="l0",
                kind="hard",
                limit=lambda p: p["subsets"] * p["subset_size"] ** 2,
                text="changed pixels ≤ subsets · subset_size²",
            ),
        ),
    )
)
