"""Carlini–Wagner L2 (Zhang et al. 2020 §2.1.3 eq. 3–4) and the Lagrangian search it shares with sC&W.

Both attacks minimise, per image and by Adam over a latent variable ``v``,

    ``‖r(v)‖² + c · ℓ(f(x(v)), t)``,   ``ℓ(y, t) = [y_t − max_{i≠t} y_i + κ]_+``   (eq. 3)

which is eq. 4 (``λ‖r‖² + ℓ``) multiplied by ``c = 1/λ``. An outer binary search over ``c`` (per
image, ``search_steps`` rounds from the initial ``c``; ×10 while no success is known) keeps, over
all rounds and iterates, the successful image of least L2 distortion. Images never fooled are
returned unchanged (the attack failed on them). :func:`lagrangian_search` is that loop, written
once; an attack supplies only its :class:`Parametrization` (``x(v)``, ``r(v)`` and the chain rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import best_other
from percviz.attacks.params import KAPPA, STEP_SIZE, STEPS, TARGET, with_default
from percviz.attacks.schema import Param

C_INIT = Param(
    name="c",
    kind="float",
    default=1.0,
    low=1e-6,
    high=1e6,
    log=True,
    help="Initial C&W constant c = 1/λ weighting the classification loss against ‖r‖²; the binary "
    "search adapts it per image.",
    label="c (initial)",
    source="Zhang et al. 2020 eq. 4",
)
SEARCH_STEPS = Param(
    name="search_steps",
    kind="int",
    default=4,
    low=1,
    high=20,
    help="Binary-search rounds over c (each round restarts Adam from the initial point).",
    label="search steps",
    source="Zhang et al. 2020 §2.1.3",
)
ABORT_EARLY = Param(
    name="abort_early",
    kind="bool",
    default=False,
    help="Stop a search round once no image's loss has fallen by 0.01 % over the last tenth of its "
    "steps (the rule of Carlini & Wagner's released code, per image as adv_lib applies it; for one "
    "image the two are the same). Off: every round runs all its steps, so more iterates can be kept "
    "(lower L2, more time).",
    label="abort early",
    source="Carlini & Wagner 2017, released code (ABORT_EARLY)",
)
ABORT_TOLERANCE = 0.9999  # a round stops when loss > 0.9999 × the loss a tenth of its steps earlier
CW_STEPS = with_default(STEPS, 50, help="Adam iterations per search round.")
CW_STEP_SIZE = with_default(
    STEP_SIZE, 0.01, high=10.0, unit="latent units per step", help="Adam learning rate η."
)
MARGIN = with_default(KAPPA, 0.0, help="Margin m (κ) of loss (3): the loss vanishes once beaten by m.")
BOX = Param(
    name="box",
    kind="choice",
    default="tanh",
    choices=("tanh", "sigmoid", "clip"),
    help="How the [0,1] box is kept: tanh = Carlini & Wagner's x = (tanh(w) + 1)/2; sigmoid = the "
    "smooth-attacks paper's x = σ(w) (its eq. 4; tanh at step η moves like sigmoid at 2η, since "
    "(tanh(w) + 1)/2 = σ(2w)); clip = x = clip(x_o + r) with r free (its eq. 13).",
    label="box constraint",
    source="Carlini & Wagner 2017 §V; Zhang et al. 2020 eq. 4, 13",
)
SOFT_L2 = Constraint(distance="l2", kind="soft", text="minimises ‖x_adv − x‖₂ (no budget)")


def margin_loss(logits: torch.Tensor, labels: torch.Tensor, target: int | None, kappa: float) -> torch.Tensor:
    """Loss (3) to *minimise*: untargeted ``[y_t − max_{i≠t} y_i + κ]_+`` with ``t`` the true label;
    targeted ``[max_{i≠t} y_i − y_t + κ]_+`` with ``t`` the target. ``(N,)``."""
    if target is None:
        value = logits.gather(1, labels[:, None])[:, 0] - best_other(logits, labels)
    else:
        t = torch.full_like(labels, target)
        value = best_other(logits, t) - logits.gather(1, t[:, None])[:, 0]
    return (value + kappa).clamp_min(0.0)


def _succeeded(logits: torch.Tensor, labels: torch.Tensor, target: int | None, kappa: float) -> torch.Tensor:
    """Adversarial with the margin reached (``ℓ = 0``) and a changed/target prediction."""
    pred = logits.argmax(1)
    hit = pred == target if target is not None else pred != labels
    return hit & (margin_loss(logits, labels, target, kappa) <= 0)


class Parametrization(Protocol):
    """How a latent ``v`` gives the image and the perturbation, and the chain rule back to ``v``."""

    def init(self) -> torch.Tensor:
        """Starting latent (``N×3×H×W``)."""
        ...

    def image(self, v: torch.Tensor) -> torch.Tensor:
        """``x(v)`` in [0, 1], the image the network sees."""
        ...

    def gradient(self, v: torch.Tensor, grad_x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``∇_v (‖r(v)‖² + c ℓ)`` given ``grad_x = ∇_x ℓ`` at ``x(v)`` (``c`` is ``N×1×1×1``)."""
        ...


@dataclass
class TanhBox:
    """C&W's change of variable ``x = (tanh(w) + 1)/2``, ``w_0 = atanh(2x_o − 1)`` (eq. 4)."""

    x0: torch.Tensor

    def init(self) -> torch.Tensor:
        return torch.atanh((2 * self.x0 - 1).clamp(-1 + 1e-6, 1 - 1e-6))

    def image(self, v: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(v) + 1) / 2

    def gradient(self, v: torch.Tensor, grad_x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        th = torch.tanh(v)
        x = (th + 1) / 2
        return (2 * (x - self.x0) + c * grad_x) * (1 - th * th) / 2


@dataclass
class SigmoidBox:
    """The smooth-attacks paper's change of variable ``x = σ(w)``, ``w_0 = logit(x_o)`` (Zhang et
    al. 2020 eq. 4); the same image as :class:`TanhBox` at ``w/2``."""

    x0: torch.Tensor

    def init(self) -> torch.Tensor:
        return torch.logit(self.x0.clamp(1e-6, 1 - 1e-6))

    def image(self, v: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(v)

    def gradient(self, v: torch.Tensor, grad_x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(v)
        return (2 * (x - self.x0) + c * grad_x) * x * (1 - x)


@dataclass
class ClipBox:
    """Free perturbation ``r``, image ``c(x_o + r)`` clipped to [0, 1] (Zhang et al. 2020 eq. 13)."""

    x0: torch.Tensor

    def init(self) -> torch.Tensor:
        return torch.zeros_like(self.x0)

    def image(self, v: torch.Tensor) -> torch.Tensor:
        return (self.x0 + v).clamp(0.0, 1.0)

    def gradient(self, v: torch.Tensor, grad_x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        inside = ((self.x0 + v) >= 0) & ((self.x0 + v) <= 1)
        return 2 * v + c * grad_x * inside


def _adam(v: torch.Tensor, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam([v], lr=lr)


def lagrangian_search(
    ctx: AttackContext,
    x: torch.Tensor,
    labels: torch.Tensor,
    params: dict[str, Any],
    param: Parametrization,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The C&W outer loop (Zhang et al. 2020 §2.1.3): binary search on ``c``, Adam inside, keep the best.

    Returns the least-distortion successful image per image (the original where none succeeded)
    and ``info`` with the final ``c``, the best L2 and whether each image was fooled.
    """
    steps, rounds = int(params["steps"]), int(params["search_steps"])
    target, kappa = params["target"], float(params["kappa"])
    n = x.shape[0]
    c = torch.full((n,), float(params["c"]), device=x.device)
    lo = torch.zeros(n, device=x.device)
    hi = torch.full((n,), float("inf"), device=x.device)
    best_x = x.clone()
    best_l2 = torch.full((n,), float("inf"), device=x.device)
    total = steps * rounds
    it = 0

    def loss_obj(logits: torch.Tensor, _x: torch.Tensor) -> torch.Tensor:
        return margin_loss(logits, labels, target, kappa)

    abort_early, check_every = bool(params.get("abort_early", False)), max(1, steps // 10)
    aborted = 0
    for _ in range(rounds):
        v = param.init().clone()
        opt = _adam(v, float(params["step_size"]))
        found = torch.zeros(n, dtype=torch.bool, device=x.device)
        cb = c.view(n, 1, 1, 1)
        previous = torch.full((n,), math.inf, device=x.device)
        for t in range(steps):
            xv = param.image(v)
            grad_x, loss, logits = ctx.gradient(xv, loss_obj)
            l2 = (xv - x).flatten(1).norm(dim=1)
            if abort_early and t % check_every == 0:  # stop once no image's loss is still falling
                image_loss = (l2.square() + c * loss).detach()
                if bool((image_loss > previous * ABORT_TOLERANCE).all()):
                    aborted += 1
                    break
                previous = image_loss
            ok = _succeeded(logits, labels, target, kappa)
            better = ok & (l2 < best_l2)
            best_l2 = torch.where(better, l2, best_l2)
            best_x[better] = xv[better]
            found |= ok
            v.grad = param.gradient(v, grad_x, cb)
            opt.step()
            it += 1
            fooled = torch.isfinite(best_l2)
            metrics = {
                "loss": (l2.square() + c * loss).mean(),
                "margin_loss": loss.mean(),
                "l2": l2.mean(),
                "fooled": fooled.float().mean(),
            }
            if bool(fooled.any()):  # mean least distortion over the images fooled so far
                metrics["best_l2"] = best_l2[fooled].mean()
            if ctx.step(it, total, xv, **metrics):
                break
        if ctx.cancelled:
            break
        # Success: c can shrink (less weight on the loss, less distortion); failure: grow it.
        hi = torch.where(found, torch.minimum(hi, c), hi)
        lo = torch.where(found, lo, torch.maximum(lo, c))
        c = torch.where(torch.isfinite(hi), (lo + hi) / 2, c * 10)
    fooled = torch.isfinite(best_l2)
    info = {
        "c_final": c.tolist(),
        "fooled_by_search": fooled.tolist(),
        "best_l2": [float(v) if f else None for v, f in zip(best_l2.tolist(), fooled.tolist(), strict=True)],
        "iterations": it,
    }
    if abort_early:
        info["rounds_aborted_early"] = aborted
    return best_x, info


BOXES: dict[str, Callable[[torch.Tensor], Parametrization]] = {
    "tanh": TanhBox,
    "sigmoid": SigmoidBox,
    "clip": ClipBox,
}


def cw_l2(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """Carlini–Wagner L2 (Zhang et al. 2020 §2.1.3, eq. 3–4): Adam on ``‖x(w) − x_o‖² + c ℓ`` with
    a binary search on ``c`` keeping the least-distortion success per image.

    ``box``: ``tanh`` (Carlini & Wagner's, the default), ``sigmoid`` (the smooth-attacks paper's
    eq. 4, used by its presets) or ``clip``.
    """
    param: Parametrization = BOXES[params["box"]](x)
    x_adv, info = lagrangian_search(ctx, x, labels, params, param)
    return AttackOutput(x_adv, info=info)


SEARCH_PARAMS = (CW_STEPS, CW_STEP_SIZE, C_INIT, SEARCH_STEPS, MARGIN, TARGET)

register(
    AttackSpec(
        id="cw_l2",
        title="Carlini–Wagner (L2)",
        family="optimality",
        source="Carlini & Wagner 2017; Zhang et al. 2020 §2.1.3 eq. 3–4",
        summary="Looks for the smallest L2 perturbation that fools the network: Adam minimises the "
        "squared distortion plus c times a margin loss, in a tanh (Carlini & Wagner) or sigmoid "
        "(the smooth-attacks paper) change of variable that keeps the image in [0, 1]. A binary search "
        "over c (= 1/λ) trades distortion against success per image, "
        "and among every successful iterate the one with the least distortion is kept.",
        formula=r"\min_{w}\ \|\sigma(w) - x_o\|_2^2 + c\,[\,y_t - \max_{i\neq t} y_i + m\,]_+,"
        r"\quad y = f(\sigma(w)),\ \sigma(w) = \tfrac{1}{1+e^{-w}}\ \text{or}\ \tfrac{1}{2}(\tanh w + 1)",
        params=(*SEARCH_PARAMS, BOX, ABORT_EARLY),
        fn=cw_l2,
        presets={
            "paper ImageNet (sigmoid box, m = 0, η = 0.1, c = 100)": {
                "box": "sigmoid",
                "kappa": 0.0,
                "step_size": 0.1,
                "c": 100.0,
            },
            "paper MNIST (sigmoid box, m = 1, η = 0.1, c = 15)": {
                "box": "sigmoid",
                "kappa": 1.0,
                "step_size": 0.1,
                "c": 15.0,
            },
            "quick (30 steps × 3 rounds)": {"steps": 30, "search_steps": 3},
            "fast (abort early, as Carlini–Wagner's code)": {"abort_early": True},
        },
        bound="minimises ‖x_adv − x‖₂ (no fixed budget)",
        strength="kappa",
        iteration_params=("steps", "search_steps"),
        constraints=(SOFT_L2,),
    )
)
