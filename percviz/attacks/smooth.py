"""Smooth adversarial examples (Zhang et al. 2020 §4): qPGD₂ (§4.1.1 eq. 12) and sC&W (§4.2 eq. 16–19).

Both shape the perturbation with the Laplacian smoothing ``ŝ_α`` guided by the original image
(:mod:`percviz.attacks.solvers.smoothing`), so it is smooth wherever the image is and may be sharp across its
edges. qPGD₂ smooths each gradient before normalising it; sC&W optimises a latent ``z`` with
``r = ŝ_α(z)`` inside the C&W objective, sharing :func:`percviz.attacks.cw.lagrangian_search`.
"""

from __future__ import annotations

from typing import Any

import torch

from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.cw import SEARCH_PARAMS, SOFT_L2, lagrangian_search
from percviz.attacks.losses import is_adversarial, objective
from percviz.attacks.params import EPS_L2, KAPPA, LOSS, STEP_SIZE, STEPS, TARGET, with_default
from percviz.attacks.schema import Param
from percviz.attacks.solvers.smoothing import LaplacianSmoother, laplacian_energy

SMOOTH_ALPHA = Param(
    name="smooth_alpha",
    kind="float",
    default=0.997,
    low=0.0,
    high=0.9999,
    help="Smoothing strength α of L_α = (I − α𝒲)/(1 − α): 0 = no smoothing; 0.95 on MNIST-like "
    "images, 0.997 on ImageNet in the paper.",
    label="α (smoothing)",
    symbol="α",
    source="Zhang et al. 2020 §3.3, §5.2.4",
)
CG_ITERS = Param(
    name="cg_iters",
    kind="int",
    default=50,
    low=1,
    high=2000,
    help="Conjugate-gradient iterations per smoothing solve (50 in the paper; more for a converged "
    "solve — the residual reached is reported).",
    label="CG iterations",
    source="Zhang et al. 2020 §4.2.3",
)


def _smoother(x: torch.Tensor, params: dict[str, Any]) -> LaplacianSmoother:
    return LaplacianSmoother(x, float(params["smooth_alpha"]), iters=int(params["cg_iters"]))


def _project_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """Onto the L2 ball of radius ``eps`` around ``x``, then onto [0, 1]."""
    delta = x_adv - x
    norm = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
    delta = delta * (eps / norm).clamp(max=1.0)
    return (x + delta).clamp(0.0, 1.0)


def _smooth_constraints(
    x_adv: torch.Tensor, x: torch.Tensor, sm: LaplacianSmoother
) -> dict[str, torch.Tensor]:
    r = x_adv.clamp(0.0, 1.0) - x
    return {"laplacian_energy": laplacian_energy(r, sm.graph)}


def qpgd_l2(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]
) -> AttackOutput:
    """qPGD₂ (Zhang et al. 2020 §4.1.1 eq. 12): ``x ← Π(x + a · ŝ_α(g)/‖ŝ_α(g)‖₂)`` with ``g`` the loss
    gradient, projected onto the L2 ball of radius ε and [0, 1]; the last iterate is returned."""
    eps, step, steps = float(params["eps"]), float(params["step_size"]), int(params["steps"])
    target = params["target"]
    obj = objective(params["loss"], labels, target, params["kappa"])
    sm = _smoother(x, params)
    x_adv = x.clone()
    for t in range(steps):
        grad, value, logits = ctx.gradient(x_adv, obj)
        s = sm.solve(grad) / sm.scale  # ŝ_α(g)
        norm = s.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        x_adv = _project_l2(x_adv + step * s / norm, x, eps)
        fooled = is_adversarial(logits, labels, target).float().mean()
        if ctx.step(
            t + 1, steps, x_adv, loss=value.mean(), fooled_before_step=fooled, cg_residual=sm.max_residual
        ):
            break
    return AttackOutput(x_adv, constraints=_smooth_constraints(x_adv, x, sm), info=sm.stats())


class SmoothLatent:
    """sC&W's variable: latent ``z`` (from 0), ``r = ŝ_α(z)``, image ``c(x_o + r)`` (eq. 17–18).

    The gradient is eq. 19: ``∇_z = J_ŝᵀ (2r + c · 1[x_o + r ∈ [0,1]] ⊙ ∇_x ℓ)`` with
    ``J_ŝᵀ g = L_α^{-1} diag(s_α(1))^{-1} g``, i.e. the same smoothing applied to the gradient.
    :meth:`image` keeps ``r`` for the :meth:`gradient` call that follows it on the same ``z``.
    """

    def __init__(self, x0: torch.Tensor, smoother: LaplacianSmoother) -> None:
        self.x0 = x0
        self.sm = smoother
        self._r = torch.zeros_like(x0)

    def init(self) -> torch.Tensor:
        return torch.zeros_like(self.x0)

    def image(self, v: torch.Tensor) -> torch.Tensor:
        self._r = self.sm.solve(v) / self.sm.scale
        return (self.x0 + self._r).clamp(0.0, 1.0)

    def gradient(self, v: torch.Tensor, grad_x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        r = self._r
        inside = ((self.x0 + r) >= 0) & ((self.x0 + r) <= 1)
        return self.sm.normalized_transpose(2 * r + c * grad_x * inside)


def scw_l2(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """sC&W (Zhang et al. 2020 §4.2 eq. 18): ``min_z ‖ŝ_α(z)‖² + c ℓ(f(c(x_o + ŝ_α(z))), t)`` by Adam from
    ``z = 0``, with the C&W binary search on ``c`` and the least-distortion success kept."""
    sm = _smoother(x, params)
    x_adv, info = lagrangian_search(ctx, x, labels, params, SmoothLatent(x, sm))
    info.update(sm.stats())
    return AttackOutput(x_adv, constraints=_smooth_constraints(x_adv, x, sm), info=info)


register(
    AttackSpec(
        id="qpgd_l2",
        title="qPGD₂ — quick-and-dirty smooth PGD (L2)",
        family="smooth",
        source="Zhang et al. 2020, Smooth adversarial examples, §4.1.1 eq. 12",
        summary="PGD in L2 where each gradient is first smoothed by the Laplacian smoothing guided by "
        "the original image, then normalised: the perturbation stays smooth wherever the image is "
        "smooth. Simple, but the smoothed direction can be weakly correlated with the gradient, so it "
        "may need more distortion than PGD₂.",
        formula=r"x^{(k+1)} = \Pi_{B_2(x_o,\varepsilon)\cap[0,1]}\Big(x^{(k)} + a\,"
        r"\frac{\hat s_\alpha(g)}{\|\hat s_\alpha(g)\|_2}\Big),\quad g = \nabla_x \mathcal{L}(x^{(k)}, y),"
        r"\quad \hat s_\alpha(z) = \mathrm{diag}(s_\alpha(\mathbf 1))^{-1}\mathcal{L}_\alpha^{-1} z",
        params=(
            EPS_L2,
            with_default(STEPS, 10),
            with_default(STEP_SIZE, 0.25, high=100.0, unit="L2 per step, [0,1] units"),
            LOSS,
            KAPPA,
            TARGET,
            SMOOTH_ALPHA,
            CG_ITERS,
        ),
        fn=qpgd_l2,
        presets={
            "paper ImageNet (ε = 5, a = 3, α = 0.997, margin loss κ = 0)": {
                "eps": 5.0,
                "step_size": 3.0,
                "smooth_alpha": 0.997,
                "loss": "cw",
                "kappa": 0.0,
            },
            "paper MNIST (ε = 5, a = 3, α = 0.95, margin loss κ = 0)": {
                "eps": 5.0,
                "step_size": 3.0,
                "smooth_alpha": 0.95,
                "loss": "cw",
                "kappa": 0.0,
            },
        },
        bound="‖x_adv − x‖₂ ≤ ε",
        strength="eps",
        iteration_params=("steps",),
        cost_params=("cg_iters",),
        constraints=(Constraint(distance="l2", kind="hard", param="eps", text="‖x_adv − x‖₂ ≤ eps"),),
    )
)

register(
    AttackSpec(
        id="scw_l2",
        title="sC&W — smooth Carlini–Wagner (L2)",
        family="smooth",
        source="Zhang et al. 2020, Smooth adversarial examples, §4.2 eq. 16–19",
        summary="Carlini–Wagner where the perturbation is constrained to be smooth like the original "
        "image: it is written r = ŝ_α(z), the Laplacian smoothing (guided by the image) of a free "
        "latent z optimised by Adam from 0. Gradients reach z through the same smoothing. A binary "
        "search over c keeps the least-distortion success; the result is invisible even when magnified.",
        formula=r"\min_z\ \|\hat s_\alpha(z)\|_2^2 + c\,\big[\,y_t - \max_{i\neq t} y_i + m\,\big]_+,"
        r"\quad y = f\big(\mathrm{clip}_{[0,1]}(x_o + \hat s_\alpha(z))\big)",
        params=(*SEARCH_PARAMS, SMOOTH_ALPHA, CG_ITERS),
        fn=scw_l2,
        presets={
            "paper ImageNet (m = 0, η = 0.1, c = 100, α = 0.997)": {
                "kappa": 0.0,
                "step_size": 0.1,
                "c": 100.0,
                "smooth_alpha": 0.997,
            },
            "paper MNIST (m = 1, η = 0.1, c = 15, α = 0.95)": {
                "kappa": 1.0,
                "step_size": 0.1,
                "c": 15.0,
                "smooth_alpha": 0.95,
            },
        },
        bound="minimises ‖x_adv − x‖₂ with r smooth like x (no fixed budget)",
        strength="kappa",
        iteration_params=("steps", "search_steps"),
        cost_params=("cg_iters",),
        constraints=(SOFT_L2,),
    )
)
