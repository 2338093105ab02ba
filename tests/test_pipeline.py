"""The single-run pipeline (percviz.pipeline): recipe → image → model → attack → report, with each
measured quantity computed once and equal to the metric functions it stands for."""

from __future__ import annotations

import pytest
import torch

from percviz.analysis.metrics import compare_images, ssim_interior
from percviz.attacks import run_attack
from percviz.attacks.checks import png_still_adversarial
from percviz.images import load_sample
from percviz.models import Classifier, predict
from percviz.pipeline import PreparedImage, RunOutcome, build_report, measure, prepare
from percviz.recipes import ImageRef, Recipe


def _outcome(tiny: Classifier, attack: str, params: dict) -> RunOutcome:
    loaded = load_sample("chelsea")
    image = prepare(loaded, 32)
    result = run_attack(attack, tiny, image.tensor(), params, seed=3)
    recipe = Recipe(model="tiny", image=ImageRef(sample="chelsea"), attack=attack, params=params, seed=3)
    return RunOutcome(recipe, tiny, PreparedImage(loaded, image.model_input), result)


def test_measure_equals_the_metric_functions(tiny: Classifier) -> None:
    outcome = _outcome(tiny, "pgd", {"eps": 0.03, "steps": 3})
    result = outcome.result
    m = measure(tiny, result)
    assert [p.index for p in m.before] == [p.index for p in predict(tiny, result.x, 5)[0]]
    assert [p.index for p in m.after] == [p.index for p in predict(tiny, result.x_adv, 5)[0]]
    assert m.metrics == pytest.approx(compare_images(result.x[:1], result.x_adv[:1])[0], rel=1e-6, abs=1e-6)
    # One SSIM map per result: the metrics average the map the views show.
    assert m.metrics["ssim"] == pytest.approx(
        float(ssim_interior(m.ssim_map, channels_last=True).mean()), abs=1e-6
    )
    assert m.png_still_adversarial == bool(png_still_adversarial(tiny, result.x_adv, result.labels, None)[0])


def test_report_judges_bounds_and_reuses_what_was_measured(tiny: Classifier) -> None:
    outcome = _outcome(tiny, "fgsm", {"eps": 0.02})
    m = measure(tiny, outcome.result)
    report = build_report(outcome, measured=m)
    assert report == build_report(outcome)  # measuring again gives the same report
    assert report["metrics"]["linf"] <= 0.02 + 1e-6
    assert report["within_bound"] and report["bounds"][0]["within"]
    assert report["success"] == (report["fooled"] and report["within_bound"])
    assert report["png_still_adversarial"] == m.png_still_adversarial
    assert report["image"]["model_size"] == [32, 32]
    assert report["recipe"]["params"]["eps"] == 0.02


def test_targeted_report_counts_the_target(tiny: Classifier) -> None:
    outcome = _outcome(tiny, "pgd", {"eps": 0.5, "steps": 5, "target": 1})
    report = build_report(outcome)
    reached = int(torch.argmax(tiny(outcome.result.x_adv[:1]))) == 1
    assert report["fooled"] == reached
