"""Interactivity budget: from pressing Run to a finished Explore result with every view ready.

    python benchmarks/interactive.py [--repeats 3] [--attacks fgsm,fpgap,pgd]

Times the Explore page's job body exactly as the app runs it (``ui.results.attack_work``: the
attack through ``run_attack``, then ``finish``: top-5 before/after, the metrics, the 8-bit PNG
check, the report, and ``compute_views``: GradCAM++ of the original and of the adversarial image
for both classes, the SSIM maps, the difference, the noise-vs-CAM comparison and the adversarial
magnification of both images), on EfficientNet-Lite0 at 224×224 on the CPU. FGSM, FPGAP with
its defaults, and PGD with 10 steps; the split into attack and views is reported too. Target:
under 1.5 s for FPGAP. Medians over ``repeats`` interleaved rounds after one warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETTINGS: dict[str, dict[str, Any]] = {"fgsm": {}, "fpgap": {}, "pgd": {"steps": 10}}
TARGET_S = {"fpgap": 1.5}


def explore_job(attack: str, params: dict[str, Any], sample: str = "chelsea") -> dict[str, float]:
    """One Explore run as the app's worker thread does it; seconds for the attack and in total."""
    from percviz.images import fit_to_model, load_sample
    from percviz.models import load_model
    from percviz.recipes import ImageRef, Recipe
    from ui.common import PickedImage
    from ui.results import attack_work

    model = load_model("efficientnet_lite0", "cpu")
    loaded = load_sample(sample)
    picked = PickedImage(
        sample, fit_to_model(loaded.pixels, model.input_size), ImageRef(sample=sample), 1.0, loaded
    )
    recipe = Recipe(model=model.spec.id, image=picked.ref, attack=attack, params=params)
    start = time.perf_counter()
    entry = attack_work(model, picked, recipe, "bench")(lambda _record: True)
    total = time.perf_counter() - start
    if entry.views.get("arrays") is None:
        raise RuntimeError("the views were not computed")
    return {"attack_s": entry.result.wall_time, "total_s": total}


def measure(attacks: list[str], repeats: int) -> dict[str, Any]:
    """Median attack / views / total seconds per attack, interleaved; with the targets met or not."""
    for attack in attacks:
        explore_job(attack, SETTINGS.get(attack, {}))
    runs: dict[str, list[dict[str, float]]] = {a: [] for a in attacks}
    for _ in range(repeats):
        for attack in attacks:
            runs[attack].append(explore_job(attack, SETTINGS.get(attack, {})))
    out: dict[str, Any] = {}
    for attack, values in runs.items():
        total = statistics.median(v["total_s"] for v in values)
        attack_s = statistics.median(v["attack_s"] for v in values)
        out[attack] = {"params": SETTINGS.get(attack, {}), "total_s": total, "attack_s": attack_s,
                       "views_and_report_s": total - attack_s}  # fmt: skip
        if attack in TARGET_S:
            out[attack]["target_s"] = TARGET_S[attack]
            out[attack]["meets_target"] = total < TARGET_S[attack]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--attacks", default=",".join(SETTINGS))
    args = ap.parse_args(argv)
    print(json.dumps({"interactive": measure(args.attacks.split(","), args.repeats)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
