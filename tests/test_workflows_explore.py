"""The Explore job (percviz.workflows.explore): the first screen from what the attack already
computed, every view computed once on first use, and the same result.json as the CLI."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from percviz.analysis import views as views_module
from percviz.analysis.views import VIEW_PARTS, compute_views
from percviz.attacks import run_attack
from percviz.images import load_sample
from percviz.models import Classifier, predict
from percviz.pipeline import measure, prepare, run_recipe
from percviz.recipes import ImageRef, Recipe, environment_versions
from percviz.workflows.explore import ExploreResult, explore_work, recipe_key


def _forwards(model: torch.nn.Module) -> tuple[list[int], torch.utils.hooks.RemovableHandle]:
    calls: list[int] = []
    handle = model.register_forward_hook(lambda _m, inputs, _out: calls.append(inputs[0].shape[0]))
    return calls, handle


def _explore(model: Classifier, attack: str, params: dict, size: int) -> ExploreResult:
    loaded = load_sample("chelsea")
    recipe = Recipe(
        model=model.spec.id, image=ImageRef(sample="chelsea"), attack=attack, params=params, seed=1
    )
    return explore_work(model, prepare(loaded, size), "chelsea", recipe)(lambda _record: True)


def test_measure_takes_the_predictions_from_the_attack_and_forwards_only_the_png_recheck(
    tiny: Classifier, photos32: torch.Tensor
) -> None:
    result = run_attack("pgd", tiny, photos32[:1], {"eps": 0.03, "steps": 3}, seed=0)
    assert result.logits is not None and result.adv_logits is not None and result.ssim_maps is not None
    calls, handle = _forwards(tiny)
    try:
        m = measure(tiny, result)
    finally:
        handle.remove()
    assert calls == [1]  # the 8-bit PNG re-check, nothing else
    for shown, fresh in (
        (m.before, predict(tiny, result.x, 5)[0]),
        (m.after, predict(tiny, result.x_adv, 5)[0]),
    ):
        assert [p.index for p in shown] == [p.index for p in fresh]
        assert [p.probability for p in shown] == pytest.approx([p.probability for p in fresh], abs=1e-6)
    assert result.constraints["ssim"][0] == pytest.approx(m.metrics["ssim"], abs=1e-7)


def test_the_first_screen_leaves_every_view_for_later_and_each_equals_the_cli_maps(tiny: Classifier) -> None:
    entry = _explore(tiny, "fgsm", {"eps": 0.03}, 32)
    lazy = entry.views
    assert [lazy.ready(p) for p in VIEW_PARTS] == [True, False, False, False, False]  # SSIM from measure
    assert entry.report["success"] == bool(entry.result.success[0])
    assert lazy.perturbation.shape == (32, 32, 3)
    full = compute_views(entry.result, tiny, 0)
    for name in ("diff", "noise", "region", "magnified_original", "magnified_adversarial", "perturbation"):
        assert np.array_equal(getattr(lazy, name), getattr(full, name)), name
    assert np.allclose(lazy.ssim_map, full.ssim_map, atol=1e-7)
    assert np.array_equal(lazy.cams.raw_adversarial, full.cams.raw_adversarial)
    assert lazy.magnification_scale == full.magnification_scale
    assert all(lazy.ready(p) for p in VIEW_PARTS)
    assert lazy.explain["scores"] == full.explain["scores"]


def test_a_view_part_is_computed_once_when_two_readers_ask_at_the_same_time(
    tiny: Classifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = _explore(tiny, "fgsm", {"eps": 0.03}, 32)
    real = views_module.explain_pair
    calls: list[float] = []

    def slow_explain_pair(*args: object, **kwargs: object) -> object:
        calls.append(time.perf_counter())
        time.sleep(0.2)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(views_module, "explain_pair", slow_explain_pair)
    seen: list[object] = []
    readers = [threading.Thread(target=lambda: seen.append(entry.views.cams)) for _ in range(3)]
    for t in readers:
        t.start()
    diff_start = time.perf_counter()
    diff = entry.views.diff  # another part is not held up by the GradCAM++ being computed
    diff_s = time.perf_counter() - diff_start
    for t in readers:
        t.join()
    assert len(calls) == 1
    assert seen[0] is seen[1] is seen[2]
    assert diff.shape == (32, 32, 3) and diff_s < 0.2


def test_the_app_writes_the_same_result_json_as_the_cli(lite0: Classifier) -> None:
    entry = _explore(lite0, "fgsm", {"eps": 0.004}, 224)
    outcome = run_recipe(entry.recipe)
    from percviz.pipeline import build_report

    cli = build_report(outcome)
    app = dict(entry.report)
    assert app.pop("wall_time_s") > 0 and cli.pop("wall_time_s") > 0
    assert app == cli
    assert recipe_key(entry.recipe) == entry.key


def test_package_versions_are_read_once_and_handed_out_as_copies() -> None:
    first = environment_versions()
    first["torch"] = "changed"
    assert environment_versions()["torch"] != "changed"
    assert environment_versions() == environment_versions()
