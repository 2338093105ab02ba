"""The SSIM-constrained linear program (8) of Pochimireddy et al. 2021, App. A: exact and cvxpy solvers.

Per row (one image, or one colour channel with ``scope=channel``) of ``n`` values ``x`` with mean
``μ`` and centred ``X = x − μ``, and a linearised objective ``g``::

    maximise   gᵀy
    subject to (μ_y − η1 μ)² ≤ (η1² − 1) μ² + η1 ε1² c1          (S1 ≥ 1 − ε1², constraint 1)
               ‖Y − η2 X‖² ≤ (η2² − 1) ‖X‖² + n η2 ε2² c2        (S2 ≥ 1 − ε2², constraint 2)
               0 ≤ y ≤ 1,    Y = y − μ_y,   ηk = 1/(1 − εk²)

The radii are corrected: App. A prints ``η2²‖X‖² + c2 η2 ε2²``, which is wrong (docs/REFERENCES.md,
errata). Constraint 1 is a pair of linear bounds ``lo ≤ mean(y) ≤ hi``.

**Exact solver** (:func:`solve_exact`). With the mean as a variable ``m`` and multipliers ``λ``
(norm) and ``ν`` (mean), the KKT conditions give ``y = clip(t + η2 X + s g, 0, 1)`` with
``s = 1/(2λ)`` and the shift ``t = m + ν s``. For a given ``s`` the shift solves a monotone
piecewise-linear equation in one variable (``mean(y) = t`` when the mean bound is inactive, so
``ν = 0``; ``mean(y) = lo|hi`` when it is active); the norm ``ρ(s) = ‖y − m − η2 X‖²`` is
nondecreasing and piecewise quadratic in ``s``. Both 1-D equations are solved with safeguarded
Newton steps that are exact on each linear / quadratic piece (active set of the box fixed), so
the result satisfies the box exactly and the mean and norm constraints to rounding, whether or
not the box is active. Rows are solved together (batched tensors, any device). With ``ε2 = 0``
only the mean can move (``Y = X``), which is solved directly.

**cvxpy** (:func:`solve_cvxpy`): the same problem with the mean as an auxiliary scalar variable
(a dense centring matrix does not finish), Clarabel by default, SCS as fallback.

Duals are reported for the unit-norm objective ``g/‖g‖`` (the argmax does not depend on the
scale): ``dual_norm`` is ``λ`` of constraint 2 in the squared form above, ``dual_mean`` the
multiplier of the linear mean bound (positive: ``mean(y) ≤ hi`` active, negative: ``lo``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch

from percviz.analysis.metrics import C1, C2

_SHIFT_TOL = 1e-14
_NORM_RTOL = 1e-12


@dataclass
class Bounds:
    """Constraint data per row (``B`` rows): centre ``a = η2 X``, radius ``r2``, mean bounds."""

    a: torch.Tensor
    r2: torch.Tensor
    lo: torch.Tensor
    hi: torch.Tensor
    mu: torch.Tensor


@dataclass
class QCQPSolution:
    """Solutions of ``B`` rows: ``y`` (``B×n``, float64) and per-row diagnostics (``(B,)``)."""

    y: torch.Tensor
    objective: torch.Tensor
    dual_norm: torch.Tensor
    dual_mean: torch.Tensor
    mean_gap: torch.Tensor
    norm_slack: torch.Tensor
    status: list[str]
    iterations: torch.Tensor
    seconds: float
    duality_gap: torch.Tensor
    solver: str

    @property
    def dual_ratio(self) -> torch.Tensor:
        """``dual_norm / |dual_mean|`` (the comparison of Pochimireddy et al. 2021 §IV; ``inf`` if the mean is free)."""
        return self.dual_norm / self.dual_mean.abs()


def eta(eps: float) -> float:
    """``η = 1/(1 − ε²)`` of App. A; ``ε`` must lie in [0, 1)."""
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps1/eps2 must lie in [0, 1); got {eps!r}.")
    return 1.0 / (1.0 - eps * eps)


def s2_radius2(x_centred: torch.Tensor, eps2: float) -> torch.Tensor:
    """Corrected radius² of constraint 2: ``(η2² − 1)‖X‖² + n η2 ε2² c2`` per row (docs/REFERENCES.md, errata)."""
    e = eta(eps2)
    n = x_centred.shape[-1]
    return (e * e - 1.0) * x_centred.pow(2).sum(-1) + n * e * eps2 * eps2 * C2


def mean_bounds(mu: torch.Tensor, eps1: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrected constraint 1 as linear bounds on the mean: ``η1 μ ± √((η1² − 1) μ² + η1 ε1² c1)``."""
    e = eta(eps1)
    half = ((e * e - 1.0) * mu * mu + e * eps1 * eps1 * C1).sqrt()
    return e * mu - half, e * mu + half


def make_bounds(x: torch.Tensor, eps1: float, eps2: float) -> Bounds:
    """Constraint data around the rows ``x`` (``B×n``), in float64."""
    x = x.double()
    mu = x.mean(-1)
    centred = x - mu[:, None]
    lo, hi = mean_bounds(mu, eps1)
    return Bounds(a=eta(eps2) * centred, r2=s2_radius2(centred, eps2), lo=lo, hi=hi, mu=mu)


def closed_form(x: torch.Tensor, g: torch.Tensor, eps2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """FPGAP (10) with the corrected radius: ``y = μ + η2 X + r ĝ`` per row (Pochimireddy et al. 2021 App. B).

    ``ĝ`` is the unit zero-mean gradient, ``r² = (η2² − 1)‖X‖² + n η2 ε2² c2``. Returns ``(y, r)``
    in float64, unclipped: ``y`` lies exactly on ``S2 = 1 − ε2²`` and keeps the mean. A zero
    gradient gives ``y = μ + η2 X``.
    """
    x, g = x.double(), g.double()
    mu = x.mean(-1, keepdim=True)
    centred = x - mu
    gc = g - g.mean(-1, keepdim=True)
    norm = gc.norm(dim=-1, keepdim=True)
    unit = torch.where(norm > 0, gc / norm.clamp_min(1e-300), torch.zeros_like(gc))
    r = s2_radius2(centred, eps2).sqrt()
    return mu + eta(eps2) * centred + r[:, None] * unit, r


# --------------------------------------------------------------------------------------------
# exact solver
# --------------------------------------------------------------------------------------------


def _solve_shift(
    b: torch.Tensor,
    w: float,
    q: torch.Tensor,
    t0: torch.Tensor,
    lo: torch.Tensor | None = None,
    hi: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Root ``t`` of ``mean(clip(t + b, 0, 1)) − w t = q`` per row; returns ``(t, y, free)``.

    The left side is monotone and piecewise linear in ``t``; a Newton step from a warm start is
    exact once the set of clipped values is right, bisection inside the bracket ``[lo, hi]``
    keeps it safe (without a bracket, ``[−max b, 1 − min b]`` is used when first needed).
    ``w = 1`` is the free-mean fixed point, ``w = 0`` a prescribed mean ``q``. ``y`` and the
    unclipped mask ``free`` belong to the returned ``t``.
    """
    sign = 1.0 - 2.0 * w  # makes the function nondecreasing
    if lo is None or hi is None:
        lo = torch.full_like(t0, -math.inf)
        hi = torch.full_like(t0, math.inf)
        t = t0.clone()
    else:
        t = torch.minimum(torch.maximum(t0, lo), hi)
    n = b.shape[-1]
    for _ in range(200):
        z = b + t[:, None]
        y = z.clamp(0.0, 1.0)
        free = y == z
        f = sign * (y.mean(-1) - w * t - q)
        done = f.abs() <= _SHIFT_TOL
        lo = torch.where(f < 0, t, lo)
        hi = torch.where(f > 0, t, hi)
        if bool((done | ((hi - lo) <= 1e-15 * (1.0 + t.abs()))).all()):
            break
        slope = sign * (free.sum(-1).to(b.dtype) / n - w)
        newton = t - f / torch.where(slope > 0, slope, torch.ones_like(slope))
        ok = (slope > 0) & (newton > lo) & (newton < hi)
        if bool((~ok & ~done & torch.isinf(hi - lo)).any()):  # bisection needs a finite bracket
            lo = torch.where(torch.isinf(lo), -b.amax(-1), lo)
            hi = torch.where(torch.isinf(hi), 1.0 - b.amin(-1), hi)
        t = torch.where(done, t, torch.where(ok, newton, 0.5 * (lo + hi)))
    return t, y, free


@dataclass
class _State:
    y: torch.Tensor
    t: torch.Tensor
    m: torch.Tensor
    rho: torch.Tensor
    drho: torch.Tensor
    curv: torch.Tensor
    bound: torch.Tensor


def _evaluate(
    gc: torch.Tensor, gbar: torch.Tensor, bd: Bounds, s: torch.Tensor, t_prev: torch.Tensor
) -> _State:
    """Solution and ``ρ(s)``, ``ρ'(s)``, ``½ρ''(s)`` on the current piece, for step scales ``s``.

    The gradient enters as its centred part ``gc`` plus its mean ``gbar``: ``y = clip(t + a +
    s·gc)`` with ``t`` absorbing ``s·gbar`` (no cancellation for large ``s``). With the mean free
    (``ν = 0``) the shift solves ``mean(y) = t − s·gbar``; with a mean bound active,
    ``mean(y) = lo|hi``.
    """
    n = gc.shape[-1]
    b = bd.a + s[:, None] * gc
    offset = s * gbar
    two_sided = bd.hi > bd.lo
    t = t_prev.clone()
    m = bd.lo.clone()
    bound = ~two_sided
    y, free = torch.empty_like(b), torch.empty_like(b, dtype=torch.bool)
    if bool(two_sided.any()):
        # where the free-mean fixed point lies (above hi / below lo / inside) follows from the sign
        # of the nonincreasing residual mean(clip(t + b)) − (t − offset) at the two bounds
        i = two_sided.nonzero()[:, 0]
        bi, lo, hi, off = b[i], bd.lo[i], bd.hi[i], offset[i]
        above = (bi + (hi + off)[:, None]).clamp(0.0, 1.0).mean(-1) > hi
        below = (bi + (lo + off)[:, None]).clamp(0.0, 1.0).mean(-1) < lo
        inside = ~(above | below)
        m[i] = torch.where(above, hi, lo)
        bound[i] = ~inside
        if bool(inside.any()):
            k = i[inside]
            t_fp, y_k, free_k = _solve_shift(
                b[k], 1.0, -offset[k], t_prev[k], bd.lo[k] + offset[k], bd.hi[k] + offset[k]
            )
            t[k], m[k], y[k], free[k] = t_fp, t_fp - offset[k], y_k, free_k
    if bool(bound.all()):  # the usual case (ε1 = 0, or the mean bound active): no scatter
        t, y, free = _solve_shift(b, 0.0, m, t_prev)
    elif bool(bound.any()):
        j = bound.nonzero()[:, 0]
        t[j], y[j], free[j] = _solve_shift(b[j], 0.0, m[j], t_prev[j])
    resid = y - bd.a - m[:, None]
    nfree = free.sum(-1).to(gc.dtype)
    gfree = torch.where(free, gc, 0.0).sum(-1)
    zero = torch.zeros_like(gfree)
    dt_interior = torch.where(nfree < n, (gfree + n * gbar) / (n - nfree).clamp_min(1.0), zero)
    dt_bound = torch.where(nfree > 0, -gfree / nfree.clamp_min(1.0), zero)
    dt = torch.where(bound, dt_bound, dt_interior)
    dm = torch.where(bound, zero, dt - gbar)
    dres = torch.where(free, gc + (dt - dm)[:, None], -dm[:, None])
    return _State(
        y=y,
        t=t,
        m=m,
        rho=torch.linalg.vecdot(resid, resid),
        drho=2.0 * torch.linalg.vecdot(resid, dres),
        curv=torch.linalg.vecdot(dres, dres),
        bound=bound,
    )


def solve_exact(
    x: torch.Tensor, g: torch.Tensor, eps1: float, eps2: float, max_iter: int = 100
) -> QCQPSolution:
    """Exact solution of (8) with the box, for ``B`` rows ``x``, gradients ``g`` (``B×n``).

    Lagrange multipliers for the norm (searched as ``s = 1/(2λ)``) and for the mean (through the
    shift ``t``), each with safeguarded Newton steps; see the module docstring. Runs on the
    tensors' device in float64.
    """
    start = time.perf_counter()
    x, g = x.double(), g.double()
    gnorm = g.norm(dim=-1, keepdim=True)
    g = torch.where(gnorm > 0, g / gnorm.clamp_min(1e-300), g)
    bd = make_bounds(x, eps1, eps2)
    if eps2 == 0.0:
        return _solve_rigid(x, g, bd, start)
    gbar = g.mean(-1)
    gc = g - gbar[:, None]
    gbar = torch.where(bd.hi > bd.lo, gbar, torch.zeros_like(gbar))  # a fixed mean ignores it
    gc_norm = gc.norm(dim=-1)
    s = torch.where(gc_norm > 0, bd.r2.sqrt() / gc_norm.clamp_min(1e-300), torch.ones_like(gc_norm))
    s_cap = 1e9 * s
    s_lo = torch.zeros_like(s)
    s_hi = torch.full_like(s, math.inf)
    t_prev = torch.minimum(torch.maximum(bd.mu, bd.lo), bd.hi) + s * gbar
    done = torch.zeros_like(s, dtype=torch.bool)
    free_ball = torch.zeros_like(done)
    iters = torch.zeros_like(s)
    st = _evaluate(gc, gbar, bd, s, t_prev)
    for _ in range(max_iter):
        gap = bd.r2 - st.rho
        # ball not reached however far the gradient pushes (box and mean bind first): λ = 0
        inactive = (gap > 0) & (((st.drho <= 0) & (st.curv <= 1e-20)) | (s >= s_cap))
        free_ball = free_ball | (inactive & ~done)
        done = done | (gap.abs() <= _NORM_RTOL * bd.r2 + 1e-20) | inactive
        if bool(done.all()):
            break
        iters = iters + (~done).double()
        s_lo = torch.where(~done & (gap > 0), s, s_lo)
        s_hi = torch.where(~done & (gap < 0), s, s_hi)
        disc = st.drho * st.drho + 4.0 * st.curv * gap
        denom = st.drho + disc.clamp_min(0.0).sqrt()
        step = 2.0 * gap / torch.where(denom > 0, denom, torch.ones_like(denom))
        newton = s + step
        ok = (disc >= 0) & (denom > 0) & (newton > s_lo) & (newton < s_hi)
        mid = torch.where(torch.isinf(s_hi), 2.0 * s, torch.where(s_lo > 0, (s_lo * s_hi).sqrt(), 0.5 * s_hi))
        s = torch.where(done, s, torch.where(ok, newton, mid))
        st = _evaluate(gc, gbar, bd, s, st.t)
    over = st.rho > bd.r2 * (1.0 + 1e-9)
    if bool(over.any()):  # never return a point outside the ball: fall back to the feasible side
        s = torch.where(over, s_lo, s)
        st = _evaluate(gc, gbar, bd, s, st.t)
    n = x.shape[-1]
    lam = torch.where(free_ball, torch.zeros_like(s), 0.5 / s)  # s = 0 (ε2 = 0): λ = inf
    # stationarity: y = clip(m + νs + a + s g) ⇒ ν = (t − m)/s − mean(g); dual_mean = −n ν
    nu = (st.t - st.m) / s.clamp_min(1e-300) - g.mean(-1)
    dual_mean = torch.where(st.bound, -n * nu, torch.zeros_like(s))
    y = st.y
    mean_y = y.mean(-1)
    status = ["optimal" if bool(d) else "max_iter (feasible)" for d in done]
    return QCQPSolution(
        y=y,
        objective=(g * y).sum(-1),
        dual_norm=lam,
        dual_mean=dual_mean,
        mean_gap=torch.clamp(bd.lo - mean_y, min=0) + torch.clamp(mean_y - bd.hi, min=0),
        norm_slack=bd.r2 - (y - mean_y[:, None] - bd.a).pow(2).sum(-1),
        status=status,
        iterations=iters,
        seconds=time.perf_counter() - start,
        duality_gap=lagrangian_dual(g, bd, lam, dual_mean) - (g * y).sum(-1),
        solver="exact",
    )


def lagrangian_dual(
    g: torch.Tensor, bd: Bounds, dual_norm: torch.Tensor, dual_mean: torch.Tensor
) -> torch.Tensor:
    """Dual function of (8) at the multipliers, with the box ``[0, 1]ⁿ`` kept as the domain; ``(B,)``.

    ``D(λ, ν) = max_{y∈[0,1]ⁿ} gᵀy − λ(‖Py − a‖² − r²) − ν₊(ȳ − hi) − ν₋(lo − ȳ)`` with ``P`` the
    centring, ``ν = dual_mean`` (+: upper bound, −: lower). Writing ``‖Py − a‖² = min_c ‖y − c − a‖²``
    makes the inner problem separable for fixed ``c``: ``y = clip(c + a + (g − ν/n)/(2λ))`` with
    ``c = mean(y)`` (one shift solve); ``λ = 0`` leaves a linear program over the box. By weak
    duality ``D − gᵀy ≥ 0`` for any feasible ``y``: the duality gap the exact solver reports.
    """
    n = g.shape[-1]
    shifted = g - (dual_mean / n)[:, None]
    consts = dual_mean.clamp_min(0) * bd.hi - (-dual_mean).clamp_min(0) * bd.lo
    lam = dual_norm
    s = 0.5 / lam.clamp_min(1e-300)
    c, y, _ = _solve_shift(bd.a + s[:, None] * shifted, 1.0, torch.zeros_like(lam), bd.mu)
    quad = (shifted * y).sum(-1) - lam * ((y - c[:, None] - bd.a).pow(2).sum(-1) - bd.r2)
    linear = shifted.clamp_min(0).sum(-1)
    return torch.where(lam > 0, quad, linear) + consts


def _solve_rigid(x: torch.Tensor, g: torch.Tensor, bd: Bounds, start: float) -> QCQPSolution:
    """``ε2 = 0``: ``Y = X`` exactly, so only the mean moves — to the end of its feasible interval
    (S1 bounds ∩ the box) that the mean gradient favours. Multipliers are not defined (NaN)."""
    gbar = g.mean(-1)
    low = torch.maximum(bd.lo - bd.mu, -x.amin(-1))
    high = torch.minimum(bd.hi - bd.mu, 1.0 - x.amax(-1))
    shift = torch.where(gbar > 0, high, torch.where(gbar < 0, low, torch.zeros_like(gbar)))
    y = (x + shift[:, None]).clamp(0.0, 1.0)
    nan = torch.full_like(gbar, math.nan)
    return QCQPSolution(
        y=y,
        objective=(g * y).sum(-1),
        dual_norm=nan,
        dual_mean=nan,
        mean_gap=torch.zeros_like(gbar),
        norm_slack=torch.zeros_like(gbar),
        status=["optimal"] * x.shape[0],
        iterations=torch.zeros_like(gbar),
        seconds=time.perf_counter() - start,
        duality_gap=nan,
        solver="exact",
    )


# --------------------------------------------------------------------------------------------
# cvxpy
# --------------------------------------------------------------------------------------------


def cvxpy_available() -> tuple[bool, str]:
    """Whether cvxpy (with Clarabel or SCS) can be imported, and why not."""
    try:
        import cvxpy as cp
    except ImportError:
        return False, "cvxpy is not installed (pip install cvxpy)."
    solvers = set(cp.installed_solvers())
    if not solvers & {"CLARABEL", "SCS"}:
        return False, "cvxpy has neither Clarabel nor SCS installed."
    return True, ""


def _cvxpy_row(x: Any, g: Any, eps1: float, eps2: float, solver: str) -> dict[str, Any]:
    import cvxpy as cp
    import numpy as np

    n = x.size
    mu = float(x.mean())
    centred = x - mu
    a = eta(eps2) * centred
    e2 = eta(eps2)
    r2 = (e2 * e2 - 1.0) * float(centred @ centred) + n * e2 * eps2 * eps2 * C2
    lo, hi = (float(v) for v in mean_bounds(torch.tensor(mu, dtype=torch.float64), eps1))
    y = cp.Variable(n)
    m = cp.Variable()
    c_hi = m <= hi
    c_lo = m >= lo
    c_norm = cp.sum_squares(y - m - a) <= r2
    prob = cp.Problem(cp.Maximize(g @ y), [y >= 0, y <= 1, cp.sum(y) == n * m, c_hi, c_lo, c_norm])
    order = [solver] + [s for s in ("CLARABEL", "SCS") if s != solver]
    errors: list[str] = []
    for name in order:
        try:
            data, chain, inverse = prob.get_problem_data(name)
            for inv in inverse:  # solve_via_data leaves these unset; invert() reads them
                if getattr(inv, "solver_options", {}) is None:
                    inv.solver_options = {}
            raw = chain.solve_via_data(prob, data)
            prob.unpack_results(raw, chain, inverse)
        except Exception as exc:  # cvxpy raises SolverError and others
            errors.append(f"{name}: {exc}")
            continue
        if prob.status in ("optimal", "optimal_inaccurate") and y.value is not None:
            if name == "CLARABEL":
                gap = abs(float(raw.obj_val) - float(raw.obj_val_dual))
            else:
                gap = abs(float(raw["info"].get("gap", math.nan)))
            return {
                "y": np.clip(np.asarray(y.value, dtype=np.float64), 0.0, 1.0),
                "status": f"{prob.status} ({name.lower()})",
                "gap": gap,
                "dual_norm": float(np.asarray(c_norm.dual_value).ravel()[0]),
                "dual_mean": float(c_hi.dual_value) - float(c_lo.dual_value),
                "iters": float(prob.solver_stats.num_iters or 0),
            }
        errors.append(f"{name}: {prob.status}")
    raise RuntimeError("cvxpy could not solve the PGAP problem: " + "; ".join(errors))


def solve_cvxpy(
    x: torch.Tensor, g: torch.Tensor, eps1: float, eps2: float, solver: str = "CLARABEL"
) -> QCQPSolution:
    """(8) with the box via cvxpy, one problem per row; Clarabel first, SCS as fallback.

    Formulated with the mean as an auxiliary scalar ``m`` (``Σy = n m``), which keeps the problem
    sparse. Raises RuntimeError when no solver succeeds.
    """
    ok, why = cvxpy_available()
    if not ok:
        raise RuntimeError(why)
    start = time.perf_counter()
    device = x.device
    xd, gd = x.double().cpu(), g.double().cpu()
    gd = gd / gd.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    rows = [_cvxpy_row(xr.numpy(), gr.numpy(), eps1, eps2, solver) for xr, gr in zip(xd, gd, strict=True)]
    y = torch.stack([torch.from_numpy(r["y"]) for r in rows])
    bd = make_bounds(xd, eps1, eps2)
    mean_y = y.mean(-1)

    def col(key: str) -> torch.Tensor:
        return torch.tensor([r[key] for r in rows], dtype=torch.float64, device=device)

    return QCQPSolution(
        y=y.to(device),
        objective=(gd * y).sum(-1).to(device),
        dual_norm=col("dual_norm"),
        dual_mean=col("dual_mean"),
        mean_gap=(torch.clamp(bd.lo - mean_y, min=0) + torch.clamp(mean_y - bd.hi, min=0)).to(device),
        norm_slack=(bd.r2 - (y - mean_y[:, None] - bd.a).pow(2).sum(-1)).to(device),
        status=[r["status"] for r in rows],
        iterations=col("iters"),
        seconds=time.perf_counter() - start,
        duality_gap=col("gap"),
        solver="cvxpy",
    )


def solve(x: torch.Tensor, g: torch.Tensor, eps1: float, eps2: float, solver: str = "exact") -> QCQPSolution:
    """Dispatch to :func:`solve_exact` (``exact``) or :func:`solve_cvxpy` (``cvxpy``)."""
    if solver == "exact":
        return solve_exact(x, g, eps1, eps2)
    if solver == "cvxpy":
        return solve_cvxpy(x, g, eps1, eps2)
    raise ValueError(f"solver must be 'exact' or 'cvxpy'; got {solver!r}.")
