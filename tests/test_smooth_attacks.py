"""C&W L2, qPGD₂ and sC&W (Zhang et al. 2020 §2.1.3, §4.1.1, §4.2) on the tiny CNN and the real Lite0."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from percviz.analysis.colour import to_unit
from percviz.analysis.magnification import magnify, shared_scale
from percviz.analysis.metrics import gaussian_blur
from percviz.attacks import run_attack
from percviz.attacks.base import AttackContext, get_attack
from percviz.attacks.cw import ClipBox, lagrangian_search, margin_loss
from percviz.attacks.solvers.smoothing import image_graph, laplacian_energy
from percviz.models import Classifier

OUT = Path(__file__).resolve().parents[1] / "test-output"
QUICK = {"steps": 10, "search_steps": 1, "step_size": 0.02, "c": 1.0}


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


def test_margin_loss() -> None:
    z = torch.tensor([[3.0, 1.0, 2.5], [0.0, 2.0, 1.0]])
    y = torch.tensor([0, 0])
    torch.testing.assert_close(margin_loss(z, y, None, 0.0), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(margin_loss(z, y, None, 1.0), torch.tensor([1.5, 0.0]))
    torch.testing.assert_close(margin_loss(z, y, 2, 0.0), torch.tensor([0.5, 1.0]))


def test_schemas() -> None:
    assert get_attack("scw_l2").param("smooth_alpha").display_label() == "α (smoothing)"
    for aid in ("cw_l2", "scw_l2"):
        assert {"c", "search_steps", "steps", "step_size", "kappa", "target"} <= set(
            get_attack(aid).param_names()
        )
    assert {"eps", "step_size", "smooth_alpha", "cg_iters"} <= set(get_attack("qpgd_l2").param_names())


def test_cw_keeps_least_distortion_success(tiny: Classifier, photos32: torch.Tensor) -> None:
    base = {"steps": 20, "step_size": 0.05, "c": 100.0}
    one = run_attack("cw_l2", tiny, photos32, {**base, "search_steps": 1})
    three = run_attack("cw_l2", tiny, photos32, {**base, "search_steps": 3})
    assert bool(three.success.all())
    for res in (one, three):
        fooled = torch.tensor(res.info["fooled_by_search"])
        assert torch.equal(res.success, fooled)
        best = torch.tensor([v if v is not None else 0.0 for v in res.info["best_l2"]])
        torch.testing.assert_close(_l2(res.x_adv, res.x)[fooled], best[fooled], rtol=0, atol=1e-5)
        assert res.backward_passes == 20 * res.params["search_steps"]
    # Round 1 is the same in both runs, so more rounds can only lower the kept distortion, and
    # the binary search moved c (×10 after a failure, halfway down after a success).
    for b1, b3 in zip(one.info["best_l2"], three.info["best_l2"], strict=True):
        assert b1 is None or b3 <= b1 + 1e-7
    assert all(c != 100.0 for c in three.info["c_final"])


def test_cw_clip_parametrisation(tiny: Classifier, photos32: torch.Tensor) -> None:
    ctx = AttackContext(tiny, seed=0, progress=None)
    labels = tiny(photos32).argmax(1)
    params = {**get_attack("cw_l2").defaults(), "steps": 20, "search_steps": 3, "step_size": 0.05, "c": 100.0}
    x_adv, info = lagrangian_search(ctx, photos32, labels, params, ClipBox(photos32))
    assert all(info["fooled_by_search"])
    assert bool((tiny(x_adv).argmax(1) != labels).all())
    assert float(x_adv.min()) >= 0.0 and float(x_adv.max()) <= 1.0


def test_failed_images_are_returned_unchanged(tiny: Classifier, photos32: torch.Tensor) -> None:
    res = run_attack("cw_l2", tiny, photos32, {"steps": 1, "search_steps": 1, "c": 1e-6, "step_size": 1e-4})
    assert not any(res.info["fooled_by_search"])
    assert torch.equal(res.x_adv, res.x) and not bool(res.success.any())


def test_qpgd_bound_and_alpha_zero_is_pgd2(tiny: Classifier, photos32: torch.Tensor) -> None:
    params = {"eps": 0.5, "steps": 5, "step_size": 0.2}
    smooth = run_attack("qpgd_l2", tiny, photos32, params)
    assert bool((_l2(smooth.x_adv, smooth.x) <= 0.5 + 1e-5).all())
    assert smooth.info["cg_iterations"] == 50 and smooth.info["cg_solves"] == 6
    assert "laplacian_energy" in smooth.constraints
    plain = run_attack("qpgd_l2", tiny, photos32, {**params, "smooth_alpha": 0.0})
    reference = run_attack("pgd_l2", tiny, photos32, params)
    torch.testing.assert_close(plain.x_adv, reference.x_adv, rtol=0, atol=1e-6)
    graph = image_graph(photos32)
    assert bool(
        (
            laplacian_energy(smooth.x_adv - smooth.x, graph) < laplacian_energy(plain.x_adv - plain.x, graph)
        ).all()
    )


def test_scw_deterministic_no_mutation_cancel(tiny: Classifier, photos32: torch.Tensor) -> None:
    x = photos32.clone()
    params = {
        "steps": 8,
        "search_steps": 2,
        "step_size": 0.05,
        "smooth_alpha": 0.95,
        "cg_iters": 20,
        "c": 100.0,
    }
    a = run_attack("scw_l2", tiny, x, params, seed=3)
    b = run_attack("scw_l2", tiny, x, params, seed=3)
    assert torch.equal(x, photos32)
    assert torch.equal(a.x_adv, b.x_adv) and a.info == b.info
    assert a.backward_passes == 16 and a.info["cg_solves"] == 1 + 2 * 16
    stopped = run_attack("scw_l2", tiny, x, params, progress=lambda rec: rec["iteration"] < 3)
    assert stopped.cancelled and stopped.backward_passes == 3


@pytest.fixture(scope="module")
def lite0_runs(lite0: Classifier, photos224: torch.Tensor) -> dict[str, object]:
    return {aid: run_attack(aid, lite0, photos224, QUICK) for aid in ("cw_l2", "scw_l2")}


@pytest.mark.slow
def test_cw_and_scw_fool_lite0_and_scw_is_smoother(lite0_runs: dict, photos224: torch.Tensor) -> None:
    cw, scw = lite0_runs["cw_l2"], lite0_runs["scw_l2"]
    assert bool(cw.success.all()) and bool(scw.success.all())
    graph = image_graph(photos224)
    e_cw = laplacian_energy(cw.x_adv - photos224, graph)
    e_scw = laplacian_energy(scw.x_adv - photos224, graph)
    l2_cw, l2_scw = torch.tensor(cw.constraints["l2"]), torch.tensor(scw.constraints["l2"])
    print(f"\nLaplacian energy  cw_l2 {e_cw.tolist()}  scw_l2 {e_scw.tolist()}")
    print(
        f"L2 distortion     cw_l2 {l2_cw.tolist()}  scw_l2 {l2_scw.tolist()}  ratio {(l2_scw / l2_cw).tolist()}"
    )
    print(f"sC&W CG residual after 50 iterations: {scw.info['cg_residual_max']:.4f}")
    assert bool((e_scw < 0.25 * e_cw).all())
    torch.testing.assert_close(
        torch.tensor(scw.constraints["laplacian_energy"]).float(), e_scw, rtol=1e-4, atol=1e-6
    )
    assert scw.info["cg_iterations"] == 50 and 0 < scw.info["cg_residual_max"] < 0.5


def _high_frequency(d: torch.Tensor) -> float:
    """Mean energy of ``d`` minus its Gaussian blur (σ = 1 px): fine structure."""
    return float((d - gaussian_blur(d, sigma=1.0, radius=3)).square().mean())


def _on_one_scale(images: list[torch.Tensor]) -> list[torch.Tensor]:
    """Images on one shared min–max display scale, as the magnification view draws them."""
    scale = shared_scale(images)
    return [torch.from_numpy(to_unit(m.numpy(), scale)) for m in images]


@pytest.mark.slow
def test_magnified_smooth_example_shows_less_structure(
    lite0: Classifier, lite0_runs: dict, photos224: torch.Tensor
) -> None:
    x = photos224[:1]
    x_scw = lite0_runs["scw_l2"].x_adv[:1]
    eps = float(lite0_runs["scw_l2"].constraints["l2"][0])
    pgd = run_attack("pgd_l2", lite0, x, {"eps": eps, "steps": 5, "step_size": eps / 3})
    mags = [magnify(v) for v in (x, x_scw, pgd.x_adv)]
    hf_scw, hf_pgd = _high_frequency(mags[1] - mags[0]), _high_frequency(mags[2] - mags[0])
    print(
        f"\nhigh-frequency energy of mag(x_adv) − mag(x) at L2 = {eps:.3f}: sC&W {hf_scw:.2e}  PGD₂ {hf_pgd:.2e}"
    )
    OUT.mkdir(exist_ok=True)
    diffs = [(mags[1] - mags[0]).abs(), (mags[2] - mags[0]).abs()]
    names = ("magnified_original", "magnified_scw_l2", "magnified_pgd_l2", "magdiff_scw_l2", "magdiff_pgd_l2")
    for name, img in zip(names, [*_on_one_scale(mags), *_on_one_scale(diffs)], strict=True):
        arr = (img[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(OUT / f"{name}.png")
    assert hf_scw < 0.5 * hf_pgd
