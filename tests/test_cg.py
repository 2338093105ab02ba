"""The one conjugate-gradient routine (percviz.attacks.solvers.cg): exact on SPD systems, batched per
system, early stop at a tolerance, and a zero right-hand side or curvature leaves a system at 0."""

from __future__ import annotations

import torch

from percviz.attacks.solvers.cg import conjugate_gradient, system_dot


def _spd(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    return a @ a.T + n * torch.eye(n, dtype=torch.float64)


def test_solves_each_system_against_linalg_solve() -> None:
    mats = torch.stack([_spd(12, s) for s in range(6)]).view(2, 3, 12, 12)
    b = torch.randn(2, 3, 3, 4, dtype=torch.float64)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return (mats @ v.flatten(2).unsqueeze(-1)).squeeze(-1).view_as(v)

    x, done = conjugate_gradient(matvec, b, 12, systems=2)
    exact = torch.linalg.solve(mats, b.flatten(2).unsqueeze(-1)).squeeze(-1).view_as(b)
    assert done == 12
    assert torch.allclose(x, exact, atol=1e-9)


def test_tolerance_stops_early_and_preconditioner_is_used() -> None:
    diag = torch.linspace(1.0, 50.0, 40, dtype=torch.float64)
    b = torch.ones(2, 40, dtype=torch.float64)
    x, done = conjugate_gradient(lambda v: v * diag, b, 100, tol=1e-8)
    assert done < 40 and torch.allclose(x, b / diag, atol=1e-6)
    # The exact (Jacobi) preconditioner of a diagonal operator converges in one step.
    x, done = conjugate_gradient(lambda v: v * diag, b, 100, tol=1e-12, precondition=lambda r: r / diag)
    assert done == 1 and torch.allclose(x, b / diag, atol=1e-12)


def test_zero_rhs_and_nonpositive_curvature_stay_at_zero() -> None:
    b = torch.stack([torch.zeros(5), torch.ones(5)]).double()
    x, _ = conjugate_gradient(lambda v: -v, b, 5)  # pᵀAp < 0: a finite-difference artefact
    assert torch.equal(x, torch.zeros_like(b))
    x, _ = conjugate_gradient(lambda v: 2 * v, b, 5)
    assert torch.equal(x[0], torch.zeros(5, dtype=torch.float64)) and torch.allclose(x[1], b[1] / 2)
    assert system_dot(b, b, 1).shape == (2, 1)
