"""PGAP's QCQP solvers (percviz.attacks.solvers.qcqp, Pochimireddy et al. 2021 §IV): FPGAP's corrected
closed form, and the exact Lagrange-multiplier solver against cvxpy on real photos.
"""

from __future__ import annotations

import pytest
import torch
from conftest import SSIM_TOL as TOL
from conftest import saturate

from percviz.analysis.metrics import s1_s2
from percviz.attacks.solvers import qcqp


def _rows_of(x: torch.Tensor) -> torch.Tensor:
    return x.double().flatten(1)


def _check_feasible(x: torch.Tensor, y: torch.Tensor, eps1: float, eps2: float) -> None:
    """S1/S2 (moment form, rows as images) and the box, to TOL."""
    x4, y4 = x[:, None, None, :], y[:, None, None, :]
    s1, s2 = s1_s2(x4, y4)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert bool((s2 >= 1 - eps2**2 - TOL).all()), s2
    assert bool((s1 >= 1 - eps1**2 - TOL).all()), s1


@pytest.mark.parametrize("eps2", [0.005, 0.05, 0.2])
@pytest.mark.parametrize("scope", ["image", "channel"])
def test_fpgap_step_lands_on_s2_and_keeps_mean(photos32: torch.Tensor, eps2: float, scope: str) -> None:
    g = torch.randn(photos32.shape, generator=torch.Generator().manual_seed(1))
    rows = photos32.flatten(1) if scope == "image" else photos32.flatten(2).reshape(-1, 32 * 32)
    grows = g.flatten(1) if scope == "image" else g.flatten(2).reshape(-1, 32 * 32)
    y, _ = qcqp.closed_form(rows, grows, eps2)
    s1, s2 = s1_s2(rows.double()[:, None, None], y[:, None, None])
    assert torch.allclose(s2, torch.full_like(s2, 1 - eps2**2), rtol=0, atol=TOL)
    assert torch.allclose(y.mean(-1), rows.double().mean(-1), rtol=0, atol=TOL)
    assert torch.allclose(s1, torch.ones_like(s1), rtol=0, atol=TOL)


def test_paper_radius_would_miss_the_target(photos32: torch.Tensor) -> None:
    """The erratum: App. A's printed radius lands far from S2 = 1 − ε2² (Pochimireddy et al. 2021 App. A, corrected)."""
    rows = photos32.double().flatten(1)
    centred = rows - rows.mean(-1, keepdim=True)
    e2 = 0.05
    eta = qcqp.eta(e2)
    printed = (eta**2 * centred.pow(2).sum(-1) + qcqp.C2 * eta * e2**2).sqrt()
    g = torch.randn(rows.shape, generator=torch.Generator().manual_seed(2)).double()
    unit = (g - g.mean(-1, keepdim=True)) / (g - g.mean(-1, keepdim=True)).norm(dim=-1, keepdim=True)
    y_printed = rows.mean(-1, keepdim=True) + eta * centred + printed[:, None] * unit
    _, s2 = s1_s2(rows[:, None, None], y_printed[:, None, None])
    assert bool(((s2 - (1 - e2**2)).abs() > 0.1).all())


def _cases(photos224: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    out = []
    for size in (16, 32, 64):
        rnd = torch.rand(2, 3, size, size, generator=gen)
        crop = photos224[:, :, 60 : 60 + size, 80 : 80 + size]
        out.append((f"random{size}", rnd))
        out.append((f"photo{size}", saturate(crop[1:3])))
    return out


@pytest.mark.parametrize(("eps1", "eps2"), [(0.0, 0.05), (0.05, 0.1)])
def test_exact_solver_agrees_with_cvxpy(photos224: torch.Tensor, eps1: float, eps2: float) -> None:
    gen = torch.Generator().manual_seed(4)
    for name, x4 in _cases(photos224):
        x = _rows_of(x4)
        g = torch.randn(x.shape, generator=gen, dtype=torch.float64) + 0.2  # nonzero mean: S1 matters
        ex = qcqp.solve_exact(x, g, eps1, eps2)
        cv = qcqp.solve_cvxpy(x, g, eps1, eps2)
        assert all(s.startswith("optimal") for s in cv.status), (name, cv.status)
        rel = ((ex.objective - cv.objective).abs() / cv.objective.abs()).max()
        assert rel <= 1e-4, (name, float(rel))
        _check_feasible(x, ex.y, eps1, eps2)
        _check_feasible(x, cv.y, eps1, eps2)
        assert bool((ex.norm_slack >= -1e-9 * x.shape[1]).all()) and bool((ex.mean_gap <= 1e-12).all())
        assert torch.allclose(ex.dual_norm, cv.dual_norm, rtol=1e-3, atol=1e-6), name
        assert torch.allclose(ex.dual_mean, cv.dual_mean, rtol=1e-3, atol=1e-4), name


def test_box_activity_needs_the_mean_multiplier(photos224: torch.Tensor) -> None:
    """With saturated pixels the exact solution differs from the box-free closed form."""
    x = _rows_of(saturate(photos224[1:2, :, :64, :64]))
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ex = qcqp.solve_exact(x, g, 0.0, 0.1)
    cf, _ = qcqp.closed_form(x, g, 0.1)
    assert float((cf.clamp(0, 1) - cf).abs().max()) > 0.01  # the box binds
    assert torch.allclose(ex.y.mean(-1), x.mean(-1), atol=1e-12, rtol=0)  # mean exact with ε1 = 0
    assert float(ex.dual_mean.abs().min()) > 0
    # the solver beats clipping the closed form (which is also infeasible for the mean)
    assert bool((ex.objective > (g / g.norm(dim=-1, keepdim=True) * cf.clamp(0, 1)).sum(-1)).all())


def test_eps1_makes_the_mean_constraint_active(photos224: torch.Tensor) -> None:
    x = _rows_of(photos224[:, :, :48, :48])
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64) + 0.5
    eps1 = 0.05
    ex = qcqp.solve_exact(x, g, eps1, 0.1)
    _, hi = qcqp.mean_bounds(x.mean(-1), eps1)
    assert torch.allclose(ex.y.mean(-1), hi, atol=1e-12, rtol=0)  # pushed to the upper bound
    assert bool((ex.dual_mean > 0).all()) and bool(torch.isfinite(ex.dual_ratio).all())
    _check_feasible(x, ex.y, eps1, 0.1)
    print("dual ratio (norm / mean multiplier):", [round(v, 4) for v in ex.dual_ratio.tolist()])


def test_exact_solver_at_224(photos224: torch.Tensor) -> None:
    x = _rows_of(saturate(photos224, 1.5))
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    for eps1, eps2 in [(0.0, 0.01), (0.02, 0.05)]:
        ex = qcqp.solve_exact(x, g, eps1, eps2)
        assert ex.status == ["optimal"] * 3
        _check_feasible(x, ex.y, eps1, eps2)
        if eps1 == 0:
            assert torch.allclose(ex.y.mean(-1), x.mean(-1), atol=1e-12, rtol=0)
