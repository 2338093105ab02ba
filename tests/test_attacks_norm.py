"""Norm-bounded and perturbation-analysis attacks: fgm, pgd_l2, deepfool, gnm, minnorm, balda_iter,
subset (Pochimireddy et al. 2021 eq. 11; Balda et al. eq. 4–8, 21–22, Algorithm 1-T) — bounds, success, references."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from percviz.attacks import get_attack, run_attack
from percviz.attacks._norms import dual, lp_norm, steepest_step
from percviz.attacks.perturbation import robustness_rho
from percviz.errors import ParameterError
from percviz.models import Classifier
from percviz.models.zoo import ModelSpec

TOL = 1e-6
SPEC = ModelSpec(
    id="tiny",
    title="test model",
    source="tests",
    input_size=32,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    weight_file=None,
    feature_layers=(),
    cam_layer="",
)


def _norm(result, p: float) -> torch.Tensor:
    return lp_norm(result.x_adv.double() - result.x.double(), p)


def _batch32(photos32: torch.Tensor) -> torch.Tensor:
    """The 3 photos plus flips and seeded noisy copies: 12 images for the tiny model."""
    g = torch.Generator().manual_seed(1)
    noisy = (photos32 + 0.1 * torch.randn(photos32.shape, generator=g)).clamp(0, 1)
    return torch.cat([photos32, photos32.flip(-1), noisy, noisy.flip(-2)])


# --- closed forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [1.0, 1.0001, 1.5, 2.0, 3.0, 100.0, math.inf])
def test_steepest_step_is_the_dual_norm_maximiser(p: float) -> None:
    """Seed 003 Theorem 2: ‖η‖_p = r and ηᵀg = r‖g‖_q (the maximum of the linear term)."""
    g = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    eta = steepest_step(g, p, r)
    assert torch.isfinite(eta).all()
    torch.testing.assert_close(lp_norm(eta, p), r, rtol=1e-9, atol=1e-12)
    gain = (eta * g).flatten(1).sum(1)
    torch.testing.assert_close(gain, r * lp_norm(g, dual(p)), rtol=1e-6, atol=1e-9)
    if p == 1.0:
        assert ((eta != 0).flatten(1).sum(1) == 1).all()
    if math.isinf(p):
        torch.testing.assert_close(eta, r.view(-1, 1, 1, 1) * g.sign())


def test_steepest_step_of_zero_gradient_is_zero() -> None:
    for p in (1.0, 1.5, 2.0, math.inf):
        eta = steepest_step(torch.zeros(2, 3, 4, 4), p, 1.0)
        assert torch.equal(eta, torch.zeros_like(eta))


# --- bounds on the tiny model ---------------------------------------------------------------------

BOUNDED = [
    ("fgm", {"eps": 0.5}, 2.0, 0.5),
    ("fgm", {"eps": 5.0, "loss": "cw", "kappa": 5.0}, 2.0, 5.0),
    ("pgd_l2", {"eps": 0.7, "steps": 5, "step_size": 0.3}, 2.0, 0.7),
    ("pgd_l2", {"eps": 3.0, "steps": 4, "step_size": 2.0, "random_start": True}, 2.0, 3.0),
    ("gnm", {"p": "inf", "eps": 8 / 255}, math.inf, 8 / 255),
    ("gnm", {"p": 2, "eps": 1.0}, 2.0, 1.0),
    ("gnm", {"p": 1.5, "eps": 2.0, "loss": "ce"}, 1.5, 2.0),
    ("gnm", {"p": 1, "eps": 0.9}, 1.0, 0.9),
    ("gnm", {"p": 7, "eps": 0.3}, 7.0, 0.3),
    ("balda_iter", {"p": "inf", "eps": 8 / 255, "steps": 4, "dither": 4 / 255}, math.inf, 8 / 255),
    ("balda_iter", {"p": "2", "eps": 1.5, "steps": 3, "dither": 0.5}, 2.0, 1.5),
    ("balda_iter", {"p": "1", "eps": 2.0, "steps": 3}, 1.0, 2.0),
    ("balda_iter", {"p": "inf", "eps": 0.6, "steps": 3, "loss": "ce", "target": 3}, math.inf, 0.6),
]


@pytest.mark.parametrize(("attack", "params", "p", "eps"), BOUNDED)
def test_bounds_hold(tiny, photos32, attack: str, params: dict, p: float, eps: float) -> None:
    x = _batch32(photos32)
    result = run_attack(attack, tiny, x, params, seed=3)
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    reached = _norm(result, p)
    assert (reached <= eps * (1 + TOL) + TOL).all(), reached.max()
    assert (reached > 0).all(), "the attack did nothing"
    if math.isinf(p):
        assert max(result.constraints["linf"]) <= eps + TOL
    if p == 2.0:
        assert max(result.constraints["l2"]) <= eps + TOL
    if "lp" in result.constraints:
        torch.testing.assert_close(torch.tensor(result.constraints["lp"], dtype=torch.float64), reached)


@pytest.mark.parametrize(("subsets", "size", "eps"), [(1, 1, 1.0), (5, 1, 0.5), (3, 4, 0.8), (2, 5, 1.0)])
def test_subset_changes_at_most_the_requested_pixels(tiny, photos32, subsets, size, eps) -> None:
    x = _batch32(photos32)
    params = {"subsets": subsets, "subset_size": size, "eps": eps}
    result = run_attack("subset", tiny, x, params)
    l0 = torch.tensor(result.constraints["l0"])
    assert (l0 <= subsets * size * size).all() and (l0 > 0).any()
    assert max(result.constraints["subsets_changed"]) <= subsets
    assert max(result.constraints["linf"]) <= eps + TOL
    assert result.backward_passes <= subsets
    if size == 1:
        changed = (result.x_adv != result.x).any(dim=1).flatten(1).sum(1)
        torch.testing.assert_close(changed.double(), l0.double())


def test_subset_single_pixel_is_eq_22(tiny, photos32) -> None:
    """One round changes exactly the pixel with the largest Σ_c g_c·(clip(x+ε·sign g) − x)."""
    x = photos32[:1]
    result = run_attack("subset", tiny, x, {"subsets": 1, "eps": 0.5})
    xg = x.clone().requires_grad_(True)
    from percviz.attacks.losses import margin

    y = tiny(x).argmax(1)
    (g,) = torch.autograd.grad(margin(tiny(xg), y).sum(), xg)
    gain = (g * ((x + 0.5 * g.sign()).clamp(0, 1) - x)).sum(1).flatten()
    changed = (result.x_adv != x).any(dim=1).flatten().nonzero()[:, 0]
    assert changed.tolist() == [int(gain.argmax())]


# --- the real model -------------------------------------------------------------------------------

LITE0_CASES = [
    ("fgm", {"eps": 2.0, "loss": "cw"}),
    ("pgd_l2", {"eps": 0.5, "steps": 3, "step_size": 0.25}),
    ("gnm", {"p": "inf", "eps": 4 / 255}),
    ("gnm", {"p": 2, "eps": 2.0}),
    ("balda_iter", {"p": "inf", "eps": 2 / 255, "steps": 2}),
    ("minnorm", {"p": "inf", "candidates": 2, "overshoot": 0.5}),
    ("deepfool", {"p": "2", "candidates": 2, "steps": 10}),
]


@pytest.mark.parametrize(("attack", "params"), LITE0_CASES)
def test_attacks_fool_efficientnet_lite0(lite0, photos224, attack: str, params: dict) -> None:
    result = run_attack(attack, lite0, photos224, params)
    assert result.success.all(), (attack, result.adv_labels.tolist())
    assert math.isfinite(max(result.constraints["l2"]))


def test_deepfool_linf_and_subset_on_lite0(lite0, photos224) -> None:
    x = photos224[:1]
    df = run_attack("deepfool", lite0, x, {"p": "inf", "candidates": 2, "steps": 10})
    assert df.success.all()
    assert df.constraints["linf"][0] < 1 / 255, "DeepFool L∞ should need far less than one grey level"
    sub = run_attack("subset", lite0, x, {"subsets": 10, "eps": 1.0})
    assert sub.success.all() and sub.constraints["l0"][0] <= 10


def test_rho_2_on_lite0_matches_minnorm(lite0, photos224) -> None:
    x = photos224[:2]
    rho = robustness_rho(lite0, x, p=2, candidates=2)
    result = run_attack("minnorm", lite0, x, {"p": "2", "candidates": 2, "overshoot": 0.0})
    torch.testing.assert_close(rho, torch.tensor(result.constraints["rho_2"], dtype=torch.float64))
    assert (rho > 0).all() and (rho < 1.0).all()
    # the step's norm is ρ₂ (no overshoot; clipping can only shrink it)
    assert (torch.tensor(result.constraints["l2"]) <= rho.float() * (1 + 1e-4)).all()


# --- exact behaviour on an affine classifier ------------------------------------------------------


class Affine(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.weight = nn.Parameter(torch.randn(10, 3 * 32 * 32, generator=g) * 0.05)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.t()


def test_minnorm_and_deepfool_are_exact_on_an_affine_model(photos32) -> None:
    """For f(x) = Wx, Proposition 1 lands on the closest boundary in one step and ρ₂ is its distance."""
    model = Classifier(Affine(), SPEC)
    x = 0.25 + 0.5 * photos32  # away from the box so clipping does not interfere
    z = model(x)
    y = z.argmax(1)
    w = model.net.weight.detach() / 0.25  # Classifier divides by std = 0.25
    dist = ((z.gather(1, y[:, None]) - z) / (w[y][:, None, :] - w[None]).norm(dim=2)).detach()
    dist[torch.arange(3), y] = math.inf
    rho = robustness_rho(model, x, p=2, candidates=9)
    torch.testing.assert_close(rho.float(), dist.amin(1), rtol=1e-4, atol=1e-6)
    mn = run_attack("minnorm", model, x, {"p": "2", "candidates": 9, "overshoot": 0.01})
    assert mn.success.all()
    torch.testing.assert_close(
        torch.tensor(mn.constraints["l2"]).float(), 1.01 * dist.amin(1), rtol=1e-3, atol=1e-6
    )
    df = run_attack("deepfool", model, x, {"p": "2", "candidates": 9})
    assert df.success.all() and df.info["iterations"] == [1, 1, 1]


# --- torchattacks agreement -----------------------------------------------------------------------


def test_fgsm_and_pgd_match_torchattacks(lite0, photos224) -> None:
    """Same model, images, ε, steps: identical iterates, so at least the same success (Balda et al. eq. 6)."""
    torchattacks = pytest.importorskip("torchattacks")
    x = photos224
    y = lite0(x).argmax(1)
    eps = 0.1 / 255  # small enough that not every image falls
    ours = run_attack("fgsm", lite0, x, {"eps": eps}, labels=y)
    theirs = torchattacks.FGSM(lite0, eps=eps)(x, y)
    their_success = lite0(theirs).argmax(1) != y
    assert 0 < ours.success.sum() >= their_success.sum()
    torch.testing.assert_close(ours.x_adv, theirs, atol=1e-6, rtol=0)
    params = {"eps": eps, "steps": 2, "step_size": eps / 2}
    ours = run_attack("pgd", lite0, x, params, labels=y)
    theirs = torchattacks.PGD(lite0, eps=eps, alpha=eps / 2, steps=2, random_start=False)(x, y)
    their_success = lite0(theirs).argmax(1) != y
    assert 0 < ours.success.sum() >= their_success.sum()
    torch.testing.assert_close(ours.x_adv, theirs, atol=1e-6, rtol=0)


def test_deepfool_matches_torchattacks(tiny, photos32) -> None:
    torchattacks = pytest.importorskip("torchattacks")
    x = photos32
    y = tiny(x).argmax(1)
    ours = run_attack("deepfool", tiny, x, {"p": "2", "steps": 50, "candidates": 9}, labels=y)
    theirs = torchattacks.DeepFool(tiny, steps=50, overshoot=0.02)(x, y)
    their_success = tiny(theirs).argmax(1) != y
    assert ours.success.sum() >= their_success.sum()
    their_l2 = (theirs - x).flatten(1).norm(dim=1)
    ours_l2 = torch.tensor(ours.constraints["l2"]).float()
    assert ours_l2.median() <= their_l2.median() * 1.05


def test_cw_matches_torchattacks(tiny, photos32) -> None:
    """Same model, images, c, κ, steps and learning rate: our C&W (with its binary search on c)
    succeeds at least as often as torchattacks' fixed-c C&W, at no larger median L2."""
    torchattacks = pytest.importorskip("torchattacks")
    x = _batch32(photos32)
    y = tiny(x).argmax(1)
    params = {"c": 100.0, "kappa": 0.0, "steps": 50, "step_size": 0.1, "search_steps": 4}
    ours = run_attack("cw_l2", tiny, x, params, labels=y)
    theirs = torchattacks.CW(tiny, c=100.0, kappa=0.0, steps=50, lr=0.1)(x, y)
    their_success = tiny(theirs).argmax(1) != y
    assert ours.success.sum() >= their_success.sum() > 0
    both = ours.success & their_success
    ours_l2 = (ours.x_adv - x).flatten(1).norm(dim=1)[both]
    their_l2 = (theirs - x).flatten(1).norm(dim=1)[both]
    assert ours_l2.median() <= their_l2.median() * 1.05


# --- robustness of the implementation ----------------------------------------------------------------


class Constant(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(1, 2, 3))[:, None] * 0.0 + torch.arange(10.0)


ALL_MINE = [
    ("fgm", {}),
    ("pgd_l2", {"steps": 2, "random_start": True}),
    ("deepfool", {"steps": 3}),
    ("deepfool", {"p": "inf", "steps": 3, "target": 2}),
    ("gnm", {"p": 1.5}),
    ("gnm", {"p": 1}),
    ("minnorm", {"p": "1"}),
    ("minnorm", {"p": "inf", "target": 4}),
    ("balda_iter", {"p": "2", "dither": 0.1}),
    ("subset", {"subsets": 3}),
]


@pytest.mark.parametrize(("attack", "params"), ALL_MINE)
def test_zero_gradients_give_no_nan(photos32, attack: str, params: dict) -> None:
    model = Classifier(Constant(), SPEC)
    result = run_attack(attack, model, photos32, params)
    assert torch.isfinite(result.x_adv).all()
    assert all(math.isfinite(v) for vals in result.constraints.values() for v in vals)
    assert not result.success.any()


@pytest.mark.parametrize(
    ("attack", "params"),
    [
        ("gnm", {"p": 0.5}),
        ("gnm", {"p": "-inf"}),
        ("gnm", {"p": "nan"}),
        ("gnm", {"eps": -1}),
        ("balda_iter", {"p": "0.5"}),  # any p ≥ 1 is valid since the registry issue
        ("balda_iter", {"dither": -0.1}),
        ("balda_iter", {"steps": 0}),
        ("deepfool", {"p": "1"}),
        ("deepfool", {"candidates": 0}),
        ("deepfool", {"overshoot": -0.5}),
        ("minnorm", {"kappa": 1.0}),
        ("subset", {"subsets": 0}),
        ("subset", {"subset_size": 0}),
        ("subset", {"eps": 1.5}),
        ("pgd_l2", {"step_size": -1}),
        ("pgd_l2", {"random_start": "maybe"}),
        ("fgm", {"loss": "mse"}),
        ("fgm", {"target": 1000}),
    ],
)
def test_invalid_parameters_are_refused(tiny, photos32, attack: str, params: dict) -> None:
    with pytest.raises(ParameterError):
        get_attack(attack).validate(params)
    with pytest.raises(ParameterError):
        run_attack(attack, tiny, photos32, params)


def test_gnm_accepts_inf_and_any_p() -> None:
    spec = get_attack("gnm")
    assert spec.validate({"p": "inf"})["p"] == math.inf
    assert spec.validate({"p": "1.25"})["p"] == 1.25
    assert get_attack("balda_iter").validate({"kappa": "inf"})["kappa"] == math.inf


@pytest.mark.parametrize(
    ("attack", "params"),
    [
        ("pgd_l2", {"steps": 3, "random_start": True}),
        ("balda_iter", {"steps": 3, "dither": 2 / 255}),
        ("subset", {"subsets": 3}),
        ("deepfool", {"steps": 5}),
        ("minnorm", {"candidates": 3}),
    ],
)
def test_seeded_deterministic_and_input_untouched(tiny, photos32, attack: str, params: dict) -> None:
    x = photos32.clone()
    a = run_attack(attack, tiny, x, params, seed=11)
    b = run_attack(attack, tiny, x, params, seed=11)
    assert torch.equal(x, photos32)
    assert torch.equal(a.x_adv, b.x_adv)
    if params.get("random_start") or params.get("dither"):
        c = run_attack(attack, tiny, x, params, seed=12)
        assert not torch.equal(a.x_adv, c.x_adv)


def test_pass_counts_are_exact(tiny, photos32) -> None:
    x = photos32
    r = run_attack("pgd_l2", tiny, x, {"steps": 4})
    assert (r.forward_passes, r.backward_passes) == (4 + 2, 4)
    r = run_attack("balda_iter", tiny, x, {"steps": 3, "dither": 0.01})
    assert (r.forward_passes, r.backward_passes) == (3 + 2, 3)
    r = run_attack("gnm", tiny, x, {})
    assert (r.forward_passes, r.backward_passes) == (3, 1)
    # minnorm: labels, candidates, one batched pair pass (3 images × 4 classes ≤ CHUNK), final
    r = run_attack("minnorm", tiny, x, {"candidates": 4})
    assert (r.forward_passes, r.backward_passes) == (4, 1)
    r = run_attack("deepfool", tiny, x, {"candidates": 4, "steps": 10})
    iterations = max(r.info["iterations"])
    assert r.backward_passes in (iterations, iterations + 1)
    assert r.forward_passes == r.backward_passes + 3


def test_cancellation_stops_iterating(tiny, photos32) -> None:
    def stop_at_two(record: dict) -> bool:
        return record["iteration"] < 2

    for attack, params in [
        ("pgd_l2", {"steps": 10}),
        ("balda_iter", {"steps": 10}),
        ("subset", {"subsets": 10}),
    ]:
        result = run_attack(attack, tiny, photos32, params, progress=stop_at_two)
        assert result.cancelled and result.backward_passes == 2, attack


def test_cw_abort_early_stops_stalled_rounds_as_carlini_wagner_code_does(tiny, photos32) -> None:
    """With ``abort_early`` a search round stops once its loss has not fallen by 0.01 % over a tenth
    of its steps (Carlini & Wagner's released code): fewer passes, every image still fooled and
    within the result's own re-measured L2; off (the default) every round runs all its steps."""
    params = {"steps": 100, "search_steps": 5}
    full = run_attack("cw_l2", tiny, photos32, params, seed=0)
    fast = run_attack("cw_l2", tiny, photos32, {**params, "abort_early": True}, seed=0)
    assert full.forward_passes == 100 * 5 + 2 and "rounds_aborted_early" not in full.info
    assert fast.info["rounds_aborted_early"] >= 1
    assert fast.forward_passes < full.forward_passes
    assert bool(fast.success.all()) == bool(full.success.all())
    assert "fast (abort early, as Carlini–Wagner's code)" in get_attack("cw_l2").presets
