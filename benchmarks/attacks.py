"""Attack speed vs the floor, and our PGD vs torchattacks' PGD, in one run on CPU.

The floor of a gradient attack is one forward + one backward of the model per iteration. For each
iterative gradient attack the time per iteration is measured by differencing two runs with
``T_LO`` and ``T_HI`` iterations (which cancels the fixed costs: the final classification and the
template's bookkeeping), interleaved with floor measurements; medians over repeats are reported.

Usage: ``python benchmarks/attacks.py [--repeats 3] [--threads N]``.
Model: EfficientNet-Lite0 at 224×224, batch = the 3 sample photos (chelsea, coffee, rocket).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from percviz.attacks import run_attack
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.models import load_model

PHOTOS = ("chelsea", "coffee", "rocket")
T_LO, T_HI = 2, 7
EPS, ALPHA, PGD_STEPS = 4 / 255, 1 / 255, 10

#: attack id → (parameters, name of its iteration-count parameter)
ITERATIVE: dict[str, tuple[dict, str]] = {
    "pgd": ({"eps": EPS, "step_size": ALPHA}, "steps"),
    "pgd_l2": ({"eps": 1.0, "step_size": 0.25}, "steps"),
    "balda_iter": ({"p": "inf", "eps": EPS}, "steps"),
    "balda_iter (dither)": ({"p": "inf", "eps": EPS, "dither": EPS / 2}, "steps"),
    # a tiny ε keeps every image un-fooled so all rounds run
    "subset": ({"eps": 1e-4, "subset_size": 1}, "subsets"),
}


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def floor_pass(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One forward + backward to the input: the least any gradient attack iteration costs."""
    xg = x.detach().requires_grad_(True)
    loss = F.cross_entropy(model(xg), y, reduction="sum")
    torch.autograd.grad(loss, xg)


def attack_id(name: str) -> str:
    return name.split(" ")[0]


def per_iteration(model, x, y, name: str) -> float:
    params, count = ITERATIVE[name]
    lo = run_attack(attack_id(name), model, x, {**params, count: T_LO}, labels=y).wall_time
    hi = run_attack(attack_id(name), model, x, {**params, count: T_HI}, labels=y).wall_time
    return (hi - lo) / (T_HI - T_LO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchattacks

    model = load_model("efficientnet_lite0", "cpu")
    x = torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, 224)) for n in PHOTOS])
    with torch.no_grad():
        y = model(x).argmax(1)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {tuple(x.shape)}")
    for _ in range(2):  # warm-up
        floor_pass(model, x, y)

    floors: list[float] = []
    iters: dict[str, list[float]] = {name: [] for name in ITERATIVE}
    ours_pgd, theirs_pgd, ours_it, theirs_it = [], [], [], []
    ta_lo = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=T_LO, random_start=False)
    ta_hi = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=T_HI, random_start=False)
    ta = torchattacks.PGD(model, eps=EPS, alpha=ALPHA, steps=PGD_STEPS, random_start=False)
    pgd_params = {"eps": EPS, "step_size": ALPHA, "steps": PGD_STEPS}
    ours_result = theirs_adv = None
    for _ in range(args.repeats):
        floors.append(statistics.median(timed(lambda: floor_pass(model, x, y)) for _ in range(3)))
        for name in ITERATIVE:
            iters[name].append(per_iteration(model, x, y, name))
        # PGD head to head: end to end (theirs + the forward that tells success) and per iteration
        ours_result = run_attack("pgd", model, x, pgd_params, labels=y)
        ours_pgd.append(ours_result.wall_time)  # includes its final classification forward
        start = time.perf_counter()
        theirs_adv = ta(x, y)
        with torch.no_grad():
            model(theirs_adv).argmax(1)
        theirs_pgd.append(time.perf_counter() - start)
        ours_it.append(per_iteration(model, x, y, "pgd"))
        theirs_it.append((timed(lambda: ta_hi(x, y)) - timed(lambda: ta_lo(x, y))) / (T_HI - T_LO))

    floor = statistics.median(floors)
    print(f"\nfloor (1 forward + 1 backward, batch 3): {floor * 1000:.1f} ms  (runs: {_ms(floors)})")
    print(f"\n{'attack':<22}{'ms / iteration':>16}{'× floor':>10}   target ≤ 1.10×")
    for name, values in iters.items():
        t = statistics.median(values)
        print(f"{name:<22}{t * 1000:>16.1f}{t / floor:>10.3f}   runs: {_ms(values)}")

    df = run_attack("deepfool", model, x, {"candidates": 10}, labels=y)
    rows = df.info["gradient_rows"]
    per_row = df.wall_time / rows
    print(
        f"\ndeepfool (L2, 10 candidates): {df.wall_time:.2f} s, iterations {df.info['iterations']}, "
        f"{rows} image-class gradient rows → {per_row * 1000:.1f} ms/row = "
        f"{per_row / (floor / len(x)):.3f}× the per-image floor (torchattacks: 1000 rows per step)"
    )

    assert ours_result is not None and theirs_adv is not None
    with torch.no_grad():
        theirs_success = (model(theirs_adv).argmax(1) != y).float().mean().item()
    ours_t, theirs_t = statistics.median(ours_pgd), statistics.median(theirs_pgd)
    ours_i, theirs_i = statistics.median(ours_it), statistics.median(theirs_it)
    print(f"\nPGD L∞ ε = 4/255, a = 1/255, {PGD_STEPS} steps, no random start, same labels:")
    print(
        f"  end to end: ours {ours_t:.3f} s, torchattacks {theirs_t:.3f} s (+ its success forward)"
        f" → ratio {ours_t / theirs_t:.3f}  (target ≤ 1.0)"
    )
    print(
        f"  per iteration: ours {ours_i * 1000:.1f} ms, torchattacks {theirs_i * 1000:.1f} ms"
        f" → ratio {ours_i / theirs_i:.3f}"
    )
    print(f"  success: ours {ours_result.success_rate:.3f}, torchattacks {theirs_success:.3f}")
    print(f"  max |x_ours − x_torchattacks| = {(ours_result.x_adv - theirs_adv).abs().max().item():.2e}")


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.0f}" for v in values)


if __name__ == "__main__":
    main()
