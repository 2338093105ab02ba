"""Adversarial magnification (Zhang et al. 2020 Appendix 1, eq. 22).

``mag(x) = (x − μ(x)) / (β σ(x) + (1 − β) σ_Ω(x))`` for one image, no reference:

- ``μ(x)``: bilateral filter of ``x``;
- ``σ(x) = sqrt(b_x((x − μ)²))``: the *joint* bilateral filter of ``(x − μ)²`` guided by ``x``;
- ``σ_Ω(x)``: the global standard deviation of each channel; ``β = 0.8``.

Both filters use a Gaussian domain kernel of std 5 pixels and a Gaussian range kernel of std 0.2
([0,1] units) over a ``(2r+1)²`` window, ``r = ceil(2.33 σ_spatial)`` (the authors' code). Each
channel is filtered on its own, but the range weight is one scalar per pixel pair from the
Euclidean colour distance over all channels. At the border the window is truncated to the image
and the weights renormalised. The filter loops over window offsets and accumulates, so memory
stays ``O(N·C·H·W)`` (no ``K²`` unfolded windows).

kornia 0.9's ``joint_bilateral_blur(..., color_distance_type="l2")`` uses the same colour distance
but pads the border (reflect by default) instead of truncating the window, and its GPU/autograd
path unfolds every window; it agrees in the interior (checked in the tests) and is not used.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

BETA = 0.8
SIGMA_SPATIAL = 5.0
SIGMA_RANGE = 0.2


def window_radius(sigma_spatial: float) -> int:
    """``ceil(2.33 σ)``: the window holds the Gaussian down to its 1% tail."""
    return math.ceil(2.33 * sigma_spatial)


def _check(x: torch.Tensor) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"Expected a float N×C×H×W tensor; got {x.dtype} {tuple(x.shape)}.")


def _half_offsets(radius: int) -> list[tuple[int, int]]:
    """One offset of each ± pair in the window, without (0, 0): dy > 0, or dy = 0 and dx > 0."""
    return [(dy, dx) for dy in range(radius + 1) for dx in range(-radius, radius + 1) if dy > 0 or dx > 0]


def _pair_slices(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Regions of the pixels ``p`` and ``p + (dy, dx)`` of every pair inside the image (dy ≥ 0)."""
    a = (slice(0, h - dy), slice(max(0, -dx), w - max(0, dx)))
    b = (slice(dy, h), slice(max(0, dx), w - max(0, -dx)))
    return a, b


def _pair_weights(
    guide: torch.Tensor, sigma_spatial: float, sigma_range: float, radius: int | None
) -> Iterator[tuple[tuple[slice, slice], tuple[slice, slice], torch.Tensor]]:
    """``(region of p, region of p + (dy, dx), w(p, p + (dy, dx)))`` for each half-window offset."""
    r = window_radius(sigma_spatial) if radius is None else int(radius)
    h, w = guide.shape[-2:]
    k_range = -0.5 / sigma_range**2
    k_space = -0.5 / sigma_spatial**2
    for dy, dx in _half_offsets(r):
        if dy >= h or abs(dx) >= w:
            continue
        (ay, ax), (by, bx) = _pair_slices(h, w, dy, dx)
        dist2 = (guide[..., ay, ax] - guide[..., by, bx]).square_().sum(1, keepdim=True)
        yield (ay, ax), (by, bx), dist2.mul_(k_range).add_(k_space * (dy * dy + dx * dx)).exp_()


def _weight_sum(guide: torch.Tensor, pairs: Iterable[tuple[Any, Any, torch.Tensor]]) -> torch.Tensor:
    wsum = torch.ones_like(guide[:, :1])  # the centre pixel, weight 1
    for a, b, weight in pairs:
        wsum[..., a[0], a[1]] += weight
        wsum[..., b[0], b[1]] += weight
    return wsum


def _accumulate(
    values: Sequence[torch.Tensor], pairs: Iterable[tuple[Any, Any, torch.Tensor]]
) -> list[torch.Tensor]:
    acc = [v.clone() for v in values]
    for (ay, ax), (by, bx), weight in pairs:
        for a_, v in zip(acc, values, strict=True):
            a_[..., ay, ax].addcmul_(weight, v[..., by, bx])
            a_[..., by, bx].addcmul_(weight, v[..., ay, ax])
    return acc


def _check_values(values: Sequence[torch.Tensor], guide: torch.Tensor) -> None:
    _check(guide)
    for v in values:
        _check(v)
        if v.shape[0] != guide.shape[0] or v.shape[-2:] != guide.shape[-2:]:
            raise ValueError(f"Value {tuple(v.shape)} does not match the guide {tuple(guide.shape)}.")


def joint_bilateral(
    values: Sequence[torch.Tensor],
    guide: torch.Tensor,
    sigma_spatial: float = SIGMA_SPATIAL,
    sigma_range: float = SIGMA_RANGE,
    radius: int | None = None,
) -> list[torch.Tensor]:
    """Filter each ``N×C×H×W`` tensor in ``values`` with the bilateral weights of ``guide``.

    ``w(p, q) = exp(−‖p − q‖²/(2σ_s²)) · exp(−‖g(p) − g(q)‖²/(2σ_r²))`` with ``‖·‖`` the Euclidean
    distance over the guide's channels; output ``Σ_q w v(q) / Σ_q w`` over the window truncated to
    the image. The weights are symmetric, so each is computed once per pixel pair and accumulated
    into both ends (half the exponentials); the loop over offsets keeps memory at ``O(N·C·H·W)``.
    Measured on one CPU thread this is ~5× less work than unfolding each window row and
    contracting it with einsum. Several tensors share one pass over the offsets.
    """
    _check_values(values, guide)
    wsum = torch.ones_like(guide[:, :1])
    acc = [v.clone() for v in values]
    for (ay, ax), (by, bx), weight in _pair_weights(guide, sigma_spatial, sigma_range, radius):
        wsum[..., ay, ax] += weight
        wsum[..., by, bx] += weight
        for a_, v in zip(acc, values, strict=True):
            a_[..., ay, ax].addcmul_(weight, v[..., by, bx])
            a_[..., by, bx].addcmul_(weight, v[..., ay, ax])
    return [a_ / wsum for a_ in acc]


#: magnify keeps the guide's pair weights for its second filter when they fit in this many bytes
#: (224×224, two images: ~125 MB), instead of recomputing every exponential and weight sum.
WEIGHT_CACHE_BYTES = 256 * 2**20


def _two_filters(
    x: torch.Tensor, sigma_spatial: float, sigma_range: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``μ = b_x(x)`` and ``b_x((x − μ)²)``: both filters guided by ``x``, so they share weights."""
    r = window_radius(sigma_spatial)
    pairs_bytes = (2 * r + 1) ** 2 // 2 * x[:, :1].numel() * x.element_size()
    if pairs_bytes > WEIGHT_CACHE_BYTES:
        (mu,) = joint_bilateral([x], x, sigma_spatial, sigma_range)
        (var,) = joint_bilateral([(x - mu).square()], x, sigma_spatial, sigma_range)
        return mu, var
    pairs = list(_pair_weights(x, sigma_spatial, sigma_range, r))
    wsum = _weight_sum(x, pairs)
    (mu,) = _accumulate([x], pairs)
    mu = mu / wsum
    (var,) = _accumulate([(x - mu).square()], pairs)
    return mu, var / wsum


def magnify(
    x: torch.Tensor,
    beta: float = BETA,
    sigma_spatial: float = SIGMA_SPATIAL,
    sigma_range: float = SIGMA_RANGE,
) -> torch.Tensor:
    """Adversarial magnification of ``x`` (``N×C×H×W`` in [0, 1]) → ``N×C×H×W``, unbounded.

    Zhang et al. 2020 eq. 22 with the documented settings. A constant channel (σ_Ω = 0) maps to 0.
    """
    _check(x)
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1]; got {beta}.")
    with torch.no_grad():
        mu, var = _two_filters(x, sigma_spatial, sigma_range)
        centred = x - mu
        sigma = var.clamp_min(0.0).sqrt()
        sigma_global = x.flatten(2).std(dim=2, unbiased=False)[..., None, None]
        denom = beta * sigma + (1.0 - beta) * sigma_global
        # A constant channel (σ_Ω = 0) has nothing to magnify; its σ is only rounding noise.
        keep = (sigma_global > 0) & (denom > 0)
        return torch.where(keep, centred / denom.clamp_min(torch.finfo(x.dtype).tiny), 0.0)


def shared_scale(images: Sequence[torch.Tensor]) -> tuple[float, float]:
    """One ``(low, high)`` over several magnified images, so they are compared on one scale."""
    if not images:
        raise ValueError("shared_scale needs at least one image.")
    low = min(float(m.min()) for m in images)
    high = max(float(m.max()) for m in images)
    return low, high
