"""Projections onto the perceptual ball ``d(x̃', x) ≤ ε`` (Laidlaw et al. 2021 App. A.4, Algorithms 4–5).

Both work for any feature map ``φ`` (``x -> N×D``, Laidlaw et al. 2021 §3) with ``d(a, b) = |φ(a) − φ(b)|₂``,
batched per image, and count every network pass on a ``counter`` (an
:class:`~percviz.attacks.base.AttackContext` or anything with ``forward_passes`` /
``backward_passes``), so attack pass counts stay exact.

- :func:`bisection` — Algorithm 5: bisection on ``α`` along the segment ``x → x̃`` (n steps). Unlike
  the printed algorithm, which returns the *last* midpoint (outside the ball whenever the last test
  failed), it returns the last midpoint that passed, so the result is always inside the ball.
- :func:`newton` — Algorithm 4: generalised Newton–Raphson on ``r(x̃') = d(x̃', x) − ε`` with
  overshoot ``s``; falls back to bisection for images still outside after ``max_iters`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


class PassCounter(Protocol):
    """Where network passes are counted (an AttackContext satisfies this)."""

    forward_passes: int
    backward_passes: int


@dataclass
class Projection:
    """A projected batch and what was measured on it.

    Attributes:
        x: the projected batch (inside the ball for every image).
        distance: ``(N,)`` ``d(x, original)`` of exactly the returned tensor.
        was_outside: ``(N,)`` bool, the input ``x̃`` lay outside the ball.
        iterations: Newton steps taken (bisection: its ``n``, 0 when skipped: nothing outside).
        fallback: ``(N,)`` bool, Newton did not converge and bisection was used instead.
    """

    x: torch.Tensor
    distance: torch.Tensor
    was_outside: torch.Tensor
    iterations: int
    fallback: torch.Tensor


def _bcast(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


@torch.no_grad()
def distance_to(
    phi: FeatureFn, phi_x: torch.Tensor, x_adv: torch.Tensor, counter: PassCounter
) -> torch.Tensor:
    """``d(x_adv, x) = |φ(x_adv) − φ(x)|₂`` per image with ``φ(x)`` given; one counted forward."""
    counter.forward_passes += 1
    return (phi(x_adv) - phi_x).norm(dim=1)


#: Skip a bisection that has nothing to project (every image inside). Off only to test that
#: skipping changes no output.
SKIP_INSIDE = True


@torch.no_grad()
def bisection(
    phi: FeatureFn,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    phi_x: torch.Tensor,
    bound: float,
    iters: int,
    counter: PassCounter,
    distance: torch.Tensor | None = None,
) -> Projection:
    """Laidlaw et al. 2021 App. A.4 Algorithm 5: ``x̃' = x + α*(x̃ − x)`` with ``α*`` found by ``n`` bisections.

    Cost: ``n + 1`` counted forwards (one to measure ``d(x̃, x)`` unless ``distance`` is given, then
    ``n`` midpoints), the paper's count with ``φ(x)`` passed in — or only the measurement when no
    image lies outside the ball (:data:`SKIP_INSIDE`): there is nothing to project, and the result
    is the same tensor, so the count depends on the data (``iterations`` is 0 then). When one image
    lies outside the bisection runs on the whole batch; images already inside keep ``x̃``.
    """
    if distance is None:
        distance = distance_to(phi, phi_x, x_adv, counter)
    outside = distance > bound
    if SKIP_INSIDE and not bool(outside.any()):
        return Projection(x_adv, distance, outside, 0, torch.zeros_like(outside))
    delta = x_adv - x
    lo = torch.zeros_like(distance)
    hi = torch.ones_like(distance)
    best_x = x.clone()
    best_d = torch.zeros_like(distance)
    for _ in range(iters):
        alpha = 0.5 * (lo + hi)
        candidate = x + _bcast(alpha) * delta
        d = distance_to(phi, phi_x, candidate, counter)
        ok = d <= bound
        lo = torch.where(ok, alpha, lo)
        hi = torch.where(ok, hi, alpha)
        best_x = torch.where(_bcast(ok), candidate, best_x)
        best_d = torch.where(ok, d, best_d)
    out_x = torch.where(_bcast(outside), best_x, x_adv)
    out_d = torch.where(outside, best_d, distance)
    return Projection(out_x, out_d, outside, iters, torch.zeros_like(outside))


def newton(
    phi: FeatureFn,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    phi_x: torch.Tensor,
    bound: float,
    overshoot: float,
    counter: PassCounter,
    max_iters: int = 10,
    bisect_iters: int = 10,
) -> Projection:
    """Laidlaw et al. 2021 App. A.4 Algorithm 4: ``x̃'ᵢ₊₁ = x̃'ᵢ − ∇r⁺ (r + s)``, ``r = d(x̃'ᵢ, x) − ε``.

    ``∇r⁺ = ∇r / |∇r|²`` (the pseudoinverse of a row vector). Each test of ``r`` is one counted
    forward; each step one counted backward; iterates are clipped to [0, 1]. Stops when every image
    has ``r ≤ 0``; images still outside after ``max_iters`` steps are projected by
    :func:`bisection` from the original ``x̃`` instead (as the authors' code does), so the result
    is always inside the ball. The pass count depends on the data (the paper: usually 2–3 steps).
    """
    current = x_adv.detach().clone()
    result_d = torch.zeros(x.shape[0], device=x.device, dtype=phi_x.dtype)
    was_outside: torch.Tensor | None = None
    active = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    steps = 0
    while True:
        xg = current.detach().requires_grad_(True)
        with torch.enable_grad():
            d = (phi(xg) - phi_x).norm(dim=1)
        counter.forward_passes += 1
        r = d.detach() - bound
        if was_outside is None:
            was_outside = r > 0
        result_d = torch.where(active, d.detach(), result_d)
        active = active & (r > 0)
        if not bool(active.any()) or steps == max_iters:
            break
        (grad,) = torch.autograd.grad(d.sum(), xg)
        counter.backward_passes += 1
        scale = (r + overshoot) / grad.flatten(1).pow(2).sum(1).clamp_min(1e-30)
        stepped = (current - _bcast(scale) * grad).clamp(0.0, 1.0)
        current = torch.where(_bcast(active), stepped, current).detach()
        steps += 1
    fallback = active
    if bool(fallback.any()):
        proj = bisection(phi, x, x_adv, phi_x, bound, bisect_iters, counter)
        current = torch.where(_bcast(fallback), proj.x, current)
        result_d = torch.where(fallback, proj.distance, result_d)
    return Projection(current, result_d, was_outside, steps, fallback)
