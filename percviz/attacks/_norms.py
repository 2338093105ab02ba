"""ℓp helpers shared by the norm-bounded and perturbation-analysis attacks (Balda et al. 2019 §II).

- :func:`steepest_step`: the closed-form maximiser of ``ηᵀg`` over ``‖η‖_p ≤ r`` (Balda et al. 2019 eq. 5–6
  with the sign flipped, because percviz objectives are maximised).
- :func:`pairwise_gradients`: ``∇(f_l − f_k)`` for the top-k candidate classes ``l`` of every image,
  batched into one replicated pass (DeepFool, Proposition 1 and ρ₂ need one gradient per class).

Every norm is per image (``(N,)``) and clamped away from zero, so a zero gradient gives a zero
step, never NaN.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from percviz.attacks.base import AttackContext
from percviz.attacks.schema import Param

CANDIDATES = Param(
    name="candidates",
    kind="int",
    default=10,
    low=1,
    high=999,
    help="How many other classes (the largest logits of the clean image) are linearised; each "
    "costs one replicated image in the batched gradient pass.",
    source="Balda et al. 2019 §VI (DeepFool restricted to the top classes)",
)
OVERSHOOT = Param(
    name="overshoot",
    kind="float",
    default=0.02,
    low=0.0,
    high=10.0,
    help="Relative overshoot past the linearised decision boundary (DeepFool uses 0.02).",
)

TINY = 1e-12
#: Replicated images per counted gradient call in :func:`pairwise_gradients` (bounds memory).
CHUNK = 32


def parse_p(p: float | str) -> float:
    """``"inf"`` / ``"2"`` / ``2.0`` → float exponent (``math.inf`` for the max norm)."""
    value = float(p)
    if math.isnan(value) or value < 1.0:
        raise ValueError(f"p must be ≥ 1 (or inf); got {p!r}.")
    return value


def dual(p: float) -> float:
    """Hölder conjugate ``q = p/(p−1)`` (1 ↔ ∞)."""
    if p == 1.0:
        return math.inf
    if math.isinf(p):
        return 1.0
    return p / (p - 1.0)


def lp_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    """``‖v_i‖_p`` per image of ``v`` (``N×…``) → ``(N,)``, computed in float64."""
    flat = v.detach().flatten(1).double()
    if math.isinf(p):
        return flat.abs().amax(dim=1)
    if p == 1.0:
        return flat.abs().sum(dim=1)
    if p == 2.0:
        return flat.norm(dim=1)
    scale = flat.abs().amax(dim=1, keepdim=True).clamp_min(TINY)
    return (flat / scale).abs().pow(p).sum(dim=1).pow(1.0 / p) * scale[:, 0]


def steepest_step(g: torch.Tensor, p: float, radius: torch.Tensor | float) -> torch.Tensor:
    """``argmax_η ηᵀg`` s.t. ``‖η‖_p ≤ radius`` per image (Balda et al. 2019 Theorem 2, eq. 5–6).

    ``η = r · sign(g) ⊙ |g|^(q−1) / ‖g‖_q^(q−1)`` with ``q = p/(p−1)``; ``p = ∞`` gives
    ``r·sign(g)``, ``p = 2`` the normalised gradient, ``p = 1`` one coordinate (the largest
    ``|g_i|``). ``g`` is rescaled by its max first so large ``q`` neither overflows nor underflows.
    ``radius`` is a float or an ``(N,)`` tensor. Zero gradients give a zero step.
    """
    n = g.shape[0]
    flat = g.detach().flatten(1).double()
    if math.isinf(p):
        unit = flat.sign()
    elif p == 1.0:
        idx = flat.abs().argmax(dim=1, keepdim=True)
        unit = torch.zeros_like(flat).scatter_(1, idx, flat.gather(1, idx).sign())
    else:
        q = dual(p)
        a = flat.abs() / flat.abs().amax(dim=1, keepdim=True).clamp_min(TINY)
        if p == 2.0:
            unit = flat.sign() * a / a.norm(dim=1, keepdim=True).clamp_min(TINY)
        else:
            norm_q = a.pow(q).sum(dim=1, keepdim=True).pow((q - 1.0) / q).clamp_min(TINY)
            unit = flat.sign() * a.pow(q - 1.0) / norm_q
    r = torch.as_tensor(radius, dtype=torch.float64, device=g.device)
    r = r.view(n, 1) if r.ndim else r
    return (unit * r).view_as(g).to(g.dtype)


def shrink_to_ball(delta: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """Bring ``delta`` inside ``‖·‖_p ≤ eps`` per image: clamp for ∞, else rescale.

    For ``p = 2`` this is the Euclidean projection; for other ``p`` it is only used to remove
    rounding excess of iterates that are already in the ball up to float error.
    """
    if math.isinf(p):
        return delta.clamp(-eps, eps)
    norm = lp_norm(delta, p)
    factor = torch.where(norm > eps, eps / norm.clamp_min(TINY), torch.ones_like(norm))
    return delta * factor.to(delta.dtype).view(-1, *([1] * (delta.ndim - 1)))


def project(x: torch.Tensor, x_adv: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """``x + δ`` with ``δ`` in the ℓp ball and ``x + δ`` in [0, 1] (clipping only shrinks ``|δ_i|``).

    Float32 rounding of ``x + δ`` can push ``‖δ‖`` a hair over ``eps``; the ball is therefore
    enforced with a relative margin of 1e-6 so the re-measured bound holds to float precision.
    """
    margin = eps * (1.0 - 1e-6) if not math.isinf(p) else eps
    delta = shrink_to_ball(x_adv - x, p, margin)
    return (x + delta).clamp(0.0, 1.0)


def measure_lp(_model: torch.nn.Module, x: torch.Tensor, x_adv: torch.Tensor, params: Any) -> torch.Tensor:
    """``‖x_adv − x‖_p`` per image with ``p = params['p']`` (a :class:`~percviz.attacks.bounds.Constraint`
    measure for attacks whose norm is a parameter)."""
    return lp_norm(x_adv.double() - x.double(), parse_p(params["p"]))


def random_in_ball(ctx: AttackContext, shape: torch.Size, p: float, radius: float) -> torch.Tensor:
    """A seeded random point of ℓp norm ``radius·u`` (Gaussian direction, ``u ~ U[0,1)`` per image)."""
    z = ctx.randn(shape)
    u = ctx.rand((shape[0],)).double()
    scale = radius * u / lp_norm(z, p).clamp_min(TINY)
    return z * scale.to(z.dtype).view(-1, *([1] * (len(shape) - 1)))


def candidate_classes(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """``N×k`` indices of the ``k`` largest logits other than ``labels`` (k capped at C−1)."""
    k = max(1, min(k, logits.shape[1] - 1))
    masked = logits.scatter(1, labels[:, None], float("-inf"))
    return masked.topk(k, dim=1).indices


def pairwise_gradients(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, cand: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``f_l − f_k`` and ``∇ₓ(f_l − f_k)`` for every candidate ``l`` of every image.

    The batch is replicated ``k`` times (image-major) and differentiated in counted
    :meth:`AttackContext.gradient` calls of at most :data:`CHUNK` rows, so the per-class gradients
    cost a few batched passes rather than ``k`` separate ones. A cancel is honoured between two
    calls (:meth:`AttackContext.check_cancel` raises), so a step over many classes stops early.

    Returns ``(diff N×k, grads N×k×3×H×W, logits N×C)`` with ``logits`` those of ``x`` itself.
    """
    n, k = cand.shape
    xr = x.repeat_interleave(k, dim=0)
    lab = labels.repeat_interleave(k)
    cls = cand.reshape(-1)
    diffs, grads, logits = [], [], []
    for start in range(0, n * k, CHUNK):
        ctx.check_cancel()
        sl = slice(start, start + CHUNK)
        c, y = cls[sl], lab[sl]

        def obj(z: torch.Tensor, _x: torch.Tensor, c: torch.Tensor = c, y: torch.Tensor = y) -> torch.Tensor:
            return z.gather(1, c[:, None])[:, 0] - z.gather(1, y[:, None])[:, 0]

        g, v, z = ctx.gradient(xr[sl], obj)
        diffs.append(v)
        grads.append(g)
        logits.append(z)
    diff = torch.cat(diffs).view(n, k)
    grad = torch.cat(grads).view(n, k, *x.shape[1:])
    z_all = torch.cat(logits).view(n, k, -1)[:, 0]
    return diff, grad, z_all


def closest_boundary(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, cand: torch.Tensor, q: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The candidate ``l̂`` minimising ``(f_k − f_l)/‖∇(f_l − f_k)‖_q`` (Balda et al. 2019 Theorem 1).

    Returns ``(L, w, ‖w‖_q, logits)`` per image with ``L = f_k − f_l̂`` (≥ 0 while the image is
    classified ``k``), ``w = ∇ₓ(f_l̂ − f_k)`` (the ascent direction towards ``l̂``) and the
    logits of ``x``. ``L/‖w‖_q`` is the linearised ℓp distance to the closest boundary.
    """
    diff, grads, logits = pairwise_gradients(ctx, x, labels, cand)
    wq = lp_norm(grads.flatten(0, 1), q).view(diff.shape)
    dist = -diff.double() / wq.clamp_min(TINY)
    best = dist.argmin(dim=1)
    rows = torch.arange(x.shape[0], device=x.device)
    return -diff[rows, best].double(), grads[rows, best], wq[rows, best], logits
