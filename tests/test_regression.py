"""Regression attacks (Balda, Behboodi, Mathar, perturbation analysis §III–IV, §VI-B) on regressors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import explicit_jacobian, tiny_regressor
from torch import nn

from percviz.attacks import get_attack, registry, run_attack
from percviz.attacks.base import AttackContext
from percviz.attacks.regression_run import run_regression_attack
from percviz.attacks.solvers.jacobian import Jacobian, top_singular_vector
from percviz.errors import ModelUnavailableError, ParameterError
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.models.regression import (
    ConvAutoencoder,
    Regressor,
    autoencoder_cache_path,
    load_regressor,
    without_last_linear,
)

REG_IDS = ("reg_quad", "reg_linear", "reg_subset", "reg_random")


@pytest.fixture(scope="module")
def ae() -> Regressor:
    """The offline autoencoder (trained once per machine, cached under ~/.cache/percviz)."""
    return load_regressor("autoencoder", "cpu")


@pytest.fixture(scope="module")
def photos128() -> torch.Tensor:
    return torch.cat(
        [to_tensor(fit_to_model(load_sample(n).pixels, 128)) for n in ("chelsea", "coffee", "rocket")]
    )


def mid_image(size: int = 8, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(1, 3, size, size, generator=g)


def test_registry_entries_declare_regression_task_and_bounds() -> None:
    for attack_id in REG_IDS:
        spec = get_attack(attack_id)
        assert spec.task == "regression" and spec.strength == "eps"
        assert {"eps"} <= set(spec.param_names()) and spec.constraints
        assert all(c.kind == "hard" for c in spec.constraints)
        assert spec.as_dict()["task"] == "regression"
    assert {"p"} <= set(get_attack("reg_quad").param_names()) & set(get_attack("reg_random").param_names())
    assert all(s.task == "classification" for k, s in registry().items() if k not in REG_IDS)


def test_classifiers_and_regressors_are_not_confused(tiny, photos32, ae, photos128) -> None:
    with pytest.raises(ParameterError, match="regression model"):
        run_regression_attack("reg_quad", tiny, photos32)
    with pytest.raises(ParameterError, match="regression models"):
        run_attack("reg_quad", tiny, photos32)
    with pytest.raises(ParameterError, match="classifiers"):
        run_regression_attack("pgd", ae, photos128)


def test_autoencoder_is_cached_outside_the_repo_and_frozen(ae) -> None:
    path = autoencoder_cache_path()
    assert path.is_file() and ".cache" in str(path) and "/work/main" not in str(path)
    assert not any(p.requires_grad for p in ae.parameters()) and not ae.training
    with pytest.raises(RuntimeError, match="frozen"):
        ae.train()


def test_quadratic_l2_beats_gaussian_noise_of_the_same_norm(ae, photos128) -> None:
    """The paper's headline (§VI-B): at the same ‖η‖₂ the top singular vector distorts the
    output far more than Gaussian noise (measured here ≈ 50–120×; asserted ≥ 5× per image)."""
    eps = 1.0
    x = photos128.clone()
    quad = run_regression_attack("reg_quad", ae, x, {"p": "2", "eps": eps, "steps": 30}, seed=0)
    rand = run_regression_attack("reg_random", ae, x, {"p": "2", "eps": eps}, seed=0)
    torch.testing.assert_close(x, photos128)  # input untouched
    for q, r in zip(quad.metrics, rand.metrics, strict=True):
        assert q["output_mse"] >= 5.0 * r["output_mse"]
        assert q["output_psnr"] < r["output_psnr"] - 5.0
    assert max(quad.constraints["lp"]) <= eps and max(rand.constraints["lp"]) <= eps
    assert min(rand.constraints["lp"]) > 0.99 * eps  # the baseline really uses the budget
    assert quad.within_bound.all() and rand.within_bound.all()
    assert quad.info["iterations"] >= 1 and len(quad.info["rayleigh"]) == 3  # Lanczos (the default)
    assert quad.forward_passes >= quad.info["iterations"] and quad.backward_passes >= quad.info["iterations"]


def test_power_iteration_matches_the_explicit_jacobian() -> None:
    model = tiny_regressor()
    x = mid_image()
    jac_full = explicit_jacobian(model, x)
    _, s, vh = torch.linalg.svd(jac_full)
    v_ref = vh[0]
    ctx = AttackContext(model, 0, None)
    v, info = top_singular_vector(ctx, Jacobian(ctx, x), steps=3000, tol=1e-7)
    v = v.flatten().double()
    err = min((v - v_ref).norm(), (v + v_ref).norm())
    assert err < 1e-4
    assert info["converged"] and info["power_iterations"] < 3000
    assert math.isclose(info["rayleigh"][0], float(s[0] ** 2), rel_tol=1e-4)
    assert math.isclose(info["sigma_max"][0], float(s[0]), rel_tol=1e-4)
    assert len(ctx.history) == info["power_iterations"] and "residual" in ctx.history[-1]
    # End to end: the attack's η is ±ε·v_max (no clipping at this ε).
    eps = 0.05
    result = run_regression_attack("reg_quad", model, x, {"p": "2", "eps": eps, "steps": 1000})
    eta = (result.x_adv - x).flatten().double() / eps
    assert min((eta - v_ref).norm(), (eta + v_ref).norm()) < 1e-4 * 10  # float32 rounding of x + η
    assert result.constraints["lp"][0] <= eps


def test_quadratic_l1_picks_the_largest_column() -> None:
    model = tiny_regressor()
    x = mid_image()
    norms = explicit_jacobian(model, x).norm(dim=0)
    eps = 0.2
    result = run_regression_attack("reg_quad", model, x, {"p": "1", "eps": eps, "candidates": 10_000})
    delta = (result.x_adv - x).flatten()
    assert int((delta != 0).sum()) == 1 and int(delta.abs().argmax()) == int(norms.argmax())
    assert result.info["exact"] and result.constraints["lp"][0] <= eps
    approx = run_regression_attack("reg_quad", model, x, {"p": "1", "eps": eps, "candidates": 8})
    assert not approx.info["exact"] and approx.constraints["lp"][0] <= eps


def test_quadratic_linf_greedy_is_eq19_with_one_coordinate_per_block() -> None:
    model = tiny_regressor()
    x = mid_image()
    jac = explicit_jacobian(model, x)
    m = jac.shape[1]
    order = jac.norm(dim=0).argsort(descending=True)
    rho = torch.zeros(m, dtype=torch.float64)
    rho[order[0]] = 1.0
    for k in order[1:]:
        rho[k] = 1.0 if float((jac @ rho) @ jac[:, k]) >= 0 else -1.0
    eps = 0.01
    params = {"p": "inf", "eps": eps, "steps": m - 1, "candidates": m}
    result = run_regression_attack("reg_quad", model, x, params)
    eta = (result.x_adv - x).flatten().double() / eps
    assert result.info["exact_eq19"]
    assert min((eta - rho).abs().max(), (eta + rho).abs().max()) < 1e-3
    assert result.constraints["linf"][0] <= eps


def test_quadratic_linf_beats_bernoulli_noise(ae, photos128) -> None:
    eps = 4 / 255
    quad = run_regression_attack("reg_quad", ae, photos128, {"p": "inf", "eps": eps, "steps": 8})
    rand = run_regression_attack("reg_random", ae, photos128, {"p": "inf", "eps": eps})
    for q, r in zip(quad.metrics, rand.metrics, strict=True):
        assert q["output_mse"] >= 5.0 * r["output_mse"]
    assert max(quad.constraints["lp"]) <= eps and max(rand.constraints["linf"]) <= eps


def test_linear_without_dithering_stalls_and_with_dithering_works(ae, photos128) -> None:
    params = {"p": "2", "eps": 1.0, "steps": 5}
    stalled = run_regression_attack("reg_linear", ae, photos128, {**params, "dither": 0.0})
    assert torch.equal(stalled.x_adv, photos128)  # exactly η = 0
    assert all(m["output_mse"] == 0.0 for m in stalled.metrics)
    assert all(h["grad_norm"] == 0.0 for h in stalled.history)  # ∇L(x, 0) = 0 exactly
    dithered = run_regression_attack("reg_linear", ae, photos128, {**params, "dither": 0.1}, seed=0)
    rand = run_regression_attack("reg_random", ae, photos128, {"p": "2", "eps": 1.0})
    for d, r in zip(dithered.metrics, rand.metrics, strict=True):
        assert d["output_mse"] >= 5.0 * r["output_mse"]
    assert max(dithered.constraints["lp"]) <= 1.0 and dithered.within_bound.all()
    again = run_regression_attack("reg_linear", ae, photos128, {**params, "dither": 0.1}, seed=0)
    assert torch.equal(again.x_adv, dithered.x_adv)  # seeded


def test_linear_linf_bound(ae, photos128) -> None:
    eps = 4 / 255
    result = run_regression_attack(
        "reg_linear", ae, photos128, {"p": "inf", "eps": eps, "steps": 4, "dither": 1 / 255}
    )
    assert max(result.constraints["lp"]) <= eps and max(result.constraints["linf"]) <= eps


def test_pixel_attack_beats_random_pixels(ae, photos128) -> None:
    t = 20
    attack = run_regression_attack("reg_subset", ae, photos128, {"eps": 1.0, "subsets": t})
    rand = run_regression_attack("reg_random", ae, photos128, {"p": "inf", "eps": 1.0, "subsets": t})
    assert max(attack.constraints["l0"]) <= t and max(rand.constraints["l0"]) <= t
    assert min(attack.constraints["l0"]) >= t // 2
    assert attack.within_bound.all() and rand.within_bound.all()
    for a, r in zip(attack.metrics, rand.metrics, strict=True):
        assert a["output_mse"] > 2.0 * r["output_mse"]
    stalled = run_regression_attack("reg_subset", ae, photos128, {"eps": 1.0, "subsets": 3, "dither": 0.0})
    assert torch.equal(stalled.x_adv, photos128)


def test_embedding_of_a_classifier_shares_weights(tiny, photos32) -> None:
    body = without_last_linear(tiny.net)
    feats = body(tiny.normalize(photos32)).flatten(1)
    assert feats.shape == (3, 16)
    assert isinstance(tiny.net.head[2], nn.Linear)  # the original is untouched
    assert body.features[0].weight is tiny.net.features[0].weight


@pytest.mark.slow
def test_embedding_regressor_on_lite0(photos224) -> None:
    model = load_regressor("embedding:efficientnet_lite0", "cpu")
    assert model(photos224[:1]).shape == (1, 1280)
    quad = run_regression_attack("reg_quad", model, photos224[:1], {"p": "2", "eps": 1.0, "steps": 3})
    rand = run_regression_attack("reg_random", model, photos224[:1], {"p": "2", "eps": 1.0})
    assert quad.metrics[0]["output_mse"] > rand.metrics[0]["output_mse"]
    assert quad.constraints["lp"][0] <= 1.0


def test_torchscript_regressor_and_pickle_refused(tmp_path, photos128) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = ConvAutoencoder((8, 4)).eval()
    path = tmp_path / "ae.pt"
    torch.jit.script(net).save(str(path))
    model = load_regressor(f"file:{path}", "cpu")
    result = run_regression_attack("reg_quad", model, photos128[:1], {"p": "2", "eps": 0.5, "steps": 3})
    assert result.constraints["lp"][0] <= 0.5 and result.metrics[0]["output_mse"] > 0
    bad = tmp_path / "pickle.pt"
    torch.save({"w": torch.zeros(2)}, bad, _use_new_zipfile_serialization=False)
    with pytest.raises(ModelUnavailableError, match="TorchScript"):
        load_regressor(f"file:{bad}", "cpu")


def test_fig4_curve_and_export(ae, photos128) -> None:
    from percviz.regression_eval import CurveRun, fig4_figure, output_psnr_curve, with_baselines

    runs = with_baselines([CurveRun("reg_quad", {"p": "2", "steps": 10})])
    assert [r.label() for r in runs] == ["quadratic-ℓ2", "random-ℓ2"]
    rows = output_psnr_curve(ae, photos128[:2], runs, [0.5, 1.0, 2.0])
    assert len(rows) == 6 and all(r["within_bound"] for r in rows)
    for label in ("quadratic-ℓ2", "random-ℓ2"):
        psnr = [r["output_psnr"] for r in rows if r["label"] == label]
        assert psnr[0] > psnr[1] > psnr[2]  # more budget, worse output
    quad = {r["eps"]: r["output_psnr"] for r in rows if r["label"] == "quadratic-ℓ2"}
    rand = {r["eps"]: r["output_psnr"] for r in rows if r["label"] == "random-ℓ2"}
    assert all(quad[e] < rand[e] - 5.0 for e in quad)
    fig = fig4_figure(rows)
    assert len(fig.data) == 2 and fig.data[1].line.dash == "dash"


@pytest.mark.slow
def test_cli_attack_and_evaluate(tmp_path) -> None:
    from percviz.cli import main

    out = tmp_path / "att"
    code = main(
        ["attack", "--model", "autoencoder", "--attack", "reg_quad", "--image", "sample:coffee",
         "--param", "p=2", "--param", "eps=1", "--param", "steps=5", "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    report = json.loads((out / "result.json").read_text())
    assert report["model_kind"] == "regressor" and report["within_bound"]
    assert report["metrics"]["output_psnr"] > 0 and report["metrics"]["output_mse"] > 0
    assert report["constraints"]["lp"] <= 1.0
    clean, adv = np.load(out / "output_original.npy"), np.load(out / "output_adversarial.npy")
    assert clean.shape == adv.shape == (128, 128, 3) and clean.dtype == np.float32
    mse = float(((clean.astype(np.float64) - adv) ** 2).mean())
    assert math.isclose(mse, report["metrics"]["output_mse"], rel_tol=1e-4)
    assert (
        main(
            [
                "attack",
                "--model",
                "autoencoder",
                "--attack",
                "pgd",
                "--image",
                "sample:coffee",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    ev_out = tmp_path / "ev"
    code = main(
        ["evaluate", "--model", "autoencoder", "--images", "sample:chelsea,coffee", "--attack", "reg_quad",
         "--param", "steps=5", "--sweep", "eps=0.5,1", "--quiet", "--out", str(ev_out)]
    )  # fmt: skip
    assert code == 0
    curve = json.loads((ev_out / "curve.json").read_text())
    assert {r["label"] for r in curve["rows"]} == {"quadratic-ℓ2", "random-ℓ2"}
    assert (ev_out / "fig4.pdf").read_bytes()[:5] == b"%PDF-" and b"<svg" in (
        ev_out / "fig4.svg"
    ).read_bytes()[:500]


def test_regression_page_runs_under_apptest() -> None:
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=600)
    at.switch_page("pages/6_Regression.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="reg_attack").set_value("reg_random").run()
    next(b for b in at.button if b.label == "Run").click().run()
    assert not at.exception and not at.error, [e.value for e in (*at.exception, *at.error)]
    labels = {m.label: m.value for m in at.metric}
    assert labels["within bound"] == "yes" and labels["output PSNR"].endswith("dB")
    assert at.get("plotly_chart")
