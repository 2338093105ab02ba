"""Graph Laplacian smoothing guided by an image (Zhang et al. 2020 §3, eq. 5–9).

A sparse graph over the pixels of a guide image ``x_o`` (``N×3×H×W``): each pixel is linked to its
4 or 8 nearest neighbours with weight ``w_ij = k_f(x_i, x_j) k_s(p_i, p_j)`` (eq. 5), where the
feature kernel ``k_f`` is Laplacian ``exp(−‖x_i − x_j‖ / h)`` or Gaussian ``exp(−‖x_i − x_j‖² / h²)``
on the Euclidean colour distance of the guide. The graph is stored as a *stencil*: one weight map
per neighbour offset, applied with shifted slices (faster than sparse matrices).

With ``D = diag(W1)`` and ``𝒲 = D^{-1/2} W D^{-1/2}``, the regularised Laplacian is
``L_α = (I − α𝒲)/(1 − α)`` (§3.3), the smoothing ``s_α(z) = L_α^{-1} z`` (eq. 8) is solved by batched
conjugate gradient, one system per image and channel, and the normalised smoothing is
``ŝ_α(z) = diag(s_α(1))^{-1} s_α(z)`` (eq. 9). Both are differentiable: ``L_α`` is symmetric, so the
backward pass applies the same solve to the incoming gradient (Zhang et al. 2020 eq. 19).

Jacobi preconditioning is offered but is exactly a no-op here: ``𝒲`` has a zero diagonal, so the
diagonal of ``L_α`` is the constant ``1/(1 − α)`` and CG is invariant to a scalar preconditioner.
For a converged solve at α = 0.997, raise ``iters`` and set ``tol``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from percviz.attacks.solvers import cg

Kernel = Literal["laplacian", "gaussian"]
Preconditioner = Literal["none", "jacobi"]

_OFFSETS_4 = ((0, 1), (1, 0))
_OFFSETS_8 = ((0, 1), (1, 0), (1, 1), (1, -1))


def _slices(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Regions ``a`` (pixels p) and ``b`` (pixels p + (dy, dx)) of every in-image pair; dy ≥ 0."""
    a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
    b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
    return a, b


def _add_stencil(
    out: torch.Tensor,
    v: torch.Tensor,
    offsets: tuple[tuple[int, int], ...],
    weights: tuple[torch.Tensor, ...],
) -> torch.Tensor:
    """``out += S v`` in place and return ``out``, for the symmetric stencil ``S`` with one
    ``N×1×H'×W'`` weight map per offset (each undirected edge stored once, applied both ways);
    ``v`` and ``out`` are ``N×C×H×W``."""
    h, w = v.shape[-2:]
    for (dy, dx), wt in zip(offsets, weights, strict=True):
        (ay, ax), (by, bx) = _slices(h, w, dy, dx)
        out[..., ay, ax].addcmul_(wt, v[..., by, bx])
        out[..., by, bx].addcmul_(wt, v[..., ay, ax])
    return out


@dataclass(frozen=True)
class ImageGraph:
    """The normalised adjacency ``𝒲 = D^{-1/2} W D^{-1/2}`` of an image graph, as a stencil.

    Attributes:
        weights: per offset, ``N×1×H'×W'`` normalised weights of the pairs ``(p, p + offset)``.
        offsets: the neighbour offsets ``(dy, dx)`` (each undirected edge stored once).
        degree: ``N×1×H×W`` degrees ``W1`` of the unnormalised graph.
    """

    weights: tuple[torch.Tensor, ...]
    offsets: tuple[tuple[int, int], ...]
    degree: torch.Tensor
    shape: tuple[int, int] = field(default=(0, 0))

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """``𝒲 v`` for ``v`` of shape ``N×C×H×W`` (channels share the graph)."""
        return _add_stencil(torch.zeros_like(v), v, self.offsets, self.weights)

    def to(self, dtype: torch.dtype) -> ImageGraph:
        """The same graph with weights in another floating dtype."""
        return ImageGraph(
            tuple(w.to(dtype) for w in self.weights), self.offsets, self.degree.to(dtype), self.shape
        )


def image_graph(
    guide: torch.Tensor,
    *,
    neighbours: int = 4,
    kernel: Kernel = "laplacian",
    bandwidth: float = 0.05,
    spatial_sigma: float = 1.0,
) -> ImageGraph:
    """Build the graph of Zhang et al. 2020 eq. 5 over the pixels of ``guide`` (``N×C×H×W``, [0, 1]).

    Args:
        guide: the image whose smoothness the graph encodes (detached; no gradient flows to it).
        neighbours: 4 or 8 spatial neighbours.
        kernel: feature kernel on the Euclidean colour distance ``d``: ``laplacian`` is
            ``exp(−d/h)`` (the paper's choice), ``gaussian`` is ``exp(−d²/h²)``.
        bandwidth: ``h`` in [0,1] colour units.
        spatial_sigma: std of the Gaussian spatial kernel ``k_s``; it only matters for the diagonal
            neighbours (distance √2) of the 8-neighbourhood.
    """
    if guide.ndim != 4:
        raise ValueError(f"The guide must be N×C×H×W; got {tuple(guide.shape)}.")
    if neighbours not in (4, 8):
        raise ValueError(f"neighbours must be 4 or 8; got {neighbours}.")
    if kernel not in ("laplacian", "gaussian"):
        raise ValueError(f"kernel must be 'laplacian' or 'gaussian'; got {kernel!r}.")
    if not bandwidth > 0:
        raise ValueError(f"bandwidth must be positive; got {bandwidth}.")
    g = guide.detach()
    if not g.is_floating_point():
        g = g.float()
    h, w = g.shape[-2:]
    offsets = _OFFSETS_4 if neighbours == 4 else _OFFSETS_8
    raw: list[torch.Tensor] = []
    degree = torch.zeros((g.shape[0], 1, h, w), dtype=g.dtype, device=g.device)
    for dy, dx in offsets:
        (ay, ax), (by, bx) = _slices(h, w, dy, dx)
        dist2 = (g[..., ay, ax] - g[..., by, bx]).square().sum(1, keepdim=True)
        feat = (-dist2.sqrt() / bandwidth).exp() if kernel == "laplacian" else (-dist2 / bandwidth**2).exp()
        wt = feat * math.exp(-(dy * dy + dx * dx - 1) / (2 * spatial_sigma**2))
        degree[..., ay, ax] += wt
        degree[..., by, bx] += wt
        raw.append(wt)
    inv_sqrt = degree.clamp_min(torch.finfo(g.dtype).tiny).rsqrt()
    weights = []
    for (dy, dx), wt in zip(offsets, raw, strict=True):
        (ay, ax), (by, bx) = _slices(h, w, dy, dx)
        weights.append(wt * inv_sqrt[..., ay, ax] * inv_sqrt[..., by, bx])
    return ImageGraph(tuple(weights), offsets, degree, (h, w))


def laplacian_energy(r: torch.Tensor, graph: ImageGraph) -> torch.Tensor:
    """``rᵀ(I − 𝒲)r / ‖r‖²`` per image (``(N,)``, in [0, 2]): low = smooth like the guide."""
    rr = r.square().sum((1, 2, 3))
    quad = rr - (r * graph.matvec(r)).sum((1, 2, 3))
    return quad / rr.clamp_min(torch.finfo(r.dtype).tiny)


@dataclass
class CGInfo:
    """Outcome of one batched CG solve: true relative residual ``‖b − Ax‖/‖b‖`` per image
    (worst channel), the iterations run, and whether ``tol`` was reached."""

    residual: torch.Tensor
    iterations: int
    converged: bool


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-system inner products over the spatial axes, shape ``N×C×1×1``."""
    return cg.system_dot(a, b, systems=2)


class _Operator:
    """``v ↦ L_α v`` with the weights pre-scaled by ``−α/(1 − α)``: one scale and two fused
    multiply-adds per offset, no temporaries beyond the output."""

    def __init__(self, graph: ImageGraph, alpha: float) -> None:
        self.inv = 1.0 / (1.0 - alpha)
        self.offsets = graph.offsets
        self.weights = tuple(w * (-alpha * self.inv) for w in graph.weights)

    def __call__(self, v: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        out = torch.mul(v, self.inv, out=out) if out is not None else v * self.inv
        return _add_stencil(out, v, self.offsets, self.weights)


@torch.no_grad()
def conjugate_gradient(
    graph: ImageGraph,
    b: torch.Tensor,
    alpha: float,
    *,
    iters: int = 50,
    tol: float = 0.0,
    preconditioner: Preconditioner = "none",
) -> tuple[torch.Tensor, CGInfo]:
    """Solve ``L_α x = b`` by CG (:func:`percviz.attacks.solvers.cg.conjugate_gradient`), one system
    per image and channel, from ``x = 0``.

    Runs ``iters`` iterations, stopping earlier once every system has relative residual ≤ ``tol``
    (``tol = 0``: always ``iters``, no host synchronisation inside the loop). The reported residual
    is the true one, ``‖b − L_α x‖/‖b‖``; in float32 it bottoms out near 1e-4 at α = 0.997
    (condition number (1 + α)/(1 − α) ≈ 666), use float64 below that.
    """
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1); got {alpha}.")
    if preconditioner not in ("none", "jacobi"):
        raise ValueError(f"preconditioner must be 'none' or 'jacobi'; got {preconditioner!r}.")
    op = _Operator(graph, alpha)
    tiny = torch.finfo(b.dtype).tiny
    bnorm = _dot(b, b).sqrt()
    # Jacobi: diag(L_α) = 1/(1 − α) everywhere because 𝒲 has a zero diagonal.
    scale = 1.0 - alpha
    x, done = cg.conjugate_gradient(
        op,
        b,
        iters,
        systems=2,
        tol=tol,
        precondition=(lambda r: r * scale) if preconditioner == "jacobi" else None,
    )
    true_r = b - op(x)
    rel = (_dot(true_r, true_r).sqrt() / bnorm.clamp_min(tiny)).flatten(1).amax(1)
    rel = torch.where(bnorm.flatten(1).amax(1) > 0, rel, torch.zeros_like(rel))
    return x, CGInfo(rel, done, tol > 0 and bool((rel <= tol).all()))


class _Solve(torch.autograd.Function):
    """``x = L_α^{-1} b`` with the backward ``∇b = L_α^{-1} ∇x`` (``L_α`` is symmetric)."""

    @staticmethod
    def forward(ctx, b: torch.Tensor, smoother: LaplacianSmoother) -> torch.Tensor:
        ctx.smoother = smoother
        return smoother.solve(b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.smoother.solve(grad.contiguous()), None


class LaplacianSmoother:
    """``s_α`` and ``ŝ_α`` guided by one batch of images, with CG statistics.

    Example::

        sm = LaplacianSmoother(x_o, alpha=0.997)       # graph of x_o, s_α(1) precomputed
        r = sm.normalized(z)                           # ŝ_α(z), differentiable in z
        sm.max_residual, sm.last.iterations            # how well the solves converged

    Args:
        guide: ``N×3×H×W`` images whose smoothness the perturbation follows.
        alpha: smoothing strength in [0, 1) (0 = identity; 0.997 in the paper on ImageNet).
        iters, tol, preconditioner: CG settings (see :func:`conjugate_gradient`).
        neighbours, kernel, bandwidth: graph settings (see :func:`image_graph`).
    """

    def __init__(
        self,
        guide: torch.Tensor,
        alpha: float = 0.997,
        *,
        iters: int = 50,
        tol: float = 0.0,
        preconditioner: Preconditioner = "none",
        neighbours: int = 4,
        kernel: Kernel = "laplacian",
        bandwidth: float = 0.05,
    ) -> None:
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"alpha must lie in [0, 1); got {alpha}.")
        self.graph = image_graph(guide, neighbours=neighbours, kernel=kernel, bandwidth=bandwidth)
        self.alpha = float(alpha)
        self.iters = int(iters)
        self.tol = float(tol)
        self.preconditioner: Preconditioner = preconditioner
        self.solves = 0
        self._worst: torch.Tensor | None = None  # kept on the device: no host sync per solve
        self.last: CGInfo | None = None
        ones = torch.ones_like(self.graph.degree)
        self.scale = self.solve(ones)  # s_α(1), N×1×H×W, positive

    def solve(self, b: torch.Tensor) -> torch.Tensor:
        """``L_α^{-1} b`` by CG (no autograd), recording the residual."""
        graph = self.graph if b.dtype == self.graph.degree.dtype else self.graph.to(b.dtype)
        x, info = conjugate_gradient(
            graph, b, self.alpha, iters=self.iters, tol=self.tol, preconditioner=self.preconditioner
        )
        self.solves += 1
        self.last = info
        worst = info.residual.max()
        self._worst = worst if self._worst is None else torch.maximum(self._worst, worst)
        return x

    @property
    def max_residual(self) -> float:
        """Worst relative residual over every solve so far (including ``s_α(1)``)."""
        return float(self._worst) if self._worst is not None else 0.0

    def smooth(self, z: torch.Tensor) -> torch.Tensor:
        """``s_α(z) = L_α^{-1} z`` (Zhang et al. 2020 eq. 8), differentiable in ``z``."""
        return _Solve.apply(z, self)

    def normalized(self, z: torch.Tensor) -> torch.Tensor:
        """``ŝ_α(z) = diag(s_α(1))^{-1} s_α(z)`` (Zhang et al. 2020 eq. 9), differentiable in ``z``."""
        return self.smooth(z) / self.scale.to(z.dtype)

    def normalized_transpose(self, g: torch.Tensor) -> torch.Tensor:
        """``J_ŝᵀ g = L_α^{-1} diag(s_α(1))^{-1} g`` — the gradient map of Zhang et al. 2020 eq. 19."""
        with torch.no_grad():
            return self.solve(g / self.scale.to(g.dtype))

    def stats(self) -> dict[str, float | int]:
        """CG diagnostics for an attack's ``info``."""
        return {
            "cg_iterations": self.last.iterations if self.last else 0,
            "cg_residual_max": self.max_residual,
            "cg_residual_last": float(self.last.residual.max()) if self.last else 0.0,
            "cg_solves": self.solves,
        }
