"""DeepFool in L2 and L∞, restricted to the top-k classes (Balda et al. 2019 §VI; Moosavi-Dezfooli 2016).

Each iteration linearises ``f_l − f_k`` for every candidate class ``l`` (one batched, replicated
gradient pass), picks the class with the closest linearised boundary
``l̂ = argmin_l |f_l − f_k| / ‖∇(f_l − f_k)‖_q`` and takes the minimum-ℓp step onto it
(Balda et al. 2019 Proposition 1 for that pair). Images stop as soon as they are misclassified; the sum of
steps is scaled by ``1 + overshoot``; each step is added to the clipped iterate it was computed
at (as torchattacks does), so clipping never leaves a stale accumulated step behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from percviz.attacks._norms import (
    CANDIDATES,
    OVERSHOOT,
    TINY,
    candidate_classes,
    closest_boundary,
    dual,
    lp_norm,
    measure_lp,
    parse_p,
    steepest_step,
)
from percviz.attacks.base import AttackCancelled, AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import margin
from percviz.attacks.params import STEPS, TARGET, with_default
from percviz.attacks.schema import Param

P_DEEPFOOL = Param(
    name="p",
    kind="choice",
    default="2",
    choices=("2", "inf"),
    help="Norm of the minimal steps: 2 (original DeepFool) or inf (the L∞ variant, sign steps).",
)


def _margin_towards(
    labels: torch.Tensor, target: int | None
) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The objective ``(logits, x) ↦ margin(logits, labels, target)`` for :meth:`AttackContext.gradient`."""
    return lambda logits, _x: margin(logits, labels, target)


def deepfool(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]
) -> AttackOutput:
    """DeepFool (Balda et al. 2019 §VI; Proposition 1 / eq. 7–8 applied per class pair, iterated).

    ``r = (|f_l̂ − f_k| + 10⁻⁴) / ‖w_l̂‖_q · u_p(w_l̂)`` with ``u_p`` the unit-ℓp steepest direction
    (``w/‖w‖₂`` for p = 2, ``sign(w)`` for p = ∞); ``x_{t+1} = clip(x_t + (1 + overshoot)·r_t)``.
    Targeted: the pair is (target, strongest other class) via the CW margin, until the target wins.
    """
    p = parse_p(params["p"])
    q = dual(p)
    steps, overshoot, target = params["steps"], params["overshoot"], params["target"]
    n = x.shape[0]
    x_adv = x.clone()
    active = torch.ones(n, dtype=torch.bool, device=x.device)
    iterations = torch.zeros(n, dtype=torch.long)
    rows = 0
    cand = None if target is not None else candidate_classes(ctx.logits(x), labels, params["candidates"])
    for t in range(steps):
        idx = active.nonzero()[:, 0]
        if idx.numel() == 0:
            break
        xa, ya = x_adv[idx], labels[idx]
        rows += idx.numel() * (cand.shape[1] if cand is not None else 1)
        if cand is not None:
            try:
                f, w, wq, logits = closest_boundary(ctx, xa, ya, cand[idx], q)
            except AttackCancelled:  # cancelled between class gradients: keep the last full step
                break
            f, fooled = f.abs(), logits.argmax(1) != ya
        else:
            w, m, logits = ctx.gradient(xa, _margin_towards(ya, target))
            f, wq, fooled = m.abs(), lp_norm(w, q), logits.argmax(1) == target
        radius = (f.double() + 1e-4) / wq.clamp_min(TINY)
        r = steepest_step(w, p, radius)
        keep = ~fooled
        go = idx[keep]
        x_adv[go] = (x_adv[go] + (1.0 + overshoot) * r[keep]).clamp(0.0, 1.0)
        active[idx[fooled]] = False
        iterations[go.cpu()] += 1
        if ctx.step(t + 1, steps, x_adv, active=float(keep.sum()), fooled=float(n - int(keep.sum()))):
            break
    return AttackOutput(x_adv, info={"iterations": iterations.tolist(), "gradient_rows": rows})


register(
    AttackSpec(
        id="deepfool",
        title="DeepFool (L2 / L∞)",
        family="minimum-norm",
        source="Moosavi-Dezfooli et al. 2016; Balda et al. 2019 §VI and Proposition 1 (eq. 7–8)",
        summary="Finds a small perturbation by repeatedly linearising the classifier: for each of the "
        "top candidate classes it computes the distance to the linearised decision boundary, steps "
        "onto the closest one, and stops once the label changes. No budget: the norm it reaches "
        "is the result (a robustness estimate). Restricted to the top-k classes and batched per class "
        "so it stays fast on ImageNet's 1000 classes.",
        formula=r"\hat l = \arg\min_{l \in \mathcal{C}} \frac{|f_l - f_k|}{\|\nabla f_l - \nabla f_k\|_q},\quad "
        r"r_t = \frac{|f_{\hat l} - f_k|}{\|w_{\hat l}\|_q^{q}}\,\mathrm{sign}(w_{\hat l})\odot|w_{\hat l}|^{q-1},\quad "
        r"x_{t+1} = \mathrm{clip}_{[0,1]}\big(x_t + (1+\text{overshoot})\,r_t\big)",
        params=(
            P_DEEPFOOL,
            with_default(STEPS, 50, help="Maximum iterations (images stop once misclassified)."),
            OVERSHOOT,
            CANDIDATES,
            TARGET,
        ),
        fn=deepfool,
        presets={
            "original (L2, 50 steps, overshoot 0.02, 10 classes)": {
                "p": "2",
                "steps": 50,
                "overshoot": 0.02,
                "candidates": 10,
            },
            "Balda et al. 2019 §VI (L∞, 50 steps)": {
                "p": "inf",
                "steps": 50,
                "overshoot": 0.02,
                "candidates": 10,
            },
        },
        bound="none (minimum-norm: the norm reached is reported)",
        strength="overshoot",
        iteration_params=("steps",),
        cost_params=("candidates",),
        constraints=(
            Constraint(
                distance="lp", kind="soft", measure=measure_lp, text="‖x_adv − x‖_p reached (no budget)"
            ),
        ),
    )
)
