"""The one-shot solvers behind ``reg_quad`` (quadratic-ℓp; Balda, Behboodi and Mathar,
"Perturbation Analysis of Learning Algorithms", §III-A eq. 12–14 and §IV-A eq. 19): maximise the
linearised output change ``‖J η‖²`` under ``‖η‖_p ≤ ε`` for p = 2 (top right singular vector), 1
(one value) and ∞ (block-greedy signs), plus the sign choice and the L∞ snap shared with the
iterative attacks of :mod:`percviz.attacks.regression`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from percviz.attacks.base import AttackContext
from percviz.attacks.solvers.jacobian import (
    PROBES,
    Jacobian,
    _dot,
    _per_image,
    column_norm_estimate,
    exact_column_norms,
    lanczos_top_singular_vector,
    top_singular_vector,
)


def best_sign(ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
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
    """quadratic-ℓ2 (eq. 13): ``η = ±ε v_max``, ``v_max`` by Lanczos (default) or power iteration."""
    jac = Jacobian(ctx, x)
    solve = lanczos_top_singular_vector if params["solver"] == "lanczos" else top_singular_vector
    v, info = solve(ctx, jac, params["steps"])
    eta = params["eps"] * (1.0 - 1e-6) * v
    return eta, info


def l1_room(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``N×M`` how far each value can move inside [0, 1] in its roomier direction, at most ε:
    ``min(ε, max(x_k, 1 − x_k))``."""
    flat = x.flatten(1).double()
    return torch.minimum(torch.maximum(flat, 1.0 - flat), torch.tensor(eps, dtype=torch.float64))


def quad_l1(
    ctx: AttackContext, x: torch.Tensor, y0: torch.Tensor, params: dict[str, Any]
) -> tuple[torch.Tensor, dict[str, Any]]:
    """quadratic-ℓ1 (eq. 14): ``η = ±ε e_k*``.

    ``l1_rule = paper``: ``k* = argmax_k ‖J_k‖`` (eq. 14, blind to the [0, 1] box: a value near
    0 or 1 cannot move by ε). ``box`` (default): ``k* = argmax_k ‖J_k‖·room_k`` with ``room_k =
    min(ε, max(x_k, 1 − x_k))``, the linearised objective ``‖J η‖`` that survives clipping.
    Exact when ``candidates ≥ M`` (every column measured by a JVP). Otherwise the argmax is
    approximated: coordinates are ranked by :func:`column_norm_estimate` (times the room for
    ``box``) and only the top ``candidates`` columns are measured exactly.
    """
    jac = Jacobian(ctx, x)
    n, m = x.shape[0], x[0].numel()
    cand = min(params["candidates"], m)
    box = params["l1_rule"] == "box"
    room = l1_room(x, params["eps"])
    if cand == m:
        coords = torch.arange(m, device=x.device).expand(n, m)
    else:
        estimate = column_norm_estimate(ctx, jac)
        coords = (estimate * room.pow(2) if box else estimate).topk(cand, dim=1).indices
    norms = exact_column_norms(jac, coords)
    reach = room.gather(1, coords)
    best = (norms * reach if box else norms).argmax(dim=1)
    rows = torch.arange(n, device=x.device)
    k = coords[rows, best]
    up = x.flatten(1)[rows, k] <= 0.5  # the roomier direction (the true f still picks the sign)
    eta = torch.zeros_like(x).flatten(1)
    eta[rows, k] = torch.where(up, params["eps"], -params["eps"]).to(x.dtype)
    ctx.step(1, 1, column_norm=norms[rows, best].mean())
    return eta.view_as(x), {
        "l1_rule": "box-aware ‖J_k‖·room_k" if box else "paper eq. 14 ‖J_k‖",
        "coordinate": k.tolist(),
        "column_norm": norms[rows, best].tolist(),
        "room": reach[rows, best].tolist(),
        "linearised_objective": (norms[rows, best] * reach[rows, best]).tolist(),
        "columns_measured": cand,
        "exact": cand == m,
        "ranking": "all columns"
        if cand == m
        else f"top {cand} of {m} by a {PROBES}-probe estimate of ‖J_k‖²" + (" × room²" if box else ""),
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
    exact = blocks == m - 1 and params["candidates"] >= m
    method = "exact eq. 19" if exact else f"block-greedy approximation of eq. 19 ({blocks} blocks)"
    return params["eps"] * rho.view_as(x), {"greedy_blocks": blocks, "exact_eq19": exact, "method": method}


QUAD = {1.0: quad_l1, 2.0: quad_l2, math.inf: quad_linf}
