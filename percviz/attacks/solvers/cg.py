"""Batched conjugate gradient for symmetric positive (semi-)definite operators given as a matvec.

One routine serves both users: PPGD's ``JᵀJ δ = ∇f̂`` (Laidlaw et al. 2021 Algorithm 1, one system per
image) and the Laplacian smoothing ``L_α x = b`` (Zhang et al. 2020 eq. 8, one system per image and
channel). The leading ``systems`` axes of ``b`` index independent systems; inner products run over
the rest.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


def system_dot(a: torch.Tensor, b: torch.Tensor, systems: int) -> torch.Tensor:
    """Inner products of ``a`` and ``b`` per system: over all axes after the first ``systems``,
    kept as size-1 axes so the result broadcasts against ``a``."""
    out = torch.linalg.vecdot(a.flatten(systems), b.flatten(systems))
    return out.view(*out.shape, *([1] * (a.dim() - systems)))


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0: a system whose curvature ``pᵀAp`` is not positive
    (finite differences can make it so) or whose residual is 0 stops moving."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


@torch.no_grad()
def conjugate_gradient(
    matvec: MatVec,
    b: torch.Tensor,
    iters: int,
    *,
    systems: int = 1,
    tol: float = 0.0,
    residual_sq: float = 0.0,
    precondition: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, int]:
    """Up to ``iters`` (preconditioned) CG iterations on ``A x = b`` from ``x₀ = 0``.

    ``r₀ = b`` (the product with ``x₀ = 0`` is skipped, as Algorithm 1 lines 5–6 do). With
    ``tol > 0`` the loop stops once every system's residual ``‖r‖ ≤ tol·‖b‖`` (one host
    synchronisation per iteration); with ``residual_sq > 0`` it stops once every system's
    ``‖r‖² < residual_sq`` (an absolute rule, as perceptual-advex's PPGD code uses with 0.1); with
    both 0 it runs exactly ``iters``. ``precondition``
    maps a residual to ``M⁻¹r``. Returns ``x`` (shape of ``b``) and the iterations run.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    z = precondition(r) if precondition is not None else r
    p = z.clone()
    rz = system_dot(r, z, systems)
    bnorm = system_dot(b, b, systems).sqrt()
    done = 0
    for k in range(iters):
        ap = matvec(p)
        step = _ratio(rz, system_dot(p, ap, systems))
        x.addcmul_(step, p)
        r.addcmul_(step, ap, value=-1.0)
        done = k + 1
        if tol > 0 and bool((system_dot(r, r, systems).sqrt() <= tol * bnorm).all()):
            break
        if residual_sq > 0 and bool((system_dot(r, r, systems) < residual_sq).all()):
            break
        z = precondition(r) if precondition is not None else r
        rz_next = system_dot(r, z, systems)
        p.mul_(_ratio(rz_next, rz)).add_(z)
        rz = rz_next
    return x, done
