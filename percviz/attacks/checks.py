"""Constraint values every attack result reports, measured against the original image, and the
8-bit re-check of an adversarial image."""

from __future__ import annotations

from collections.abc import Callable

import torch

from percviz.analysis.metrics import perturbation_norms, s1_s2, ssim_interior, ssim_map
from percviz.attacks.losses import is_adversarial
from percviz.images import quantise_8bit


@torch.no_grad()
def measure_constraints(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, list[float]]:
    """``linf``, ``l2``, ``l0`` (pixels), ``ssim``, ``s1``, ``s2`` per image, as plain floats."""
    return measure_with_ssim_maps(x, x_adv)[0]


@torch.no_grad()
def measure_with_ssim_maps(
    x: torch.Tensor, x_adv: torch.Tensor
) -> tuple[dict[str, list[float]], torch.Tensor | None]:
    """:func:`measure_constraints` and the per-channel SSIM maps behind ``ssim`` (``N×3×H×W``
    float32 on the CPU, computed in float64; None for images under 11 pixels), so the metrics and
    the views reuse them instead of computing SSIM again."""
    norms = perturbation_norms(x, x_adv)
    s1, s2 = s1_s2(x, x_adv)
    values = {
        "linf": norms["linf"],
        "l2": norms["l2"],
        "l0": norms["l0"],
        "s1": s1,
        "s2": s2,
    }
    maps = None
    if min(x.shape[-2:]) >= 11:
        full = ssim_map(x.double(), x_adv.double())
        values["ssim"] = ssim_interior(full).mean(dim=(-3, -2, -1))
        maps = full.float().cpu()
    return {k: v.double().cpu().tolist() for k, v in values.items()}, maps


@torch.no_grad()
def png_still_adversarial(
    model: Callable[[torch.Tensor], torch.Tensor],
    x_adv: torch.Tensor,
    labels: torch.Tensor,
    target: int | None,
) -> torch.Tensor:
    """``(N,)`` bool on the CPU: is ``x_adv`` still adversarial once rounded to 8 bits, as a PNG
    stores it (:func:`percviz.images.quantise_8bit`)? Untargeted: the prediction is not ``labels``;
    targeted: it is ``target``."""
    return is_adversarial(model(quantise_8bit(x_adv)).cpu(), labels.cpu(), target)
