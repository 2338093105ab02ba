"""Dataset numbers of evaluation rows: fooling rate, P_suc, D̄, P(D) (Zhang et al. 2020 §5.1), envelopes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from percviz.evaluation.store import EXPLAIN_COLUMNS


def operating_characteristic(
    distortion: Sequence[float], success: Sequence[bool], n_total: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Zhang et al. 2020 eq. 21: ``P(D) = |{x ∈ X_suc : D(x) ≤ D}| / N`` as a step function.

    Returns the sorted distortions of the successes (with a leading 0) and ``P`` at each of them;
    ``P`` rises from ``P(0)`` (0 unless some success has no distortion) to ``P_suc`` at ``D_max``.
    """
    d = np.asarray(distortion, dtype=np.float64)
    s = np.asarray(success, dtype=bool)
    n = len(d) if n_total is None else n_total
    if n == 0:
        return np.zeros(1), np.zeros(1)
    ds = np.sort(d[s])
    grid = np.concatenate([[0.0], ds])
    p = np.searchsorted(ds, grid, side="right") / n
    return grid, p


def summarize_rows(rows: Sequence[Mapping[str, Any]], distortion: str = "l2") -> dict[str, Any]:
    """Dataset numbers of one group of rows (one attack with one parameter set, or an envelope).

    - ``fooling_rate`` (Pochimireddy et al. 2021 §V-A): fraction with prediction after ≠ before, over all images;
    - ``success_rate``: the attack's own success (reaches the target when targeted);
    - ``p_suc`` (Zhang et al. 2020 eq. 20): successes over ``X``, the correctly classified images when true
      labels are known (else all images, the model's prediction taken as the truth);
    - ``mean_distortion``: ``D̄``, the mean ``distortion`` column (L2, [0,1] units) over successes
      in ``X`` — conditional on success (``None`` when nothing succeeded);
    - ``operating_characteristic``: ``{"d": [...], "p": [...]}`` of eq. 21 over ``X``;
    - means of SSIM, PSNR (finite values; ``psnr_infinite`` counts unchanged images), LPIPS-self,
      explainability scores (defined values only), passes, wall time; fraction of successes whose
      8-bit PNG is still adversarial.
    """
    n = len(rows)
    if n == 0:
        return {"images": 0}
    in_x = [r for r in rows if r.get("true_label") is None or r["label_before"] == r["true_label"]]
    suc_x = [bool(r["success"]) for r in in_x]
    d_x = [float(r[distortion]) for r in in_x]
    successes = [r for r in rows if r["success"]]
    grid, p = operating_characteristic(d_x, suc_x)
    psnrs = [float(r["psnr"]) for r in rows]
    finite_psnr = [v for v in psnrs if math.isfinite(v)]
    out: dict[str, Any] = {
        "images": n,
        "correctly_classified": len(in_x),
        "fooling_rate": _mean(bool(r["fooled"]) for r in rows),
        "success_rate": _mean(bool(r["success"]) for r in rows),
        "within_bound_rate": _mean(bool(r.get("within_bound", True)) for r in rows),
        # targeted runs: images already of the target class (counted as reached, left unchanged)
        "already_target": sum(bool(r.get("already_target")) for r in rows),
        "p_suc": _mean(suc_x),
        "mean_distortion": _mean(d for d, s in zip(d_x, suc_x, strict=True) if s),
        "distortion": distortion,
        "operating_characteristic": {"d": grid.tolist(), "p": p.tolist()},
        "mean_ssim": _mean(float(r["ssim"]) for r in rows),
        "mean_psnr": _mean(finite_psnr),
        "psnr_infinite": len(psnrs) - len(finite_psnr),
        "mean_lpips_self": _mean_defined(r.get("lpips_self") for r in rows),  # null for models without φ
        "mean_l2": _mean(float(r["l2"]) for r in rows),
        "mean_linf": _mean(float(r["linf"]) for r in rows),
        "png_still_adversarial": _mean(bool(r["png_still_adversarial"]) for r in successes),
        "mean_passes": _mean(float(r["passes"]) for r in rows),
        "mean_wall_time_s": _mean(float(r["wall_time_s"]) for r in rows),
    }
    for col in EXPLAIN_COLUMNS:
        values = [float(r[col]) for r in rows if r.get(col) is not None]
        if any(col in r for r in rows):
            out[f"mean_{col}"] = _mean(values)
            out[f"{col}_defined"] = len(values)
    return out


def summarize(rows: Sequence[Mapping[str, Any]], distortion: str = "l2") -> list[dict[str, Any]]:
    """One summary per (attack, parameters) group, in first-seen order, plus its identity."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["attack"], r["params_key"]), []).append(r)
    return [
        {"attack": a, "params": json.loads(k), **summarize_rows(g, distortion)}
        for (a, k), g in groups.items()
    ]


def envelope(rows: Sequence[Mapping[str, Any]], distortion: str = "l2") -> list[dict[str, Any]]:
    """Zhang et al. 2020 §5.1 protocol for distortion-targeting attacks run at several budgets.

    Per attack: an image counts as a success if any run succeeded on it, with the least distortion
    over its successful runs; then the usual statistics. Only attacks with more than one run appear.
    """
    by_attack: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for r in rows:
        by_attack.setdefault(r["attack"], {}).setdefault(r["image"], []).append(r)
    out = []
    for attack, per_image in by_attack.items():
        if len({r["params_key"] for rs in per_image.values() for r in rs}) < 2:
            continue
        merged = []
        for rs in per_image.values():
            wins = [r for r in rs if r["success"]]
            best = (
                min(wins, key=lambda r: float(r[distortion]))
                if wins
                else max(rs, key=lambda r: float(r["ssim"]))
            )
            merged.append(best)
        out.append(
            {
                "attack": attack,
                "runs": len({r["params_key"] for r in rows if r["attack"] == attack}),
                **summarize_rows(merged, distortion),
            }
        )
    return out


def _mean(values: Iterable[float | bool]) -> float | None:
    vals = [float(v) for v in values]
    return float(np.mean(vals)) if vals else None


def _mean_defined(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are defined (not None, not NaN); None when there are none."""
    return _mean(v for v in values if v is not None and not math.isnan(float(v)))
