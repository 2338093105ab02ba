"""Per-step cost of the perceptual attacks (Laidlaw et al. 2021) against the forward+backward floor.

EfficientNet-Lite0, self-bounded, the three bundled photos at 224×224 in one batch, CPU (or the
best device). The floor is one forward+backward of the classifier on the batch (what one PGD
step costs). Each attack is timed at two step counts and the difference divided by the extra
steps, which cancels the fixed costs (φ(x), LPA's final projection, the template's classify).

    python benchmarks/perceptual.py [--device cpu] [--repeats 2]

Measured once (2026-11-22, shared 2-core CPU, load ≈ 3; K = 5, n = 10):
floor 385 ms; ppgd 5.22 s/step = 13.6× (18 forwards + 6 backwards per step);
lpa 0.69 s/step = 1.80×; fast_lpa 0.65 s/step = 1.70× (2 forwards + 1 backward per step).
"""

from __future__ import annotations

import argparse
import time

import torch

from percviz.attacks import run_attack
from percviz.attacks.losses import margin
from percviz.attacks.perceptual_passes import fast_lpa_passes, lpa_passes, paper_passes, ppgd_passes
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.models import load_model

PHOTOS = ("chelsea", "coffee", "rocket")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def floor_seconds(model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    """Fastest of ``repeats`` forward+backward passes of the classifier on the batch."""
    times = []
    for _ in range(repeats + 1):
        xg = x.detach().requires_grad_(True)
        start = time.perf_counter()
        torch.autograd.grad(margin(model(xg), labels).sum(), xg)
        _sync(x.device)
        times.append(time.perf_counter() - start)
    return min(times[1:])


def attack_seconds(attack: str, model, x, labels, params: dict, repeats: int) -> float:
    """Fastest of ``repeats`` runs (the minimum is the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_attack(attack, model, x, params, labels=labels)
        _sync(x.device)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = load_model("efficientnet_lite0", args.device)
    x = torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, 224)) for n in PHOTOS]).to(model.device)
    with torch.no_grad():
        labels = model(x).argmax(1)
    run_attack("fast_lpa", model, x, {"steps": 1}, labels=labels)  # warm-up (fx tracing)
    floor = floor_seconds(model, x, labels, args.repeats)
    k, n = 5, 10
    cases = {
        # attack: (params for t1 steps, params for t2 steps, steps per unit of "steps", passes/step)
        "ppgd": ({"steps": 1}, {"steps": 3}, 1, (ppgd_passes(3, k, n)[0] - ppgd_passes(1, k, n)[0]) / 2,
                 (ppgd_passes(3, k, n)[1] - ppgd_passes(1, k, n)[1]) / 2),
        "lpa": ({"steps": 1, "search_steps": 1}, {"steps": 3, "search_steps": 1}, 1,
                (lpa_passes(3, 1, n)[0] - lpa_passes(1, 1, n)[0]) / 2,
                (lpa_passes(3, 1, n)[1] - lpa_passes(1, 1, n)[1]) / 2),
        "fast_lpa": ({"steps": 1}, {"steps": 3}, 1, (fast_lpa_passes(3)[0] - fast_lpa_passes(1)[0]) / 2,
                     (fast_lpa_passes(3)[1] - fast_lpa_passes(1)[1]) / 2),
    }  # fmt: skip
    print(f"device {model.device}, batch {tuple(x.shape)}, threads {torch.get_num_threads()}")
    print(f"floor (1 forward + 1 backward): {floor * 1000:.0f} ms")
    print(
        f"{'attack':9s} {'s/step':>8s} {'× floor':>8s} {'fwd/step':>9s} {'bwd/step':>9s} {'App. A fwd/bwd':>15s}"
    )
    for attack, (p1, p2, _, fwd, bwd) in cases.items():
        t1 = attack_seconds(attack, model, x, labels, p1, args.repeats)
        t2 = attack_seconds(attack, model, x, labels, p2, args.repeats)
        per_step = (t2 - t1) / (p2["steps"] - p1["steps"])
        one, three = (paper_passes(attack, t, cg_iters=k, search_steps=1, bisect_iters=n) for t in (1, 3))
        printed = f"{(three[0] - one[0]) / 2:.0f}/{(three[1] - one[1]) / 2:.0f}"
        print(f"{attack:9s} {per_step:8.2f} {per_step / floor:8.2f} {fwd:9.0f} {bwd:9.0f} {printed:>15s}")


if __name__ == "__main__":
    main()
