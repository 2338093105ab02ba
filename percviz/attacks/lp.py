"""L2 gradient attacks: FGM and PGD in L2 (Pochimireddy et al. 2021 eq. 11, §V; Madry et al. 2018)."""

from __future__ import annotations

from typing import Any

import torch

from percviz.attacks._norms import lp_norm, project, random_in_ball, steepest_step
from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import is_adversarial, objective
from percviz.attacks.params import EPS_L2, KAPPA, LOSS, RANDOM_START, STEP_SIZE, STEPS, TARGET, with_default

L2_STEP = with_default(
    STEP_SIZE,
    0.25,
    high=100.0,
    unit="L2 over the whole image, [0,1] units",
    help="L2 length of each step (the normalised gradient times step_size).",
)
COMMON = (LOSS, KAPPA, TARGET)
L2_BOUND = Constraint(distance="l2", kind="hard", param="eps", text="‖x_adv − x‖₂ ≤ eps")


def fgm(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """FGM: ``x_adv = clip(x + ε·∇L/‖∇L‖₂)``, one normalised-gradient step (Pochimireddy et al.
    2021 eq. 11).

    It is Balda et al. 2019 eq. 5 with ``p = 2``; a zero gradient gives no step.
    """
    obj = objective(params["loss"], labels, params["target"], params["kappa"])
    grad, value, _ = ctx.gradient(x, obj)
    x_adv = project(x, x + steepest_step(grad, 2.0, params["eps"]), 2.0, params["eps"])
    ctx.step(1, 1, loss=value.mean())
    return AttackOutput(x_adv, info={"grad_norm": lp_norm(grad, 2.0).tolist()})


def pgd_l2(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """PGD in L2 (Pochimireddy et al. 2021 §V; Madry et al. 2018).

    ``x_{t+1} = Π_{B₂(x, ε) ∩ [0,1]}(x_t + a·∇L(x_t)/‖∇L(x_t)‖₂)``; the optional random start is a
    Gaussian direction with a uniform radius in ``[0, ε)``. All ``steps`` run; the last iterate is
    returned (as ``pgd`` does).
    """
    eps, alpha, steps = params["eps"], params["step_size"], params["steps"]
    target = params["target"]
    obj = objective(params["loss"], labels, target, params["kappa"])
    x_adv = x.clone()
    if params["random_start"]:
        x_adv = project(x, x + random_in_ball(ctx, x.shape, 2.0, eps), 2.0, eps)
    for t in range(steps):
        grad, value, logits = ctx.gradient(x_adv, obj)
        x_adv = project(x, x_adv + steepest_step(grad, 2.0, alpha), 2.0, eps)
        fooled = is_adversarial(logits, labels, target).float().mean()
        if ctx.step(t + 1, steps, x_adv, loss=value.mean(), fooled_before_step=fooled):
            break
    return AttackOutput(x_adv)


register(
    AttackSpec(
        id="fgm",
        title="FGM (L2)",
        family="norm-bounded",
        source="Miyato et al. / Goodfellow et al.; Pochimireddy et al. 2021 eq. 11, Balda et al. 2019 eq. 5 (p = 2)",
        summary="One step of L2 length ε along the normalised loss gradient: the L2-optimal step of "
        "the linearised loss. Unlike FGSM it moves pixels in proportion to their gradient, so the "
        "change concentrates where the model is sensitive.",
        formula=r"x_{adv} = \mathrm{clip}_{[0,1]}\Big(x + \varepsilon\,\frac{\nabla_x \mathcal{L}(x, y)}"
        r"{\|\nabla_x \mathcal{L}(x, y)\|_2}\Big)",
        params=(EPS_L2, *COMMON),
        fn=fgm,
        presets={"ImageNet (ε = 1)": {"eps": 1.0}, "strong (ε = 3)": {"eps": 3.0}},
        bound="‖x_adv − x‖₂ ≤ ε",
        strength="eps",
        constraints=(L2_BOUND,),
    )
)

register(
    AttackSpec(
        id="pgd_l2",
        title="PGD (L2)",
        family="norm-bounded",
        source="Madry et al. 2018; Pochimireddy et al. 2021 §V",
        summary="Repeated normalised-gradient steps of L2 length a, each followed by projection back "
        "onto the L2 ball of radius ε around the image and onto [0, 1].",
        formula=r"x_{t+1} = \Pi_{\|x'-x\|_2\le\varepsilon}\Big(x_t + a\,\frac{\nabla_x \mathcal{L}(x_t, y)}"
        r"{\|\nabla_x \mathcal{L}(x_t, y)\|_2}\Big)",
        params=(EPS_L2, STEPS, L2_STEP, RANDOM_START, *COMMON),
        fn=pgd_l2,
        presets={
            "ImageNet (ε = 1, 10 steps, a = 0.25)": {"eps": 1.0, "steps": 10, "step_size": 0.25},
            "Madry L2 (ε = 3, 20 steps, a = 0.5, random start)": {
                "eps": 3.0,
                "steps": 20,
                "step_size": 0.5,
                "random_start": True,
            },
        },
        bound="‖x_adv − x‖₂ ≤ ε",
        strength="eps",
        iteration_params=("steps",),
        constraints=(L2_BOUND,),
    )
)

__all__ = ["fgm", "pgd_l2"]
