"""Regression attacks (Balda, Behboodi, Mathar, §III–IV, §VI-B): how exact, and how strong.

    python benchmarks/regression.py [--photos chelsea,coffee,rocket] [--train]

On the bundled autoencoder, for the given photos (one batch), prints one JSON line with:

- ``top_vector``: quadratic-ℓ2's direction against ``v_max``. At 32×32 the reference is the
  explicit Jacobian's top right singular vector (SVD); at 128×128 (the model's size) a Lanczos run
  to residual 1e-9. ``|cos|`` per photo for Lanczos and power iteration at the default iteration
  budget, the passes and seconds, and ``σ₂/σ₁`` at 32×32 (why power iteration is slow).
- ``fig4``: output MSE of quadratic-ℓp, linear-ℓp-10 and random-ℓp at the Fig. 4 ε grid (p = 2, ∞),
  as ratios to random noise and quadratic / linear-10, and the realised ‖η‖_p / ε of each.
- ``l1_rule``: quadratic-ℓ1 at ε = 1 with the box-aware rule against the paper's (eq. 14): the
  linearised objective ‖J_k‖·room_k and the output MSE.
- ``subset_score``: linear-pixel-100 (ε = 1) ranked by the box-aware gain against Σ|∇L| (eq. 22).
- ``linf_signs``: at 16×16 (exact eq. 19 needs M − 1 ≤ 1000 blocks), the default block-greedy quadratic-ℓ∞ against exact eq. 19 (one
  coordinate per block): sign agreement and the quadratic objective ‖Jη‖².
- ``train_s`` (with ``--train``): training the autoencoder from scratch (not from the cache).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def photos(names: list[str], size: int) -> torch.Tensor:
    from percviz.images import fit_to_model, load_sample, to_tensor

    return torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, size)) for n in names])


def explicit_top_vectors(model: torch.nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[float]]:
    """Per image: the explicit Jacobian's top right singular vector and σ₂/σ₁ (float64)."""
    vectors, ratios = [], []
    for image in x:
        jac = torch.func.jacrev(lambda z: model(z[None])[0].flatten())(image)
        _, s, vh = torch.linalg.svd(jac.reshape(-1, image.numel()).double())
        vectors.append(vh[0])
        ratios.append(float(s[1] / s[0]))
    return vectors, ratios


def solve(
    model: torch.nn.Module, x: torch.Tensor, solver: str, steps: int, tol: float | None = None
) -> dict[str, Any]:
    from percviz.attacks.base import AttackContext
    from percviz.attacks.solvers.jacobian import (
        POWER_TOL,
        Jacobian,
        lanczos_top_singular_vector,
        top_singular_vector,
    )

    ctx = AttackContext(model, 0, None)
    fn = lanczos_top_singular_vector if solver == "lanczos" else top_singular_vector
    start = time.perf_counter()
    v, info = fn(ctx, Jacobian(ctx, x), steps, tol or POWER_TOL)
    return {
        "v": v.flatten(1).double(),
        "seconds": round(time.perf_counter() - start, 3),
        "iterations": info["iterations"],
        "passes": ctx.forward_passes + ctx.backward_passes,
        "converged": info["converged"],
        "residual": [float(f"{r:.2e}") for r in info["residual"]],
    }


def cosines(v: torch.Tensor, refs: list[torch.Tensor]) -> list[float]:
    return [round(abs(float(v[i] @ refs[i])), 4) for i in range(len(refs))]


def top_vector(model: torch.nn.Module, names: list[str], steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"default_iterations": steps}
    x32 = photos(names, 32)
    refs, ratios = explicit_top_vectors(model, x32)
    out["32"] = {"sigma2_over_sigma1": [round(r, 4) for r in ratios], "reference": "explicit Jacobian SVD"}
    for solver in ("lanczos", "power"):
        run = solve(model, x32, solver, steps)
        out["32"][solver] = {"cos": cosines(run.pop("v"), refs), **run}
    x128 = photos(names, 128)
    ref = solve(model, x128, "lanczos", 300, tol=1e-9)
    refs128 = list(ref["v"])
    out["128"] = {"reference": f"Lanczos to residual 1e-9 ({ref['iterations']} iterations)"}
    for solver in ("lanczos", "power"):
        run = solve(model, x128, solver, steps)
        out["128"][solver] = {"cos": cosines(run.pop("v"), refs128), **run}
    return out


def run(model: torch.nn.Module, x: torch.Tensor, attack: str, params: dict[str, Any]) -> Any:
    from percviz.attacks.regression_run import run_regression_attack

    return run_regression_attack(attack, model, x, params, seed=0)


def mean_of(result: Any, key: str) -> float:
    return float(sum(m[key] for m in result.metrics) / len(result.metrics))


def fig4(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    from percviz.regression_eval import DEFAULT_EPS

    out: dict[str, Any] = {}
    for p in ("2", "inf"):
        rows = []
        for eps in DEFAULT_EPS[p]:
            mse, used = {}, {}
            for name, attack, extra in (
                ("quadratic", "reg_quad", {}),
                ("linear-10", "reg_linear", {"steps": 10}),
                ("random", "reg_random", {}),
            ):
                result = run(model, x, attack, {"p": p, "eps": eps, **extra})
                mse[name] = mean_of(result, "output_mse")
                used[name] = round(mean_of(result, "eta_norm_ratio"), 4)
            rows.append(
                {
                    "eps": round(eps, 5),
                    "quadratic_over_random": round(mse["quadratic"] / mse["random"], 1),
                    "linear10_over_random": round(mse["linear-10"] / mse["random"], 1),
                    "quadratic_over_linear10": round(mse["quadratic"] / mse["linear-10"], 2),
                    "realised_over_eps": used,
                }
            )
        out[p] = rows
    return out


def l1_rule(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rule in ("box", "paper"):
        result = run(model, x, "reg_quad", {"p": "1", "eps": 1.0, "l1_rule": rule})
        out[rule] = {
            "linearised_objective": [round(v, 4) for v in result.info["linearised_objective"]],
            "output_mse": [float(f"{m['output_mse']:.3e}") for m in result.metrics],
        }
    out["paper_below_box"] = [
        round(1 - p / b, 3)
        for p, b in zip(out["paper"]["linearised_objective"], out["box"]["linearised_objective"], strict=True)
    ]
    return out


def subset_score(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Any]:
    mse = {
        rule: mean_of(
            run(model, x, "reg_subset", {"eps": 1.0, "subsets": 100, "subset_score": rule}), "output_mse"
        )
        for rule in ("box", "abs")
    }
    return {"output_mse": mse, "box_over_abs": round(mse["box"] / mse["abs"], 2)}


#: Exact eq. 19 needs M − 1 sign blocks, and the schema allows at most 1000: 16×16×3 = 768 values.
LINF_SIZE = 16


def linf_signs(model: torch.nn.Module, names: list[str], steps: int) -> dict[str, Any]:
    x = photos(names, LINF_SIZE)
    m = x[0].numel()
    eps = 1 / 255
    default = run(model, x, "reg_quad", {"p": "inf", "eps": eps, "steps": steps, "candidates": m})
    exact = run(model, x, "reg_quad", {"p": "inf", "eps": eps, "steps": m - 1, "candidates": m})

    def signs(result: Any) -> torch.Tensor:
        return (result.x_adv - result.x).flatten(1).sign()

    agree = [
        round(max(float((a == b).double().mean()), float((a == -b).double().mean())), 3)
        for a, b in zip(signs(default), signs(exact), strict=True)
    ]
    return {
        "size": LINF_SIZE,
        "blocks": steps,
        "sign_agreement": agree,
        "output_mse_default_over_exact": round(
            mean_of(default, "output_mse") / mean_of(exact, "output_mse"), 3
        ),
        "exact_seconds": round(exact.wall_time, 1),
        "default_seconds": round(default.wall_time, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--photos", default="chelsea,coffee,rocket")
    parser.add_argument("--train", action="store_true", help="also time training the autoencoder anew")
    args = parser.parse_args(argv)
    from percviz.attacks import get_attack
    from percviz.models.regression import load_regressor, train_autoencoder

    torch.manual_seed(0)
    names = [n.strip() for n in args.photos.split(",") if n.strip()]
    model = load_regressor("autoencoder", "cpu")
    steps = int(get_attack("reg_quad").param("steps").default)  # type: ignore[call-overload]
    x = photos(names, model.input_size)
    report: dict[str, Any] = {"photos": names, "model": "autoencoder", "threads": torch.get_num_threads()}
    report["top_vector"] = top_vector(model, names, steps)
    report["fig4"] = fig4(model, x)
    report["l1_rule"] = l1_rule(model, x)
    report["subset_score"] = subset_score(model, x)
    report["linf_signs"] = linf_signs(model, names, steps)
    if args.train:
        start = time.perf_counter()
        train_autoencoder()
        report["train_s"] = round(time.perf_counter() - start, 1)
    print(
        json.dumps(
            report, ensure_ascii=False, allow_nan=False, default=lambda v: None if math.isnan(v) else v
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
