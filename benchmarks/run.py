"""One-run performance table, on this machine, ending with ONE JSON line of all figures.

    python benchmarks/run.py            # full run (CPU: a few minutes; must stay under 10)
    python benchmarks/run.py --quick    # smaller images / fewer repetitions (used by the tests)

Every figure is a ratio or a time measured in this one run, so machines can be compared only
through the ratios. Rows:

- floor: one forward+backward pass of EfficientNet-Lite0 (gradient w.r.t. the input, frozen weights);
- each registered gradient attack: wall time per iteration over the floor, and wall time over the
  model time of the passes it counted (``1.00`` = no overhead beyond the network);
- ours vs torchattacks PGD (same model, image, ε, step, steps): time ratio and both success rates;
  ours returns success and re-measured metrics (one more forward, SSIM), so the ratio is also given
  against torchattacks followed by the forward that tells its success;
- PGAP: the exact solver (``percviz.attacks.solvers.qcqp.solve_exact``) vs cvxpy at 64×64 (speed-up, objective
  agreement) and one exact solve at 224×224;
- one smoothing solve (50 CG iterations, α = 0.997) and one magnification, both at the run's size
  (``benchmarks/smoothing.py``'s ``measure``);
- the marginal cost per iteration of ``benchmarks/attacks.py``'s iterative attacks (full run only);
- a cached app rerun (Streamlit ``AppTest`` of the Explore page; full run only);
- peak RSS of one 224×224 attack, measured in a fresh subprocess with ``resource.getrusage``
  (tracemalloc does not see torch's CPU allocations);
- on CUDA only: images/s at batch 64, 224×224, for FPGAP, PGD and LPA;
- ours vs the peer libraries (``benchmarks/peers.py``: torchattacks, adv_lib, perceptual-advex;
  install the last two with ``bash benchmarks/install_peers.sh``) at each ``--batches`` size, with
  both sides' success and distortion; ``--quick`` runs only the PGD row on 32×32 images;
- the interactivity budget (``benchmarks/interactive.py``): Run → finished Explore result with
  every view, for FGSM, FPGAP and PGD-10 at 224×224 (full run only);
- ``targets``: each ratio of the performance targets beside its limit and whether it is met.

Measuring functions of the other benchmark scripts are imported, not copied; a row that fails is
reported as ``null`` or an ``error`` with the reason, never guessed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import interactive, peers  # noqa: E402
from benchmarks.attacks import ITERATIVE, floor_pass, per_iteration  # noqa: E402
from benchmarks.smoothing import measure as measure_smoothing  # noqa: E402
from percviz.attacks import registry, run_attack  # noqa: E402
from percviz.attacks.solvers import qcqp  # noqa: E402
from percviz.images import fit_to_model, load_sample, to_tensor  # noqa: E402
from percviz.models import load_model  # noqa: E402

NOTES: dict[str, str] = {}


def best_time(fn: Callable[[], Any], reps: int, warmup: int = 1) -> float:
    """Minimum over ``reps`` timed calls after ``warmup`` calls (the least disturbed measurement)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def photos(size: int, n: int = 1) -> torch.Tensor:
    names = ("chelsea", "coffee", "rocket", "astronaut", "motorcycle", "china", "flower")
    return torch.cat(
        [to_tensor(fit_to_model(load_sample(names[i % len(names)]).pixels, size)) for i in range(n)]
    )


# --------------------------------------------------------------------------- floor and attacks


def floor_times(model: torch.nn.Module, x: torch.Tensor, reps: int) -> tuple[float, float]:
    """(forward+backward to the input, forward only) seconds for batch ``x``."""

    def fwd_bwd() -> None:
        xg = x.detach().requires_grad_(True)
        torch.autograd.grad(model(xg).sum(), xg)

    def fwd() -> None:
        with torch.no_grad():
            model(x)

    return best_time(fwd_bwd, reps), best_time(fwd, reps)


BENCH_PARAMS: dict[str, dict[str, Any]] = {
    "cw_l2": {"search_steps": 1},
    "scw_l2": {"search_steps": 1},
    "deepfool": {"overshoot": 0.02},
    "subset": {"subsets": 10},
}


def attack_rows(
    model: torch.nn.Module, x: torch.Tensor, steps: int, reps: int, only: set[str] | None = None
) -> list[dict[str, Any]]:
    """Each attack against a floor re-measured right before it (other load on the machine drifts)."""
    rows = []
    for attack_id, spec in registry().items():
        if only is not None and attack_id not in only:
            continue
        params: dict[str, Any] = dict(BENCH_PARAMS.get(attack_id, {}))
        if "steps" in spec.param_names():
            params["steps"] = steps
        try:
            fb, fo = floor_times(model, x, reps)
            wall, res = time_attack(model, x, attack_id, params, reps)
        except Exception as exc:  # report, do not hide
            rows.append({"attack": attack_id, "error": f"{type(exc).__name__}: {exc}"})
            continue
        iters = max(1, res.backward_passes)
        model_time = res.backward_passes * fb + max(0, res.forward_passes - res.backward_passes) * fo
        rows.append(
            {
                "attack": attack_id,
                "forward": res.forward_passes,
                "backward": res.backward_passes,
                "wall_s": wall,
                "per_iter_over_floor": wall / iters / fb,
                "over_pass_time": wall / model_time if model_time > 0 else float("nan"),
            }
        )
    return rows


def time_attack(
    model: torch.nn.Module, x: torch.Tensor, attack_id: str, params: dict[str, Any], reps: int
) -> tuple[float, Any]:
    results: list[Any] = []
    wall = best_time(lambda: results.append(run_attack(attack_id, model, x, params, seed=0)), reps)
    return wall, results[-1]


def torchattacks_pgd(model: torch.nn.Module, x: torch.Tensor, steps: int, reps: int) -> dict[str, Any]:
    try:
        import torchattacks
    except ImportError:
        return {"error": "torchattacks is not installed"}
    eps, alpha = 4 / 255, 1 / 255
    with torch.no_grad():
        labels = model(x).argmax(1)
    ours_params = {"eps": eps, "step_size": alpha, "steps": steps}
    ours_res: list[Any] = []
    t_ours = best_time(lambda: ours_res.append(run_attack("pgd", model, x, ours_params, labels=labels)), reps)
    ta = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)
    adv: list[torch.Tensor] = []
    t_ta = best_time(lambda: adv.append(ta(x, labels)), reps)

    def ta_and_success() -> None:
        adv_x = ta(x, labels)
        with torch.no_grad():
            model(adv_x).argmax(1)

    t_ta_checked = best_time(ta_and_success, reps)
    with torch.no_grad():
        ta_success = float((model(adv[-1]).argmax(1) != labels).float().mean())
    model.train(False)  # torchattacks may toggle modes; ours refuses train() anyway
    return {
        "ours_s": t_ours,
        "torchattacks_s": t_ta,
        "torchattacks_with_success_check_s": t_ta_checked,
        "ratio_ours_over_torchattacks": t_ours / t_ta,
        "ratio_ours_over_torchattacks_checked": t_ours / t_ta_checked,
        "ours_success": ours_res[-1].success_rate,
        "torchattacks_success": ta_success,
    }


# --------------------------------------------------------------------------- PGAP, smoothing, magnification


def pgap_solvers(size: int, big: int) -> dict[str, Any]:
    out: dict[str, Any] = {"size": size}
    x = photos(size)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    xf, gf = x.flatten(1).double(), g.flatten(1).double()
    eps1, eps2 = 0.01, 0.05
    exact = qcqp.solve_exact(xf, gf, eps1, eps2)
    t_exact = best_time(lambda: qcqp.solve_exact(xf, gf, eps1, eps2), reps=3)
    ok, why = qcqp.cvxpy_available()
    if ok:
        start = time.perf_counter()
        ref = qcqp.solve_cvxpy(xf, gf, eps1, eps2)
        t_cvx = time.perf_counter() - start
        out.update(
            cvxpy_s=t_cvx,
            exact_s=t_exact,
            speedup=t_cvx / t_exact,
            objective_rel_diff=float(
                ((exact.objective - ref.objective).abs() / ref.objective.abs().clamp_min(1e-300)).max()
            ),
            cvxpy_status=ref.status,
        )
    else:
        out.update(exact_s=t_exact, error=why)
    xb = photos(big)
    gb = torch.randn(xb.shape, generator=torch.Generator().manual_seed(1))
    xbf, gbf = xb.flatten(1).double(), gb.flatten(1).double()
    out["exact_224_s" if big == 224 else f"exact_{big}_s"] = best_time(
        lambda: qcqp.solve_exact(xbf, gbf, eps1, eps2), reps=3
    )
    return out


def marginal_iterations(model: torch.nn.Module, x: torch.Tensor, reps: int) -> dict[str, float]:
    """``benchmarks/attacks.py``'s marginal cost per iteration ((T_hi − T_lo) runs) over the floor."""
    with torch.no_grad():
        y = model(x).argmax(1)
    floor = best_time(lambda: floor_pass(model, x, y), reps)
    out = {}
    for name in ITERATIVE:
        try:
            out[name] = min(per_iteration(model, x, y, name) for _ in range(reps)) / floor
        except Exception as exc:
            NOTES[f"marginal_{name}"] = f"{type(exc).__name__}: {exc}"
    return out


def smoothing_solve(size: int, reps: int) -> dict[str, Any]:
    """``benchmarks/smoothing.py``'s ``measure``, plus the float32 solve as ``seconds``/``relative_residual``."""
    res = measure_smoothing(size=size, reps=reps)
    res["seconds"] = res["cg50_f32_ms"] / 1000
    res["relative_residual"] = res["cg50_f32_residual"]
    res["source"] = "benchmarks/smoothing.py measure()"
    return res


# --------------------------------------------------------------------------- app, memory, GPU


def app_rerun() -> dict[str, Any]:
    from streamlit.testing.v1 import AppTest

    target = ROOT / "pages" / "1_Explore.py"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        at = AppTest.from_file(str(target), default_timeout=300)
        start = time.perf_counter()
        at.run()
        first = time.perf_counter() - start
        if at.exception:
            return {"page": target.name, "error": f"first run raised: {at.exception[0].value}"}
        reruns = []
        for _ in range(3):
            start = time.perf_counter()
            at.run()
            reruns.append(time.perf_counter() - start)
        return {"page": target.name, "first_s": first, "rerun_s": statistics.median(reruns)}
    finally:
        os.chdir(cwd)


MEMORY_SCRIPT = """
import resource, sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads({threads})
from percviz.attacks import run_attack
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.models import load_model
model = load_model("efficientnet_lite0", "cpu")
x = to_tensor(fit_to_model(load_sample("chelsea").pixels, 224))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
run_attack({attack!r}, model, x, {params!r})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(base / 1024, peak / 1024)
"""


def peak_memory(attack: str, params: dict[str, Any]) -> dict[str, Any]:
    code = MEMORY_SCRIPT.format(root=str(ROOT), threads=torch.get_num_threads(), attack=attack, params=params)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    base, peak = (float(v) for v in proc.stdout.split()[-2:])
    return {"attack": attack, "params": params, "rss_after_model_mb": base, "peak_rss_mb": peak}


def cuda_throughput(batch: int = 64) -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {}
    model = load_model("efficientnet_lite0", "cuda")
    x = photos(224, batch).cuda()
    out: dict[str, Any] = {}
    settings = {"fpgap": {}, "pgd": {"steps": 10}, "lpa": {}}
    for attack_id, params in settings.items():
        run_attack(attack_id, model, x[:2], params)
        torch.cuda.synchronize()
        start = time.perf_counter()
        run_attack(attack_id, model, x, params)
        torch.cuda.synchronize()
        out[attack_id] = batch / (time.perf_counter() - start)
    return out


# --------------------------------------------------------------------------- targets


def _target(value: float | None, limit: float, **beside: Any) -> dict[str, Any]:
    met = None if value is None else value <= limit
    return {"value": value, "limit": limit, "met": met, **beside}


def targets(
    peer_summary: dict[str, Any], marginal: dict[str, float], budget: dict[str, Any]
) -> dict[str, Any]:
    """Each performance target's measured ratio (or seconds), its limit, and the quality beside it."""
    out: dict[str, Any] = {}
    for key, row in peer_summary.items():
        if "error" in row:
            out[key] = {"error": row["error"]}
            continue
        name, batch = key.split("@")
        quality = row.get("quality")
        if name == "pgd_linf":
            out[f"pgd_end_to_end_over_fastest_peer@{batch}"] = _target(
                row.get("percviz_over_fastest_peer"), 0.9, fastest=row.get("fastest_peer"), quality=quality
            )
        elif name in ("ppgd", "lpa", "fast_lpa"):
            out[f"{name}_per_step_over_perceptual_advex@{batch}"] = _target(
                row.get("percviz_over_perceptual_advex"), 0.8, quality=quality
            )
        elif name == "cw_l2":
            q = quality or {}
            ours_l2 = (q.get("percviz") or {}).get("median_l2")
            their_l2 = (q.get("adv_lib") or {}).get("median_l2")
            entry = _target(row.get("percviz_over_adv_lib"), 1.0, quality=quality)
            if ours_l2 is not None and their_l2 is not None and entry["met"] is not None:
                entry["met"] = entry["met"] and ours_l2 <= their_l2
            out[f"cw_l2_over_adv_lib@{batch}"] = entry
    for name, ratio in (marginal or {}).items():
        out[f"marginal_per_iter_over_floor:{name}"] = _target(ratio, 1.05)
    fpgap = budget.get("fpgap") if isinstance(budget, dict) else None
    if isinstance(fpgap, dict):
        out["interactive_fpgap_s"] = _target(fpgap.get("total_s"), 1.5)
    return out


# --------------------------------------------------------------------------- main


def _strict(value: Any) -> Any:
    """Strict JSON: NaN → null, ±inf → "inf", tensors/other objects → str."""
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_strict(v) for v in value]
    if isinstance(value, float):
        return None if value != value else ("inf" if value == float("inf") else value)
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


_LAST = [time.perf_counter()]
SECTIONS: dict[str, float] = {}


def section(name: str) -> None:
    """Record how long the previous section took (goes to stderr and into the JSON line)."""
    now = time.perf_counter()
    SECTIONS[name] = now - _LAST[0]
    _LAST[0] = now
    print(f"[{name}: {SECTIONS[name]:.1f} s]", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller images and fewer repetitions")
    ap.add_argument(
        "--attacks", default=None, help="comma-separated attack ids (default: every registered one)"
    )
    ap.add_argument("--batches", default="1,8", help="batch sizes of the peer rows (full run)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the peer rows")
    ap.add_argument("--no-peers", action="store_true", help="skip the comparison with peer libraries")
    ap.add_argument("--slow", action="store_true", help="also run the all-class DeepFool peers")
    args = ap.parse_args(argv)
    quick = args.quick
    size = 32 if quick else 224
    reps = 1 if quick else 3
    steps = 2 if quick else 10
    started = time.perf_counter()
    _LAST[0] = started
    model = load_model("efficientnet_lite0", "cpu")
    x = photos(size)
    fb, fo = floor_times(model, x, reps)
    print(
        f"# percviz benchmark — {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {'quick' if quick else 'full'} ({size}×{size})"
    )
    print(f"floor: forward+backward {fb * 1e3:.1f} ms, forward {fo * 1e3:.1f} ms (batch 1, {size}×{size})")

    only = set(args.attacks.split(",")) if args.attacks else None
    rows = attack_rows(model, x, steps, reps, only)
    print(
        f"\n{'attack':12s} {'fwd':>5s} {'bwd':>5s} {'wall s':>8s} {'s/iter ÷ floor':>15s} {'wall ÷ pass time':>17s}"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['attack']:12s} error: {r['error']}")
        else:
            print(
                f"{r['attack']:12s} {r['forward']:5d} {r['backward']:5d} {r['wall_s']:8.3f} "
                f"{r['per_iter_over_floor']:15.2f} {r['over_pass_time']:17.2f}"
            )

    section("attacks")
    marginal = {} if quick else marginal_iterations(model, x, reps)
    if marginal:
        print("\nmarginal cost per iteration ÷ floor (benchmarks/attacks.py):")
        for name, ratio in marginal.items():
            print(f"  {name:28s} {ratio:6.2f}")
    ta = torchattacks_pgd(model, x, steps, reps=max(2, reps // 2))
    section("torchattacks")
    print("\nPGD vs torchattacks:", json.dumps(ta))
    pgap = pgap_solvers(16 if quick else 64, 32 if quick else 224)
    print("PGAP exact vs cvxpy:", json.dumps(pgap))
    section("pgap")
    smooth = smoothing_solve(size, reps)
    print("smoothing (50 CG, α=0.997):", json.dumps(smooth))
    mag = {"size": size, "seconds": smooth["magnify_ms"] / 1000}
    section("smoothing+magnification")
    print("magnification:", json.dumps(mag))
    app = {"skipped": "--quick"} if quick else app_rerun()
    print("app rerun:", json.dumps(app))
    section("app")
    mem = peak_memory("pgd", {"steps": 2 if quick else 10})
    section("memory")
    print("peak memory (one 224×224 attack, subprocess):", json.dumps(mem))
    gpu = cuda_throughput()
    if gpu:
        print("CUDA images/s (batch 64, 224×224):", json.dumps(gpu))
    peer_rows: dict[str, Any] = {}
    if not args.no_peers:
        peer_rows = peers.run_rows(
            size,
            [1] if quick else [int(b) for b in args.batches.split(",")],
            1 if quick else args.rounds,
            args.slow,
            steps,
            {"pgd_linf"} if quick else None,
        )
    peer_summary = peers.summary(peer_rows)
    section("peers")
    budget = {"skipped": "--quick"} if quick else interactive.measure(list(interactive.SETTINGS), reps)
    print("interactivity (Run → every Explore view):", json.dumps(budget))
    section("interactive")

    ok_rows = [r for r in rows if "error" not in r]
    figures = {
        "quick": quick,
        "size": size,
        "threads": torch.get_num_threads(),
        "floor_fwd_bwd_s": fb,
        "floor_fwd_s": fo,
        "attack_ratio_per_iter": {r["attack"]: r["per_iter_over_floor"] for r in ok_rows},
        "attack_ratio_per_pass": {r["attack"]: r["over_pass_time"] for r in ok_rows},
        "attack_marginal_per_iter": marginal or None,
        "attack_errors": {r["attack"]: r["error"] for r in rows if "error" in r},
        "pgd_vs_torchattacks": ta,
        "pgap": pgap,
        "smoothing_solve_s": smooth.get("seconds"),
        "smoothing": smooth,
        "magnification_s": mag.get("seconds"),
        "app_rerun_s": app.get("rerun_s"),
        "app": app,
        "peak_rss_mb_one_attack": mem.get("peak_rss_mb"),
        "memory": mem,
        "cuda_images_per_s": gpu or None,
        "cuda": "measured" if gpu else "unmeasured: no CUDA device in this run",
        "peers": peer_summary,
        "interactive": budget,
        "targets": targets(peer_summary, marginal, budget),
        "notes": NOTES,
        "section_s": SECTIONS,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "total_s": time.perf_counter() - started,
    }
    print(json.dumps(_strict(figures)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
