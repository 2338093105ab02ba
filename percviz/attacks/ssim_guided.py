"""SSIM-guided attacks of Pochimireddy et al. 2021 §IV: PGAP (QCQP (8), Algorithm 1) and FPGAP ((10), Algorithm 2).

Both maximise the linearised loss ``gᵀy`` under the moment-form SSIM constraints
``S1(x, y) ≥ 1 − ε1²`` and ``S2(x, y) ≥ 1 − ε2²`` (§III-A eq. 3, 6; App. A), with the corrected radii (docs/REFERENCES.md, errata). The gradient is that of the CW margin with κ = 50 (App. C, supplementary) by
default. With ``scope=channel`` the same construction is applied to each RGB channel on its own.
The solvers live in :mod:`percviz.attacks.solvers.qcqp`.
"""

from __future__ import annotations

from typing import Any

import torch

from percviz.analysis.metrics import s1_s2
from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import is_adversarial, objective
from percviz.attacks.params import KAPPA, LOSS, STEPS, TARGET, with_default
from percviz.attacks.schema import Param
from percviz.attacks.solvers import qcqp

EPS1 = Param(
    name="eps1",
    kind="float",
    default=0.0,
    low=0.0,
    high=0.5,
    help="Luminance tolerance: S1(x, x_adv) ≥ 1 − eps1² (0 keeps the mean exactly).",
    source="Pochimireddy et al. 2021 (8), App. A constraint 1",
    label="ε1 (luminance)",
    symbol="ε₁",
)
EPS2 = Param(
    name="eps2",
    kind="float",
    default=0.01,
    low=0.0,
    high=0.5,
    help="Structure tolerance: S2(x, x_adv) ≥ 1 − eps2² (global moment form).",
    source="Pochimireddy et al. 2021 (8), App. A constraint 2",
    label="ε2 (structure)",
    symbol="ε₂",
)
ANCHOR = Param(
    name="anchor",
    kind="choice",
    default="moving",
    choices=("moving", "original"),
    help="moving: each step solves around the previous iterate (Algorithm 2 as printed); "
    "original: every step solves around the original image, so the S2 bound holds against it.",
)
SCOPE = Param(
    name="scope",
    kind="choice",
    default="image",
    choices=("image", "channel"),
    help="image: one mean/variance over all channels (the paper); channel: per RGB channel.",
)
SOLVER = Param(
    name="solver",
    kind="choice",
    default="exact",
    choices=("exact", "cvxpy"),
    help="exact: dedicated Lagrange-multiplier solver (fast at 224×224); cvxpy: Clarabel, SCS "
    "fallback (the paper's tool; seconds per solve at 224×224).",
)
CW_LOSS = with_default(LOSS, "cw")
CW_KAPPA = with_default(KAPPA, 50.0)
PGAP_STEPS = with_default(STEPS, 10)
FPGAP_STEPS = with_default(STEPS, 10)


def _rows(x: torch.Tensor, scope: str) -> torch.Tensor:
    """``N×3×H×W`` → rows over which the means/variances are taken (``N×3HW`` or ``3N×HW``)."""
    return x.flatten(1) if scope == "image" else x.flatten(2).reshape(-1, x[0, 0].numel())


def _unrows(rows: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return rows.reshape(like.shape)


def _per_image(values: torch.Tensor, n: int, reduce: str = "min") -> torch.Tensor:
    """Row values → ``(N,)`` (identity for scope image; min/max/mean over channels otherwise)."""
    v = values.reshape(n, -1)
    if reduce == "min":
        return v.amin(1)
    if reduce == "max":
        return v.amax(1)
    return v.mean(1)


def _scope_s1_s2(x: torch.Tensor, y: torch.Tensor, scope: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Worst S1, S2 per image in the attack's scope (min over channels for ``channel``)."""
    s1, s2 = s1_s2(x.double(), y.double(), scope)  # type: ignore[arg-type]
    if scope == "channel":
        return s1.amin(1), s2.amin(1)
    return s1, s2


def _frozen(
    ctx: AttackContext,
    x_adv: torch.Tensor,
    active: torch.Tensor,
    labels: torch.Tensor,
    params: dict[str, Any],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradient at the active images; freezes those already adversarial (first success).

    Returns the still-active indices, their gradient, and the loss values of all evaluated images.
    """
    idx = active.nonzero()[:, 0]
    sub_labels = labels[idx]
    sub_obj = objective(params["loss"], sub_labels, params["target"], params["kappa"])
    grad, value, logits = ctx.gradient(x_adv[idx], sub_obj)
    fooled = is_adversarial(logits, sub_labels, params["target"])
    active[idx[fooled]] = False
    keep = ~fooled
    return idx[keep], grad[keep], value


def _clip_report(x: torch.Tensor, y: torch.Tensor, scope: str) -> dict[str, torch.Tensor]:
    """S2 (in scope) before and after clipping to [0, 1], and how far clipping moved ``y``."""
    clipped = y.clamp(0.0, 1.0)
    _, s2_raw = _scope_s1_s2(x, y, scope)
    _, s2_clip = _scope_s1_s2(x, clipped, scope)
    return {
        "s2_unclipped": s2_raw,
        "s2_clip_change": s2_clip - s2_raw,
        "clip_l2": (y - clipped).flatten(1).norm(dim=1),
    }


def _final_report(x: torch.Tensor, x_adv: torch.Tensor, eps2: float, scope: str) -> dict[str, torch.Tensor]:
    s1, s2 = _scope_s1_s2(x, x_adv.clamp(0.0, 1.0), scope)
    return {
        "s1_scope": s1,
        "s2_scope": s2,
        "s2_violation": (1.0 - eps2 * eps2 - s2).clamp_min(0.0),
    }


def fpgap(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """FPGAP: Algorithm 2 with the closed form (10) and the corrected radius (Pochimireddy et al. 2021 §IV-B, App. B).

    ``x_adv = μ + η2 X + r ĝ`` (``ĝ`` the unit zero-mean gradient, ``r² = (η2² − 1)‖X‖² +
    N η2 ε2² c2``) lands exactly on ``S2 = 1 − ε2²`` around its anchor and keeps the mean. Each
    iterate is clipped to [0, 1] before the model sees it; images stop at their first success.
    ``anchor=moving`` re-centres on the previous iterate (as printed), ``original`` always on ``x``.
    """
    eps2, steps, scope = params["eps2"], params["steps"], params["scope"]
    n = x.shape[0]
    x_adv = x.clone()
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    used = torch.zeros(n, device=x.device)
    raw = {
        "s2_unclipped": torch.ones(n, dtype=torch.float64, device=x.device),
        "s2_clip_change": torch.zeros(n, dtype=torch.float64, device=x.device),
        "clip_l2": torch.zeros(n, dtype=torch.float64, device=x.device),
    }
    for it in range(steps):
        idx, grad, value = _frozen(ctx, x_adv, active, labels, params)
        if idx.numel() == 0:
            ctx.step(it + 1, steps, loss=value.mean(), active=0.0)
            break
        base = x[idx] if params["anchor"] == "original" else x_adv[idx]
        y_rows, _ = qcqp.closed_form(_rows(base, scope), _rows(grad, scope), eps2)
        y = _unrows(y_rows, base)
        for key, val in _clip_report(x[idx], y, scope).items():
            raw[key][idx] = val
        x_adv[idx] = y.clamp(0.0, 1.0).to(x.dtype)
        used[idx] += 1
        if ctx.step(it + 1, steps, x_adv, loss=value.mean(), active=float(idx.numel()) / n):
            break
    constraints = {**raw, **_final_report(x, x_adv, eps2, scope), "steps_used": used}
    info = {
        "s2_target": 1.0 - eps2 * eps2,
        "anchor": params["anchor"],
        "bound_against_original": params["anchor"] == "original",
        "note": "s2_unclipped / s2_clip_change / clip_l2 refer to each image's last update; "
        "s2_scope, s2_violation to the returned (clipped) image, all against the original.",
    }
    return AttackOutput(x_adv, constraints=constraints, info=info)


def pgap(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """PGAP: Algorithm 1 — the QCQP (8) with the box, re-linearised each step (Pochimireddy et al. 2021 §IV-A, App. A).

    Every step maximises ``gᵀy`` (``g`` the gradient at the current iterate) subject to both SSIM
    constraints around the *original* image and ``0 ≤ y ≤ 1``; images stop at their first success.
    ``solver`` picks the exact multiplier solver or cvxpy (:mod:`percviz.attacks.solvers.qcqp`). ``info['duality_gap']``
    is cvxpy's own, or for the exact solver the dual function at its multipliers minus the objective
    (:func:`percviz.attacks.solvers.qcqp.lagrangian_dual`), both for the unit-norm gradient.
    """
    eps1, eps2, steps, scope = params["eps1"], params["eps2"], params["steps"], params["scope"]
    n = x.shape[0]
    groups = 1 if scope == "image" else x.shape[1]
    x_adv = x.clone()
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    used = torch.zeros(n, device=x.device)
    dual_norm = torch.zeros(n, groups, dtype=torch.float64, device=x.device)
    dual_mean = torch.zeros_like(dual_norm)
    gap = torch.full_like(dual_norm, float("nan"))
    status: list[list[str]] = [[] for _ in range(n)]
    seconds, solves = 0.0, 0
    for it in range(steps):
        idx, grad, value = _frozen(ctx, x_adv, active, labels, params)
        if idx.numel() == 0:
            ctx.step(it + 1, steps, loss=value.mean(), active=0.0)
            break
        sol = qcqp.solve(_rows(x[idx], scope), _rows(grad, scope), eps1, eps2, params["solver"])
        seconds, solves = seconds + sol.seconds, solves + 1
        x_adv[idx] = _unrows(sol.y, x[idx]).to(x.dtype)
        dual_norm[idx] = sol.dual_norm.reshape(-1, groups).to(dual_norm)
        dual_mean[idx] = sol.dual_mean.reshape(-1, groups).to(dual_mean)
        gap[idx] = sol.duality_gap.reshape(-1, groups).to(gap)
        for k, i in enumerate(idx.tolist()):
            status[i] = sol.status[k * groups : (k + 1) * groups]
        used[idx] += 1
        if ctx.step(it + 1, steps, x_adv, loss=value.mean(), active=float(idx.numel()) / n):
            break
    lo, hi = qcqp.mean_bounds(_rows(x, scope).double().mean(-1), eps1)
    mean_adv = _rows(x_adv, scope).double().mean(-1)
    mean_violation = (lo - mean_adv).clamp_min(0) + (mean_adv - hi).clamp_min(0)
    constraints = {
        **_final_report(x, x_adv, eps2, scope),
        "mean_violation": _per_image(mean_violation, n, "max"),
        "dual_norm": dual_norm.mean(1),
        "dual_mean": dual_mean.mean(1),
        "dual_ratio": (dual_norm / dual_mean.abs()).mean(1),
        "steps_used": used,
    }
    info = {
        "solver": params["solver"],
        "status": status,
        "duality_gap": gap.tolist(),
        "dual_norm": dual_norm.tolist(),
        "dual_mean": dual_mean.tolist(),
        "solve_seconds": seconds,
        "solves": solves,
        "s1_target": 1.0 - eps1 * eps1,
        "s2_target": 1.0 - eps2 * eps2,
        "note": "duals are for the unit-norm gradient: dual_norm on ‖Y − η2X‖² ≤ r², dual_mean on "
        "the linear mean bound (+: upper, −: lower); dual_ratio = dual_norm/|dual_mean|, "
        "averaged over channels for scope=channel. Values refer to each image's last solve.",
    }
    return AttackOutput(x_adv, constraints=constraints, info=info)


def _measure_s1(_model: Any, x: torch.Tensor, x_adv: torch.Tensor, params: Any) -> torch.Tensor:
    """S1 against the original in the attack's scope (worst channel for ``scope=channel``)."""
    return _scope_s1_s2(x, x_adv, params["scope"])[0]


def _measure_s2(_model: Any, x: torch.Tensor, x_adv: torch.Tensor, params: Any) -> torch.Tensor:
    """S2 against the original in the attack's scope (worst channel for ``scope=channel``)."""
    return _scope_s1_s2(x, x_adv, params["scope"])[1]


def _s_bound(term: str, eps: str, kind: str = "hard", **when: Any) -> Constraint:
    return Constraint(
        distance=f"{term}_scope",
        kind=kind,  # type: ignore[arg-type]
        relation=">=",
        param=eps,
        limit=lambda p: 1.0 - p[eps] ** 2,
        measure=_measure_s1 if term == "s1" else _measure_s2,
        text=f"{term.upper()}(x, x_adv) ≥ 1 − {eps}² (in scope, against the original)",
        when=when,
    )


_FORMULA_PGAP = (
    r"\max_{y\in[0,1]^N} y^\top\nabla_x\mathcal{L}\quad \text{s.t.}\ "
    r"(\mu_y-\eta_1\mu_x)^2\le(\eta_1^2-1)\mu_x^2+\eta_1\epsilon_1^2c_1,\quad "
    r"\|Y-\eta_2X\|^2\le(\eta_2^2-1)\|X\|^2+N\eta_2\epsilon_2^2c_2"
)
_FORMULA_FPGAP = (
    r"x_{adv}=\mu_x\mathbf{1}+\eta_2X+\sqrt{(\eta_2^2-1)\|X\|^2+N\eta_2\epsilon_2^2c_2}\;"
    r"\frac{G}{\|G\|},\quad G=\nabla_x\mathcal{L}-\overline{\nabla_x\mathcal{L}},\quad \eta_2=\frac{1}{1-\epsilon_2^2}"
)

register(
    AttackSpec(
        id="pgap",
        title="PGAP (SSIM-constrained QCQP)",
        family="perceptual (SSIM)",
        source="Pochimireddy et al. 2021 §IV-A eq. (8)/(9), Algorithm 1, App. A (radii corrected, see docs/REFERENCES.md)",
        summary="Perceptually guided adversarial perturbation: each step maximises the linearised "
        "loss over all images whose global luminance term S1 and structure term S2 stay above "
        "1 − ε1² and 1 − ε2² against the original, inside [0, 1] — a convex QCQP solved exactly — "
        "then re-linearises at the new point until the model is fooled.",
        formula=_FORMULA_PGAP,
        params=(EPS1, EPS2, PGAP_STEPS, CW_LOSS, CW_KAPPA, TARGET, SOLVER, SCOPE),
        fn=pgap,
        presets={
            "paper Fig. 2 (ε1 = 0.05, ε2 = 0.11)": {"eps1": 0.05, "eps2": 0.11},
            "mean kept (ε1 = 0, ε2 = 0.01)": {"eps1": 0.0, "eps2": 0.01},
        },
        bound="S1 ≥ 1 − ε1², S2 ≥ 1 − ε2² (global, against the original)",
        strength="eps2",
        iteration_params=("steps",),
        constraints=(_s_bound("s1", "eps1"), _s_bound("s2", "eps2")),
    )
)

register(
    AttackSpec(
        id="fpgap",
        title="FPGAP (closed-form SSIM step)",
        family="perceptual (SSIM)",
        source="Pochimireddy et al. 2021 §IV-B eq. (10), Algorithm 2, App. B (radius corrected, see docs/REFERENCES.md)",
        summary="Fast PGAP: drops the box and solves the mean-preserving S2 constraint in closed "
        "form — the centre η2·X around the mean plus the zero-mean gradient scaled to the sphere's "
        "radius, landing exactly on S2 = 1 − ε2². Repeated (Algorithm 2) until the model is fooled; "
        "the anchor either moves with the iterate (as printed) or stays at the original.",
        formula=_FORMULA_FPGAP,
        params=(EPS2, FPGAP_STEPS, CW_LOSS, CW_KAPPA, TARGET, SCOPE, ANCHOR),
        fn=fpgap,
        presets={
            "paper ImageNet (ε2 = 0.005, 50 steps)": {"eps2": 0.005, "steps": 50},
            "bound against original (ε2 = 0.01)": {"eps2": 0.01, "anchor": "original"},
        },
        bound="S2 ≥ 1 − ε2² per step (against the original with anchor=original)",
        strength="eps2",
        iteration_params=("steps",),
        constraints=(
            _s_bound("s2", "eps2", anchor="original"),
            _s_bound("s2", "eps2", "soft", anchor="moving"),
        ),
    )
)
