"""Colour for the views: maps to [0, 1] on a stated scale, matplotlib colour maps, heat-map
overlays, and the Pochimireddy et al. 2021 §V-B region comparison colours (colour-blind safe).
Plain NumPy, ``H×W`` or ``H×W×3`` float32 in [0, 1].
"""

from __future__ import annotations

import numpy as np

# Pochimireddy et al. 2021 §V-B comparison colours (RGB in [0, 1]): colour-blind-safe (Okabe–Ito).
REGION_COLOURS: dict[str, tuple[float, float, float]] = {
    "tp": (0.0, 0.62, 0.45),  # perturbed inside the CAM region (bluish green)
    "fp": (0.84, 0.37, 0.0),  # perturbed outside it (vermillion)
    "fn": (0.34, 0.71, 0.91),  # CAM region left untouched (sky blue)
    "tn": (0.93, 0.93, 0.93),  # neither (light grey)
}
REGION_LABELS = {
    "tp": "TP: perturbed, inside CAM region",
    "fp": "FP: perturbed, outside CAM region",
    "fn": "FN: CAM region, not perturbed",
    "tn": "TN: neither",
}


def to_unit(values: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Map values to [0, 1] with a given (low, high) — the shared display scale."""
    low, high = scale
    span = high - low if high > low else 1.0
    return np.clip((np.asarray(values, dtype=np.float64) - low) / span, 0.0, 1.0).astype(np.float32)


def colourize(values: np.ndarray, cmap: str = "jet", vmin: float = 0.0, vmax: float = 1.0) -> np.ndarray:
    """An ``H×W`` map through a matplotlib colour map → ``H×W×3`` RGB in [0, 1]."""
    from matplotlib import colormaps

    unit = to_unit(values, (vmin, vmax))
    return colormaps[cmap](unit)[..., :3].astype(np.float32)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """A heat map (``H×W`` in [0, 1]) blended over an ``H×W×3`` image: ``(1−α)·image + α·colour``."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1]; got {alpha}.")
    img = np.asarray(image, dtype=np.float32)
    if img.shape[:2] != np.shape(heat):
        raise ValueError(f"Image {img.shape} and heat map {np.shape(heat)} differ in size.")
    return ((1.0 - alpha) * img + alpha * colourize(heat, cmap)).astype(np.float32)


def region_colours(noise: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Pochimireddy et al. 2021 §V-B comparison as colours: TP, FP, FN, TN (see :data:`REGION_COLOURS`)."""
    n, g = np.asarray(noise, dtype=bool), np.asarray(region, dtype=bool)
    if n.shape != g.shape:
        raise ValueError(f"Noise mask {n.shape} and CAM region {g.shape} differ in shape.")
    out = np.empty((*n.shape, 3), dtype=np.float32)
    for key, mask in (("tp", n & g), ("fp", n & ~g), ("fn", ~n & g), ("tn", ~n & ~g)):
        out[mask] = REGION_COLOURS[key]
    return out
