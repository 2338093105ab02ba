"""L∞ gradient-sign attacks: FGSM and PGD/BIM (Pochimireddy et al. 2021 §III & §V, Balda et al. 2019 eq. 6)."""

from __future__ import annotations

from typing import Any

import torch

from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import is_adversarial, objective
from percviz.attacks.params import EPS_LINF, KAPPA, LOSS, RANDOM_START, STEP_SIZE, STEPS, TARGET


def fgsm(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """FGSM: ``x_adv = clip(x + ε·sign(∇ₓ L(x, y)))`` — one gradient, one step (Balda et al. 2019 eq. 6)."""
    obj = objective(params["loss"], labels, params["target"], params["kappa"])
    grad, value, _ = ctx.gradient(x, obj)
    x_adv = (x + params["eps"] * grad.sign()).clamp(0.0, 1.0)
    ctx.step(1, 1, loss=value.mean())
    return AttackOutput(x_adv)


def pgd(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """PGD / BIM in L∞ (Madry et al.; Pochimireddy et al. 2021 §V, Balda et al. 2019 Table II).

    ``x_{t+1} = Π_{B∞(x, ε) ∩ [0,1]}(x_t + step_size · sign(∇ L(x_t)))``, optional uniform random
    start in the ball. All ``steps`` iterations run (the usual protocol); the last iterate is
    returned.
    """
    eps, alpha, steps = params["eps"], params["step_size"], params["steps"]
    target = params["target"]
    obj = objective(params["loss"], labels, target, params["kappa"])
    low, high = (x - eps).clamp_min(0.0), (x + eps).clamp_max(1.0)  # B∞(x, ε) ∩ [0, 1] as a box
    x_adv = x.clone()
    if params["random_start"]:
        x_adv = (x + (2 * ctx.rand(x.shape) - 1) * eps).clamp(0.0, 1.0)
    for t in range(steps):
        grad, value, logits = ctx.gradient(x_adv, obj)
        x_adv = torch.clamp(x_adv + alpha * grad.sign_(), low, high)
        fooled = is_adversarial(logits, labels, target).float().mean()
        if ctx.step(t + 1, steps, x_adv, loss=value.mean(), fooled_before_step=fooled):
            break
    return AttackOutput(x_adv)


COMMON = (LOSS, KAPPA, TARGET)
LINF_BOUND = Constraint(distance="linf", kind="hard", param="eps", text="‖x_adv − x‖∞ ≤ eps")

register(
    AttackSpec(
        id="fgsm",
        title="FGSM (L∞)",
        family="norm-bounded",
        source="Goodfellow et al. 2015; Pochimireddy et al. 2021 §III, Balda et al. 2019 eq. 6",
        summary="One step of size ε along the sign of the loss gradient: the L∞-optimal step of the "
        "linearised loss.",
        formula=r"x_{adv} = \mathrm{clip}_{[0,1]}\big(x + \varepsilon\,\mathrm{sign}(\nabla_x \mathcal{L}(x, y))\big)",
        params=(EPS_LINF, *COMMON),
        fn=fgsm,
        presets={"paper ImageNet (ε = 4/255)": {"eps": 4 / 255}, "strong (ε = 8/255)": {"eps": 8 / 255}},
        bound="‖x_adv − x‖∞ ≤ ε",
        strength="eps",
        constraints=(LINF_BOUND,),
    )
)

register(
    AttackSpec(
        id="pgd",
        title="PGD / BIM (L∞)",
        family="norm-bounded",
        source="Madry et al. 2018; Pochimireddy et al. 2021 §V, Balda et al. 2019 Table II",
        summary="Repeated signed-gradient steps, each followed by projection back onto the L∞ ball "
        "of radius ε around the image and onto [0, 1].",
        formula=r"x_{t+1} = \Pi_{\|x'-x\|_\infty\le\varepsilon}\big(x_t + a\,\mathrm{sign}(\nabla_x \mathcal{L}(x_t, y))\big)",
        params=(EPS_LINF, STEPS, STEP_SIZE, RANDOM_START, *COMMON),
        fn=pgd,
        presets={
            "paper ImageNet (ε = 4/255, 10 steps)": {"eps": 4 / 255, "steps": 10, "step_size": 1 / 255},
            "Madry (ε = 8/255, 20 steps, random start)": {
                "eps": 8 / 255,
                "steps": 20,
                "step_size": 2 / 255,
                "random_start": True,
            },
        },
        bound="‖x_adv − x‖∞ ≤ ε",
        strength="eps",
        iteration_params=("steps",),
        constraints=(LINF_BOUND,),
    )
)
