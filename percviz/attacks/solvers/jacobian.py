"""Matrix-free access to the Jacobian ``J`` of a regression model ``f: R^M → R^K`` at ``x`` (Balda,
Behboodi and Mathar, "Perturbation Analysis of Learning Algorithms", §IV): JVPs and VJPs counted as
forward and backward passes, the top right singular vector of eq. 13 (by Lanczos on ``JᵀJ``, or
by the power iteration the paper names), and column norms, estimated by random output probes or
measured exactly (eq. 14). ``J`` is never stored.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import math
import warnings
from typing import Any

import torch

from percviz.attacks._norms import TINY
from percviz.attacks.base import (
    AttackContext,
)

#: Power iteration and Lanczos stop once ``‖JᵀJv − λv‖ / λ`` is below this for every image.
POWER_TOL = 1e-6
#: Lanczos keeps at most this many float64 basis vectors in memory (all images together); when
#: the basis is full it restarts from its current Ritz vector.
LANCZOS_BASIS_BYTES = 256 * 2**20
#: Bounds on the Lanczos basis length per restart cycle.
LANCZOS_BASIS = (8, 64)
#: Random output-space probes for the column-norm estimate that ranks coordinates (p = 1, ∞).
PROBES = 8
#: Replicated images per counted JVP call when column norms are measured exactly.
CHUNK = 32


@functools.cache
def _quiet_forward_mode() -> None:
    """``torch.func.jvp``'s first call imports torch's JVP decompositions, which call the deprecated
    ``torch.jit.script`` and print a FutureWarning on stderr; import them once with it silenced."""
    with warnings.catch_warnings(), contextlib.suppress(ImportError):  # a torch without it is quiet
        warnings.simplefilter("ignore", FutureWarning)
        importlib.import_module("torch._decomp.decompositions_for_jvp")


class Jacobian:
    """``J = ∂f/∂x`` at ``x`` (block diagonal over the batch), applied without storing it.

    :meth:`vjp` reuses one linearisation (``torch.func.vjp``); :meth:`jvp` is forward-mode
    (``torch.func.jvp``), falling back to the double-backward trick for models forward mode does
    not support (e.g. TorchScript). Every product is counted as one forward or backward pass.
    """

    def __init__(self, ctx: AttackContext, x: torch.Tensor) -> None:
        _quiet_forward_mode()
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
        "solver": "power",
        "iterations": done,
        "power_iterations": done,
        "rayleigh": lam.tolist(),
        "residual": residual.tolist(),
        "sigma_max": sigma.tolist(),
        "converged": bool((residual < tol).all()),
        "tolerance": tol,
    }


def lanczos_top_singular_vector(
    ctx: AttackContext, jac: Jacobian, steps: int, tol: float = POWER_TOL
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The top eigenvector of ``JᵀJ`` (eq. 13's ``v_max``) by Lanczos with full reorthogonalisation.

    Per image (``J`` is block diagonal over the batch) from the same seeded Gaussian start as the
    power iteration; each iteration costs one JVP and one VJP, like a power step, but converges
    with the square root of the eigengap instead of the gap itself (the bundled autoencoder has
    ``σ₂/σ₁`` up to 0.996, where 30 power steps are far from ``v_max``). The Ritz pair is taken
    from the tridiagonal matrix each step; the residual ``‖JᵀJv − λv‖/λ = |β_j s_j|/λ`` decides
    convergence (``tol``). The basis is kept in float64, at most :data:`LANCZOS_BASIS_BYTES`;
    when full, Lanczos restarts from its current Ritz vector. Returns the unit vector ``v``
    (``N×3×H×W``) and the diagnostics (as :func:`top_singular_vector`'s, with ``restarts``).
    """
    shape = jac.x.shape
    n, m = shape[0], jac.x[0].numel()
    room = LANCZOS_BASIS_BYTES // (8 * n * m)
    basis_len = max(LANCZOS_BASIS[0], min(LANCZOS_BASIS[1], room))
    ritz = _unit(ctx.randn(shape)).flatten(1).double()
    theta = torch.zeros(n, dtype=torch.float64, device=ritz.device)
    residual = torch.full_like(theta, math.inf)
    done, restarts = 0, -1
    while done < steps and not bool((residual < tol).all()):
        restarts += 1
        ritz, theta, residual, done, stop = _lanczos_cycle(
            ctx, jac, ritz, min(basis_len, steps - done), done, steps, tol
        )
        if stop:
            break
    v = _unit(ritz.to(jac.x.dtype).view(shape))
    sigma = jac.jvp(v).flatten(1).double().norm(dim=1)
    return v, {
        "solver": "lanczos",
        "iterations": done,
        "restarts": max(restarts, 0),
        "rayleigh": theta.tolist(),
        "residual": residual.tolist(),
        "sigma_max": sigma.tolist(),
        "converged": bool((residual < tol).all()),
        "tolerance": tol,
    }


def _lanczos_cycle(
    ctx: AttackContext, jac: Jacobian, start: torch.Tensor, length: int, done: int, steps: int, tol: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int, bool]:
    """One Lanczos run of at most ``length`` steps from ``start`` (``N×M`` float64, unit rows).

    Returns ``(ritz vector N×M, Ritz value N, residual N, iterations done in total, stopped)``;
    ``stopped`` when the progress callback asked to stop.
    """
    shape = jac.x.shape
    basis = [start]
    alphas: list[torch.Tensor] = []
    betas: list[torch.Tensor] = []
    for j in range(length):
        w = jac.vjp(jac.jvp(basis[-1].to(jac.x.dtype).view(shape))).flatten(1).double()
        alphas.append((w * basis[-1]).sum(1))
        q = torch.stack(basis, 1)  # N×j×M
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w = w - torch.einsum("njm,nj->nm", q, torch.einsum("njm,nm->nj", q, w))
        beta = w.norm(dim=1)
        tri = torch.diag_embed(torch.stack(alphas, 1))
        if betas:
            off = torch.stack(betas, 1)
            tri = tri + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
        values, vectors = torch.linalg.eigh(tri)
        theta = values[:, -1]
        residual = (beta * vectors[:, -1, -1]).abs() / theta.abs().clamp_min(TINY)
        done += 1
        stop = ctx.step(done, steps, rayleigh=theta.mean(), residual=residual.max())
        if stop or j == length - 1 or bool((residual < tol).all()):
            ritz = torch.einsum("njm,nj->nm", q, vectors[:, :, -1])
            return ritz / ritz.norm(dim=1, keepdim=True).clamp_min(TINY), theta, residual, done, stop
        betas.append(beta)
        # an image whose Krylov space is exhausted (β ≈ 0, residual 0) continues with zero vectors
        alive = beta > 1e-12 * theta.abs()
        basis.append(torch.where(alive[:, None], w / beta.clamp_min(TINY)[:, None], 0.0))
    raise AssertionError("unreachable: the loop returns at its last step")


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
