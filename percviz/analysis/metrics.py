"""Image-quality and distance metrics; all per image, all on ``N×3×H×W`` in [0, 1].

- :func:`ssim` — standard SSIM (Gaussian window 11, σ = 1.5, ``data_range = 1``), differentiable,
  with per-channel maps; equals ``skimage.metrics.structural_similarity(gaussian_weights=True,
  sigma=1.5, use_sample_covariance=False, data_range=1.0, channel_axis=-1)``.
- :func:`s1_s2` — the global moment-form S1 / S2 of Pochimireddy et al. 2021 §III-A (eq. 3, 6).
- :func:`psnr`, :func:`perturbation_norms` — PSNR and L0/L2/L∞ in [0,1] and 0–255 units.
- :func:`perceptual_distance` — Laidlaw et al. 2021 §3 distance ``|φ(x1) − φ(x2)|₂`` (no learned weights).
- :class:`CalibratedLPIPS` — the ``lpips`` package (learned weights) when its backbone is here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from percviz.errors import ModelUnavailableError, UnknownIdError
from percviz.models.zoo import hub_checkpoint_dir

C1 = 0.01**2
C2 = 0.03**2
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * 1.5 + 0.5): scikit-image's truncate = 3.5 → an 11-tap window


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(
            f"Expected two N×C×H×W tensors of one shape; got {tuple(x.shape)} and {tuple(y.shape)}."
        )


@cache
def _gauss_taps(sigma: float, radius: int) -> tuple[float, ...]:
    w = [math.exp(-0.5 * (i / sigma) ** 2) for i in range(-radius, radius + 1)]
    total = sum(w)
    return tuple(v / total for v in w)


def _symmetric_pad(x: torch.Tensor, r: int) -> torch.Tensor:
    """Pad H and W by ``r`` with edge-including reflection (scipy ``mode='reflect'``)."""
    x = torch.cat([x[..., :r].flip(-1), x, x[..., -r:].flip(-1)], dim=-1)
    return torch.cat([x[..., :r, :].flip(-2), x, x[..., -r:, :].flip(-2)], dim=-2)


def gaussian_blur(x: torch.Tensor, sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> torch.Tensor:
    """Separable Gaussian filter per channel, scipy-style reflect borders; same shape out."""
    c = x.shape[1]
    taps = torch.tensor(_gauss_taps(sigma, radius), dtype=x.dtype, device=x.device)
    kx = taps.view(1, 1, 1, -1).expand(c, 1, 1, -1)
    ky = taps.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    padded = _symmetric_pad(x, radius)
    return F.conv2d(F.conv2d(padded, kx, groups=c), ky, groups=c)


def ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-channel SSIM map ``N×C×H×W`` (values in [−1, 1]); differentiable in both inputs."""
    _check_pair(x, y)
    if min(x.shape[-2:]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least 11×11 pixels; got {tuple(x.shape[-2:])}.")
    shift = x.detach().mean(dim=(-2, -1), keepdim=True)  # centring limits float32 cancellation
    xs, ys = x - shift, y - shift
    stacked = gaussian_blur(torch.cat([xs, ys, xs * xs, ys * ys, xs * ys], dim=1))
    mx, my, mxx, myy, mxy = stacked.chunk(5, dim=1)
    vx, vy, cov = mxx - mx * mx, myy - my * my, mxy - mx * my
    mx, my = mx + shift, my + shift
    num = (2 * mx * my + C1) * (2 * cov + C2)
    den = (mx * mx + my * my + C1) * (vx + vy + C2)
    return num / den


MapT = TypeVar("MapT", torch.Tensor, np.ndarray)


def ssim_interior(smap: MapT, *, channels_last: bool = False) -> MapT:
    """The part of an SSIM map that mean SSIM averages: ``SSIM_RADIUS`` pixels off every border,
    as scikit-image does. ``smap`` is ``…×H×W`` (a tensor from :func:`ssim_map`) or, with
    ``channels_last``, an ``H×W×C`` array (the views' maps)."""
    r = SSIM_RADIUS
    return smap[r:-r, r:-r] if channels_last else smap[..., r:-r, r:-r]


def ssim(x: torch.Tensor, y: torch.Tensor, per_channel: bool = False) -> torch.Tensor:
    """Mean SSIM per image ``(N,)`` (or ``(N, C)``) over :func:`ssim_interior`."""
    m = ssim_interior(ssim_map(x, y)).mean(dim=(-2, -1))
    return m if per_channel else m.mean(dim=1)


Scope = Literal["image", "channel"]


def _flatten_scope(x: torch.Tensor, scope: Scope) -> torch.Tensor:
    if scope == "image":
        return x.flatten(1).unsqueeze(1)
    if scope == "channel":
        return x.flatten(2)
    raise ValueError(f"scope must be 'image' or 'channel'; got {scope!r}.")


def s1_s2(x: torch.Tensor, y: torch.Tensor, scope: Scope = "image") -> tuple[torch.Tensor, torch.Tensor]:
    """Global luminance term S1 and structure/contrast term S2 in moment form (Pochimireddy et al. 2021 eq. 3, 6).

    ``S1 = (2 μx μy + c1)/(μx² + μy² + c1)``, ``S2 = (2 X·Y/N + c2)/(|X|²/N + |Y|²/N + c2)`` with
    ``X = x − μx`` over the scope. Returns ``(N,)`` tensors for scope ``image`` or ``(N, 3)`` for
    ``channel``. Computed in float64 for accuracy.
    """
    _check_pair(x, y)
    a, b = _flatten_scope(x.double(), scope), _flatten_scope(y.double(), scope)
    mx, my = a.mean(-1), b.mean(-1)
    xa, yb = a - mx.unsqueeze(-1), b - my.unsqueeze(-1)
    s1 = (2 * mx * my + C1) / (mx**2 + my**2 + C1)
    s2 = (2 * (xa * yb).mean(-1) + C2) / ((xa**2).mean(-1) + (yb**2).mean(-1) + C2)
    if scope == "image":
        return s1[:, 0], s2[:, 0]
    return s1, s2


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image ``(N,)`` for ``data_range = 1``; ``inf`` for identical images."""
    _check_pair(x, y)
    mse = (x.double() - y.double()).pow(2).flatten(1).mean(1)
    return torch.where(mse > 0, -10.0 * torch.log10(mse.clamp_min(1e-300)), torch.full_like(mse, math.inf))


def perturbation_norms(x: torch.Tensor, y: torch.Tensor, tol: float = 0.0) -> dict[str, torch.Tensor]:
    """L0 / L2 / L∞ of ``y − x`` per image, in [0,1] units and in 0–255 units.

    ``l0`` counts changed pixel *locations* (any channel differs by more than ``tol``);
    ``l0_values`` counts changed channel values.
    """
    _check_pair(x, y)
    d = (y.double() - x.double()).flatten(2)
    changed = d.abs() > tol
    l2 = d.flatten(1).norm(dim=1)
    linf = d.flatten(1).abs().amax(dim=1)
    return {
        "l0": changed.any(dim=1).sum(dim=1).double(),
        "l0_values": changed.flatten(1).sum(dim=1).double(),
        "l2": l2,
        "linf": linf,
        "l2_255": l2 * 255.0,
        "linf_255": linf * 255.0,
    }


def l0_shares(metrics: dict[str, Any], height: int, width: int) -> dict[str, float]:
    """The L0 counts of :func:`perturbation_norms` as shares in [0, 1]: ``pixels`` = changed pixel
    locations / (H·W), ``values`` = changed channel values / (3·H·W)."""
    return {
        "pixels": float(metrics["l0"]) / (height * width),
        "values": float(metrics["l0_values"]) / (3 * height * width),
    }


class FeatureNet(Protocol):
    """Anything exposing ``features(x) -> list[N×C×h×w]`` for ``x`` in [0, 1] (a Classifier)."""

    def features(self, x: torch.Tensor) -> list[torch.Tensor]: ...


def perceptual_features(net: FeatureNet, x: torch.Tensor) -> torch.Tensor:
    """φ(x) of Laidlaw et al. 2021 §3: channel-normalised activations / sqrt(h·w), concatenated → ``N×D``."""
    parts = []
    for act in net.features(x):
        unit = act / act.norm(dim=1, keepdim=True).clamp_min(1e-10)
        parts.append(unit.flatten(1) / math.sqrt(act.shape[-2] * act.shape[-1]))
    return torch.cat(parts, dim=1)


def perceptual_distance(net: FeatureNet, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Laidlaw et al. 2021 distance ``d(x1, x2) = |φ(x1) − φ(x2)|₂`` per image ``(N,)`` (uncalibrated)."""
    _check_pair(x1, x2)
    return (perceptual_features(net, x1) - perceptual_features(net, x2)).norm(dim=1)


LPIPS_BACKBONES: dict[str, str] = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def lpips_status(net: str) -> tuple[bool, str]:
    """Whether the calibrated LPIPS backbone ``net`` can be built offline, and what it needs."""
    if net not in LPIPS_BACKBONES:
        raise UnknownIdError(f"Unknown LPIPS network '{net}'; choose one of: {', '.join(LPIPS_BACKBONES)}.")
    path = hub_checkpoint_dir() / LPIPS_BACKBONES[net]
    if path.is_file():
        return True, str(path)
    return False, (
        f"Calibrated LPIPS ({net}) is unavailable: put '{path.name}' in '{path.parent}' "
        "(torchvision downloads it there on a networked machine)."
    )


class CalibratedLPIPS:
    """The ``lpips`` package's calibrated distance (learned linear weights), [0,1] input.

    Construction fails with :class:`ModelUnavailableError` — never a download — when the
    torchvision backbone weights are not in the hub cache.
    """

    def __init__(self, net: str = "alex", device: torch.device | str = "cpu") -> None:
        ok, detail = lpips_status(net)
        if not ok:
            raise ModelUnavailableError(detail)
        import lpips

        self.net_name = net
        self.model = lpips.LPIPS(net=net, verbose=False).to(device).eval().requires_grad_(False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image ``(N,)``."""
        _check_pair(x, y)
        dev = next(self.model.parameters()).device
        return self.model(x.to(dev), y.to(dev), normalize=True).flatten()


MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def compare_images(
    x: torch.Tensor,
    y: torch.Tensor,
    distances: Sequence[tuple[str, MetricFn]] = (),
    *,
    ssim_maps: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """All §5 scalar metrics of ``y`` against ``x``, one dict per image (plain floats).

    ``distances`` adds named perceptual distances (e.g. the perceptual distance of Laidlaw et al. 2021 of a network or a
    calibrated LPIPS), each a function of ``(x, y)`` returning ``(N,)``. ``ssim_maps`` (the
    ``N×C×H×W`` :func:`ssim_map` of ``(x, y)``, when the caller has it) is averaged instead of
    computed again.
    """
    s1, s2 = s1_s2(x, y)
    maps = ssim_maps if ssim_maps is not None else ssim_map(x, y)
    per_channel = ssim_interior(maps).mean(dim=(-2, -1))
    columns: dict[str, torch.Tensor] = {
        "ssim": per_channel.mean(1),
        "ssim_r": per_channel[:, 0],
        "ssim_g": per_channel[:, 1],
        "ssim_b": per_channel[:, 2],
        "s1": s1,
        "s2": s2,
        "psnr": psnr(x, y),
        **perturbation_norms(x, y),
    }
    for name, fn in distances:
        columns[name] = fn(x, y)
    return [{k: float(v[i]) for k, v in columns.items()} for i in range(x.shape[0])]
