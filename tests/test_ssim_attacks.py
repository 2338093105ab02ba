"""SSIM-guided attacks (Pochimireddy et al. 2021 §IV): FPGAP's closed form, PGAP's exact solver against cvxpy."""

from __future__ import annotations

import pytest
import torch
from conftest import SSIM_TOL as TOL
from conftest import saturate

from percviz.attacks import run_attack
from percviz.errors import ParameterError

# ---------------------------------------------------------------- FPGAP: the corrected closed form


@pytest.mark.parametrize("scope", ["image", "channel"])
def test_fpgap_attack_reports_s2_and_clipping(tiny, photos32: torch.Tensor, scope: str) -> None:
    x = saturate(photos32)
    eps2 = 0.1
    r = run_attack("fpgap", tiny, x, {"eps2": eps2, "steps": 1, "anchor": "original", "scope": scope})
    c = {k: torch.tensor(v, dtype=torch.float64) for k, v in r.constraints.items()}
    target = 1 - eps2**2
    # before clipping: exactly on the sphere (in the attack's scope, worst channel)
    assert torch.allclose(c["s2_unclipped"], torch.full_like(c["s2_unclipped"], target), atol=TOL, rtol=0)
    assert bool((c["clip_l2"] > 0).all()), "saturated photos must need clipping"
    # after clipping: either within the bound or the result says by how much
    assert torch.allclose(c["s2_scope"], c["s2_unclipped"] + c["s2_clip_change"], atol=1e-7, rtol=0)
    assert torch.allclose(c["s2_violation"], (target - c["s2_scope"]).clamp_min(0), atol=1e-9, rtol=0)
    if scope == "image":
        assert torch.allclose(c["s2_scope"], c["s2"], atol=1e-6, rtol=0)
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    assert r.info["bound_against_original"] is True


def test_fpgap_stops_at_first_success_and_anchors(tiny, photos32: torch.Tensor) -> None:
    x = photos32.clone()
    params = {"eps2": 0.3, "kappa": 0.0}
    one = run_attack("fpgap", tiny, x, {**params, "steps": 1})
    many = run_attack("fpgap", tiny, x, {**params, "steps": 6})
    assert torch.equal(x, photos32), "input mutated"
    used = torch.tensor(many.constraints["steps_used"])
    assert bool((used >= 1).all()) and bool((used <= 6).all())
    for i in range(3):
        if bool(one.success[i]):  # fooled after step 1: frozen there
            assert used[i] == 1
            assert torch.equal(one.x_adv[i], many.x_adv[i])
    assert bool(many.success.all()), many.constraints
    # anchor=original keeps every iterate on the sphere around the original
    orig = run_attack("fpgap", tiny, x, {**params, "steps": 6, "anchor": "original"})
    s2u = torch.tensor(orig.constraints["s2_unclipped"])
    assert torch.allclose(s2u, torch.full_like(s2u, 1 - 0.3**2), atol=TOL, rtol=0)
    # deterministic
    again = run_attack("fpgap", tiny, x, {**params, "steps": 6})
    assert torch.equal(again.x_adv, many.x_adv)


def test_bad_parameters(tiny, photos32: torch.Tensor) -> None:
    with pytest.raises(ParameterError, match="eps2"):
        run_attack("fpgap", tiny, photos32, {"eps2": 0.9})
    with pytest.raises(ParameterError, match="solver"):
        run_attack("pgap", tiny, photos32, {"solver": "ecos"})
    with pytest.raises(ParameterError, match="valid names"):
        run_attack("fpgap", tiny, photos32, {"eps1": 0.1})


# ---------------------------------------------------------------- PGAP: exact solver vs cvxpy


@pytest.mark.parametrize("scope", ["image", "channel"])
def test_pgap_attack_respects_both_constraints(tiny, photos32: torch.Tensor, scope: str) -> None:
    x = saturate(photos32, 1.5)
    eps1, eps2 = 0.05, 0.2
    r = run_attack("pgap", tiny, x, {"eps1": eps1, "eps2": eps2, "steps": 4, "kappa": 0.0, "scope": scope})
    c = r.constraints
    assert max(c["s2_violation"]) <= TOL and max(c["mean_violation"]) <= TOL
    assert min(c["s1_scope"]) >= 1 - eps1**2 - TOL
    assert all(v > 0 for v in c["dual_norm"]) and all(abs(v) > 0 for v in c["dual_mean"])
    assert all(s.startswith("optimal") for row in r.info["status"] for s in row)
    assert r.history[1]["loss"] > r.history[0]["loss"]  # the first solve raised the CW margin


def test_pgap_cvxpy_and_exact_give_the_same_attack(tiny, photos32: torch.Tensor) -> None:
    params = {"eps1": 0.0, "eps2": 0.1, "steps": 1}
    a = run_attack("pgap", tiny, photos32[:2], {**params, "solver": "exact"})
    b = run_attack("pgap", tiny, photos32[:2], {**params, "solver": "cvxpy"})
    assert (a.x_adv - b.x_adv).abs().max() < 1e-3
    assert all(g < 1e-5 for row in b.info["duality_gap"] for g in row)


# ---------------------------------------------------------------- the real model


def test_fpgap_vs_pgd_on_real_photos(lite0, photos224: torch.Tensor) -> None:
    """Algorithm 2 (moving anchor) fools Lite0 on all three photos with higher SSIM than PGD.

    PGD's ε is set just above the smallest that fools the hardest photo (coffee needs ≈ 0.13/255
    with 10 steps), so both reach 3/3; FPGAP's ε2 = 3e-4 is also near its minimum.
    """
    fp = run_attack("fpgap", lite0, photos224, {"eps2": 3e-4, "steps": 10})
    pg = run_attack("pgd", lite0, photos224, {"eps": 0.15 / 255, "steps": 5, "step_size": 0.06 / 255})
    ssim_fp = torch.tensor(fp.constraints["ssim"])
    ssim_pg = torch.tensor(pg.constraints["ssim"])
    print(
        f"\nFPGAP ε2=3e-4 (moving): success {fp.success.tolist()} steps {fp.constraints['steps_used']} "
        f"SSIM {[round(v, 7) for v in ssim_fp.tolist()]} L2 {[round(v, 4) for v in fp.constraints['l2']]}"
        f"\nPGD ε=0.15/255 (5 steps): success {pg.success.tolist()} "
        f"SSIM {[round(v, 7) for v in ssim_pg.tolist()]} L2 {[round(v, 4) for v in pg.constraints['l2']]}"
    )
    assert bool(fp.success.all()) and bool(pg.success.all())
    assert bool((ssim_fp > ssim_pg).all())
