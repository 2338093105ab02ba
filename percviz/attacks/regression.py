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

:func:`run_regression_attack` is the template (the regression counterpart of
:func:`~percviz.attacks.base.run_attack`): it validates, seeds, counts passes, clips to [0, 1],
re-measures every bound against the original image and reports the output metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from percviz.attacks._norms import TINY, lp_norm, measure_lp, parse_p, project, random_in_ball, steepest_step
from percviz.attacks.base import (
    AttackCancelled,
    AttackContext,
    AttackOutput,
    AttackSpec,
    ProgressCallback,
    get_attack,
    register,
    validate_batch,
)
from percviz.attacks.bounds import Constraint, judge_bounds
from percviz.attacks.checks import measure_constraints
from percviz.attacks.params import STEPS, with_default
from percviz.attacks.schema import Param, ParamValue
from percviz.errors import ParameterError

SOURCE = "Balda, Behboodi, Mathar, Perturbation Analysis of Learning Algorithms"
FAMILY = "regression (perturbation analysis)"
#: Power iteration stops once ``‖JᵀJv − λv‖ / λ`` is below this for every image.
POWER_TOL = 1e-6
#: Random output-space probes for the column-norm estimate that ranks coordinates (p = 1, ∞).
PROBES = 8
#: Replicated images per counted JVP call when column norms are measured exactly.
CHUNK = 32


# --- the template ----------------------------------------------------------------------------


@dataclass
class RegressionResult:
    """Everything one regression run produced, on CPU.

    ``output`` / ``output_adv`` are ``f(x)`` and ``f(x_adv)`` (``N×3×H×W`` or ``N×K``).
    ``metrics`` has one dict per image: input ``psnr``, ``ssim`` (images ≥ 11 px), ``l2``, ``linf``,
    ``l0`` and output ``output_mse``, ``output_psnr``, ``output_l2``. ``within_bound`` is per image:
    every hard constraint of the attack holds, re-measured against the original.
    """

    attack_id: str
    params: dict[str, ParamValue]
    seed: int
    x: torch.Tensor
    x_adv: torch.Tensor
    output: torch.Tensor
    output_adv: torch.Tensor
    history: list[dict[str, Any]]
    forward_passes: int
    backward_passes: int
    wall_time: float
    constraints: dict[str, list[float]]
    metrics: list[dict[str, float]]
    info: dict[str, Any]
    cancelled: bool
    device: str
    within_bound: torch.Tensor
    bounds: list[dict[str, Any]] = field(default_factory=list)


def output_peak(output: torch.Tensor, image_output: bool) -> torch.Tensor:
    """Peak value for output PSNR per image: 1 for [0, 1] images, ``max|f(x)|`` for vectors."""
    if image_output:
        return torch.ones(output.shape[0], dtype=torch.float64, device=output.device)
    return output.detach().double().flatten(1).abs().amax(1).clamp_min(TINY)


@torch.no_grad()
def output_metrics(
    output: torch.Tensor, output_adv: torch.Tensor, image_output: bool
) -> dict[str, torch.Tensor]:
    """``output_mse``, ``output_psnr`` (dB, ``10·log10(peak²/MSE)``, §VI-B) and ``output_l2`` per image."""
    diff = (output_adv.double() - output.double()).flatten(1)
    mse = diff.pow(2).mean(1)
    peak = output_peak(output, image_output)
    psnr = torch.where(
        mse > 0, 10.0 * torch.log10(peak**2 / mse.clamp_min(1e-300)), torch.full_like(mse, math.inf)
    )
    return {"output_mse": mse, "output_psnr": psnr, "output_l2": diff.norm(dim=1)}


@torch.no_grad()
def _input_metrics(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, torch.Tensor]:
    from percviz.analysis.metrics import perturbation_norms, psnr, ssim

    norms = perturbation_norms(x, x_adv)
    out = {"psnr": psnr(x, x_adv), "l2": norms["l2"], "linf": norms["linf"], "l0": norms["l0"]}
    if min(x.shape[-2:]) >= 11:
        out["ssim"] = ssim(x.float(), x_adv.float())
    return out


def _check_regressor(model: torch.nn.Module) -> None:
    if getattr(model, "kind", "classifier") != "regressor":
        raise ParameterError(
            "Regression attacks need a regression model (autoencoder, embedding:<classifier> or "
            "file:PATH); this model is a classifier."
        )


def run_regression_attack(
    attack_id: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> RegressionResult:
    """Run one regression attack on ``x`` (``N×3×H×W`` in [0, 1]) against a regressor ``model``.

    The attack function receives ``f(x)`` in the ``labels`` slot (the reference output, the
    paper's ``y ≈ f(x)``). The input tensor is never modified.
    """
    from percviz.serving.hosted import enforce

    spec = get_attack(attack_id)
    if spec.task != "regression":
        raise ParameterError(f"Attack '{attack_id}' attacks classifiers; run it with run_attack.")
    _check_regressor(model)
    values = spec.validate(params)
    enforce(spec, values)
    validate_batch(x)
    ctx = AttackContext(model, seed, progress)
    x0 = x.detach().to(ctx.device, torch.float32).clone()
    start = time.perf_counter()
    y0 = ctx.logits(x0)
    try:
        output = spec.fn(ctx, x0.clone(), y0, values)
    except AttackCancelled:
        output = AttackOutput(x0.clone(), info={"cancelled_inside_step": True})
    x_adv = output.x_adv.detach().clamp(0.0, 1.0)
    if not torch.isfinite(x_adv).all():
        raise RuntimeError(f"Attack '{attack_id}' produced non-finite values.")
    y_adv = ctx.logits(x_adv)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    wall = time.perf_counter() - start
    constraints = measure_constraints(x0, x_adv)
    constraints.update({k: v.detach().double().cpu().tolist() for k, v in output.constraints.items()})
    bounds = judge_bounds(spec, values, model, x0, x_adv, constraints)
    within = torch.ones(x0.shape[0], dtype=torch.bool)
    for check in bounds:
        if check["kind"] == "hard":
            within &= torch.tensor(check["within"], dtype=torch.bool)
    columns = {**_input_metrics(x0, x_adv), **output_metrics(y0, y_adv, y0.shape == x0.shape)}
    metrics = [{k: float(v[i]) for k, v in columns.items()} for i in range(x0.shape[0])]
    return RegressionResult(
        attack_id=attack_id,
        params=values,
        seed=seed,
        x=x0.cpu(),
        x_adv=x_adv.cpu(),
        output=y0.cpu(),
        output_adv=y_adv.cpu(),
        history=ctx.history,
        forward_passes=ctx.forward_passes,
        backward_passes=ctx.backward_passes,
        wall_time=wall,
        constraints=constraints,
        metrics=metrics,
        info=output.info,
        cancelled=ctx.cancelled,
        device=str(ctx.device),
        within_bound=within,
        bounds=bounds,
    )


# --- matrix-free Jacobian products -----------------------------------------------------------


class Jacobian:
    """``J = ∂f/∂x`` at ``x`` (block diagonal over the batch), applied without storing it.

    :meth:`vjp` reuses one linearisation (``torch.func.vjp``); :meth:`jvp` is forward-mode
    (``torch.func.jvp``), falling back to the double-backward trick for models forward mode does
    not support (e.g. TorchScript). Every product is counted as one forward or backward pass.
    """

    def __init__(self, ctx: AttackContext, x: torch.Tensor) -> None:
        self.ctx = ctx
        self.x = x
        pair = torch.func.vjp(ctx.model, x)
        self.output, self._vjp = pair[0].detach(), pair[1]
        ctx.forward_passes += 1
        self._forward_mode = True

    def vjp(self, u: torch.Tensor) -> torch.Tensor:
        """``Jᵀu`` for ``u`` shaped like ``f(x)``."""
        (g,) = self._vjp(u)
        self.ctx.backward_passes += 1
        return g.detach()

    def jvp(self, v: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        """``J v`` (at ``x`` instead when given, e.g. a replicated batch)."""
        at = self.x if x is None else x
        self.ctx.forward_passes += 1
        if self._forward_mode:
            try:
                return torch.func.jvp(self.ctx.model, (at,), (v,))[1].detach()
            except (RuntimeError, NotImplementedError):
                self._forward_mode = False
        self.ctx.backward_passes += 2
        with torch.enable_grad():
            return torch.autograd.functional.jvp(self.ctx.model, at, v)[1].detach()


def _per_image(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """An ``(N,)`` tensor shaped to broadcast over ``like`` (``N×…``)."""
    return v.view(-1, *([1] * (like.ndim - 1)))


def _unit(v: torch.Tensor) -> torch.Tensor:
    norm = v.flatten(1).norm(dim=1).clamp_min(TINY)
    return v / norm.view(-1, *([1] * (v.ndim - 1)))


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.flatten(1).double() * b.flatten(1).double()).sum(1)


def top_singular_vector(
    ctx: AttackContext, jac: Jacobian, steps: int, tol: float = POWER_TOL
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Power iteration ``v ← JᵀJv / ‖JᵀJv‖`` from a seeded Gaussian start (eq. 13).

    Each iteration costs one JVP and one VJP. Per image it reports the Rayleigh quotient
    ``λ = vᵀJᵀJv = ‖Jv‖²`` (→ σ_max²), its relative change and the residual ``‖JᵀJv − λv‖/λ``;
    it stops when every residual is below ``tol`` or after ``steps`` iterations. Returns the unit
    vector ``v`` (``N×3×H×W``) and the diagnostics.
    """
    v = _unit(ctx.randn(jac.x.shape))
    lam_prev = torch.zeros(v.shape[0], dtype=torch.float64, device=v.device)
    lam = lam_prev
    residual = torch.full_like(lam, math.inf)
    done = 0
    for k in range(steps):
        w = jac.vjp(jac.jvp(v))
        lam = _dot(v, w)
        residual = (w.double() - lam.view(-1, *([1] * (w.ndim - 1))) * v.double()).flatten(1).norm(dim=1)
        residual = residual / lam.abs().clamp_min(TINY)
        change = (lam - lam_prev).abs() / lam.abs().clamp_min(TINY)
        lam_prev = lam
        done = k + 1
        zero = w.flatten(1).abs().amax(1) == 0
        v = torch.where(_per_image(zero, v), v, _unit(w))
        stop = ctx.step(
            done, steps, rayleigh=lam.mean(), rayleigh_change=change.max(), residual=residual.max()
        )
        if stop or bool((residual < tol).all()):
            break
    sigma = jac.jvp(v).flatten(1).double().norm(dim=1)
    return v, {
        "power_iterations": done,
        "rayleigh": lam.tolist(),
        "residual": residual.tolist(),
        "sigma_max": sigma.tolist(),
        "converged": bool((residual < tol).all()),
        "tolerance": tol,
    }


def column_norm_estimate(ctx: AttackContext, jac: Jacobian, probes: int = PROBES) -> torch.Tensor:
    """Unbiased estimate of the squared column norms ``‖J_k‖²`` for every coordinate ``k``.

    ``E[(Jᵀu)_k²] = ‖J_k‖²`` for ``u ~ N(0, I)`` in output space; averaged over ``probes`` VJPs
    (relative standard deviation ``√(2/probes)`` per coordinate). Returns ``N×M`` (float64).
    """
    acc = torch.zeros(jac.x.shape[0], jac.x[0].numel(), dtype=torch.float64, device=jac.x.device)
    for _ in range(probes):
        acc += jac.vjp(ctx.randn(jac.output.shape)).flatten(1).double().pow(2)
    return acc / probes


def exact_column_norms(jac: Jacobian, coords: torch.Tensor) -> torch.Tensor:
    """``‖J e_k‖₂`` for the ``N×c`` coordinates ``coords``: JVPs on a replicated batch, ``CHUNK``
    images per counted pass. Returns ``N×c`` (float64)."""
    n, c = coords.shape
    x_rep = jac.x.repeat_interleave(c, dim=0)
    flat = coords.reshape(-1)
    norms = []
    for start in range(0, n * c, CHUNK):
        sl = slice(start, start + CHUNK)
        xs = x_rep[sl]
        tangent = torch.zeros_like(xs).flatten(1)
        tangent[torch.arange(xs.shape[0]), flat[sl]] = 1.0
        jv = jac.jvp(tangent.view_as(xs), xs)
        norms.append(jv.flatten(1).double().norm(dim=1))
    return torch.cat(norms).view(n, c)


def _best_sign(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """``±η`` per image, whichever distorts the true output more after clipping (two forwards)."""
    gains = [
        (ctx.logits((x + s * eta).clamp(0.0, 1.0)) - y0).flatten(1).double().pow(2).sum(1) for s in (1, -1)
    ]
    sign = torch.where(gains[0] >= gains[1], 1.0, -1.0).to(eta.dtype)
    return eta * _per_image(sign, eta)


def snap_linf(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> torch.Tensor:
    """``x_adv`` with every value within ``eps`` of ``x`` *as re-measured in float64*.

    ``x ± ε`` in float32 can land just outside (ε itself rounds up in float32); such values are
    set to ``x + clip(x_adv − x, −ε, ε)`` rounded towards ``x``.
    """
    d = x_adv.double() - x.double()
    over = d.abs() > eps
    if not bool(over.any()):
        return x_adv
    target = (x.double() + d.clamp(-eps, eps)).to(x_adv.dtype)
    outside = (target.double() - x.double()).abs() > eps
    target = torch.where(outside, torch.nextafter(target, x), target)
    return torch.where(over, target, x_adv)


def quad_l2(
    ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """quadratic-ℓ2 (eq. 13): ``η = ±ε v_max``."""
    jac = Jacobian(ctx, x)
    v, info = top_singular_vector(ctx, jac, params["steps"])
    eta = params["eps"] * (1.0 - 1e-6) * v
    return eta, info


def quad_l1(
    ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """quadratic-ℓ1 (eq. 14): ``η = ±ε e_k*``, ``k* = argmax_k ‖J_k‖``.

    Exact when ``candidates ≥ M`` (every column measured by a JVP). Otherwise the argmax is
    approximated: coordinates are ranked by :func:`column_norm_estimate` and only the top
    ``candidates`` columns are measured exactly.
    """
    jac = Jacobian(ctx, x)
    m = x[0].numel()
    cand = min(params["candidates"], m)
    if cand == m:
        coords = torch.arange(m, device=x.device).expand(x.shape[0], m)
    else:
        coords = column_norm_estimate(ctx, jac).topk(cand, dim=1).indices
    norms = exact_column_norms(jac, coords)
    best = norms.argmax(dim=1)
    rows = torch.arange(x.shape[0], device=x.device)
    k = coords[rows, best]
    eta = torch.zeros_like(x).flatten(1)
    eta[rows, k] = params["eps"]
    ctx.step(1, 1, column_norm=norms[rows, best].mean())
    return eta.view_as(x), {
        "coordinate": k.tolist(),
        "column_norm": norms[rows, best].tolist(),
        "columns_measured": cand,
        "exact": cand == m,
        "ranking": "all columns"
        if cand == m
        else f"top {cand} of {m} by a {PROBES}-probe estimate of ‖J_k‖²",
    }


def quad_linf(
    ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """quadratic-ℓ∞ by the greedy sign rule (eq. 19 with S = 1): ``η = ε ρ``, ``ρ ∈ {±1}^M``.

    Coordinates are visited by decreasing (estimated) column norm; ``ρ_1 = 1`` and each next sign
    is ``sign((Σ_{j<z} ρ_j J_j)ᵀ J_z)``. Matrix-free, the coordinates are split into ``steps``
    blocks: one VJP ``Jᵀ(Jρ)`` gives the eq. 19 sign of every coordinate of the next block at
    once, one JVP updates ``Jρ``. With ``steps = M − 1`` and ``candidates ≥ M`` (the order from
    exactly measured column norms, not the estimate) this is eq. 19 exactly; fewer blocks
    approximate it (the signs inside a block do not see each other).
    """
    jac = Jacobian(ctx, x)
    n, m = x.shape[0], x[0].numel()
    if params["candidates"] >= m:
        every = torch.arange(m, device=x.device).expand(n, m)
        order = exact_column_norms(jac, every).argsort(dim=1, descending=True)
    else:
        order = column_norm_estimate(ctx, jac).argsort(dim=1, descending=True)
    rho = torch.zeros(n, m, dtype=x.dtype, device=x.device)
    rows = torch.arange(n, device=x.device)
    rho[rows, order[:, 0]] = 1.0
    blocks = max(1, min(params["steps"], m - 1))
    a = jac.jvp(rho.view_as(x))
    for b, idx in enumerate(order[:, 1:].tensor_split(blocks, dim=1)):
        g = jac.vjp(a).flatten(1).gather(1, idx)
        rho.scatter_(1, idx, torch.where(g >= 0, 1.0, -1.0).to(x.dtype))
        a = jac.jvp(rho.view_as(x))
        if ctx.step(b + 1, blocks, quadratic_objective=_dot(a, a).mean()):
            break
    return params["eps"] * rho.view_as(x), {"greedy_blocks": blocks, "exact_eq19": blocks == m - 1}


_QUAD = {1.0: quad_l1, 2.0: quad_l2, math.inf: quad_linf}


def reg_quad(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """quadratic-ℓp (eq. 12): the maximiser of ``‖J_f(x) η‖²`` over ``‖η‖_p ≤ ε``, sign by the true f."""
    p = parse_p(params["p"])
    eta, info = _QUAD[p](ctx, x, y0, params)
    eta = _best_sign(ctx, x, y0, eta)
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
    and sets the unused subset with the largest gain ``Σ g_i·(clip(x_i + ε·sign g_i) − x_i)`` (eq.
    22's ``Σ|g_i|`` with the [0, 1] box) to ``clip(x + ε·sign g)``.
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
        score = _block_sums((grad * (moved - x_adv)).sum(dim=1), size).masked_fill(used, float("-inf"))
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
        "For L2 the answer is ε times the Jacobian's top right singular vector, found by power iteration "
        "with Jacobian-vector products (the Jacobian is never stored); for L1 the single most sensitive "
        "value; for L∞ a greedy choice of signs. One shot, no iterations on the input.",
        formula=r"\max_{\|\eta\|_p\le\varepsilon}\|J_f(x)\,\eta\|_2^2,\quad p=2:\ \eta=\pm\varepsilon\,v_{\max}(J_f^\top J_f)",
        params=(
            P_REG,
            EPS_REG,
            Param(
                name="steps",
                kind="int",
                default=30,
                low=1,
                high=1000,
                help="p = 2: power iterations at most (stops when the Rayleigh quotient has converged); "
                "p = ∞: greedy sign blocks (more = closer to eq. 19).",
                source=f"{SOURCE}, eq. 13 and 19",
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
        "distortion at a dithered point and pushes the unused pixel with the largest gain by ε along the "
        "gradient sign. subsets = 1 is the single-pixel attack.",
        formula=r"s^*=\arg\max_s\sum_{i\in S_s}|\nabla L(x,\tilde\eta)_i|,\quad"
        r"\eta_{S_{s^*}}=\varepsilon\,\mathrm{sign}(\nabla L(x,\tilde\eta)_{S_{s^*}})",
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
            with_default(DITHER_REG, 0.05, unit="L∞, [0,1] units (capped at ε)"),
        ),
        fn=reg_subset,
        presets={
            "linear-pixel-100 (ε = 1)": {"eps": 1.0, "subsets": 100},
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
