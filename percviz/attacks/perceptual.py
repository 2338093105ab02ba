"""PPGD, LPA and Fast-LPA, bounded by the neural perceptual distance (Laidlaw et al. 2021 §3–5, App. A).

The threat model is ``d(x̃, x) = |φ(x̃) − φ(x)|₂ ≤ ε`` (§3, eq. 3) with ``φ`` the channel-normalised,
size-scaled activations of a *distance network* (:func:`percviz.analysis.metrics.perceptual_features`):
the attacked classifier itself (*self-bounded*, works offline) or AlexNet / VGG-16 / ResNet-50
(*externally bounded*, App. H.1 layers; their weights must be on this machine, else
:class:`~percviz.errors.ModelUnavailableError` names the missing file).

- ``ppgd`` — App. A.1 Algorithm 1: a first-order step of perceptual size η found by ``K``
  conjugate-gradient iterations on ``JᵀJ δ = ∇f̂`` (eq. 12), then a projection. Erratum: line 16
  prints ``x̃ ← (η/m) δ``; the update is ``x̃ ← x̃ + (η/m) δ``.
- ``lpa`` — App. A.2 Algorithm 2: normalised gradient steps on the Lagrangian (eq. 5/13) with a
  search over λ (×10 after each round ending outside the bound), then a projection.
- ``fast_lpa`` — App. A.3 Algorithm 3: λ = 10^(t/T), no search, **no projection**: the result may
  lie outside the bound, and the reported distance and ``outside_bound`` say so.

Pass counting (per batch, as :class:`~percviz.attacks.base.AttackContext` counts): in the
self-bounded case one forward of the classifier yields both the logits and ``φ(x̃)`` (a torch.fx
extractor returning the feature layers *and* the output), as the paper assumes. The exact counts
are in :mod:`percviz.attacks.perceptual_passes` (compared there with the formulas printed in
App. A).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from percviz.attacks.base import AttackContext, AttackOutput, AttackSpec, register
from percviz.attacks.bounds import Constraint
from percviz.attacks.losses import cross_entropy, is_adversarial, margin
from percviz.attacks.params import STEPS, TARGET, with_default
from percviz.attacks.perceptual_distance import ALEXNET_BOUNDS, SELF_BOUNDS, DistanceNet, measure_perceptual
from percviz.attacks.perceptual_params import (
    BISECT_ITERS,
    BOUND_TEXT,
    CG_ITERS,
    CG_RESIDUAL_SQ,
    CG_STOP,
    COMMON,
    KAPPA_FAST,
    LAM,
    MARGIN_LOSS,
    OBJECTIVE,
    OVERSHOOT,
    PPGD_STEP,
    PROJECTION,
    SEARCH_STEPS,
)
from percviz.attacks.solvers.cg import conjugate_gradient
from percviz.attacks.solvers.projections import Projection, bisection, distance_to, newton
from percviz.errors import ParameterError

PPGD_H = 1e-3  # finite-difference step for Jv (App. A.1, Algorithm 1 lines 15 and 23)
LPA_H = 0.1  # finite-difference step for the directional derivative m (Algorithm 2 line 9)
INIT_STD = 0.01  # x̃₀ = x + 0.01·N(0, 1) (Algorithms 1–3)
NEWTON_MAX_ITERS = 10


def preset_bound(size: str, distance_net: str = "self") -> float:
    """Table 4 bound for ``size`` ∈ small/medium/large: AlexNet's value, halved when self-bounded."""
    table = SELF_BOUNDS if distance_net == "self" else ALEXNET_BOUNDS
    if size not in table:
        raise ParameterError(f"Bound size must be one of {', '.join(table)}; got {size!r}.")
    return table[size]


# --------------------------------------------------------------------------------------------
# Shared steps (the distance network φ is in perceptual_distance.py)
# --------------------------------------------------------------------------------------------


def _bc(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` where ``den > 0``, else 0 (per image)."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)), torch.zeros_like(num))


def _normalise(v: torch.Tensor) -> torch.Tensor:
    """``v / |v|₂`` per image; 0 where ``v`` is 0."""
    return v * _bc(_safe_div(torch.ones(v.shape[0], device=v.device), v.flatten(1).norm(dim=1)))


def _attack_loss(params: dict[str, Any], labels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Per-image loss to maximise: CW margin clipped at κ (§4, the paper's) or cross-entropy."""
    target = params["target"]
    if params["loss"] == "ce":
        return lambda z: cross_entropy(z, labels, target)
    return lambda z: margin(z, labels, target, params["kappa"])


def _initial(ctx: AttackContext, x: torch.Tensor, random_start: bool) -> torch.Tensor:
    """``x̃₀ = clip(x + 0.01·N(0, 1))`` (Algorithms 1–3 line 2), or ``x`` without random start."""
    if not random_start:
        return x.clone()
    return (x + INIT_STD * ctx.randn(x.shape)).clamp(0.0, 1.0)


def _project(
    dist: DistanceNet,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    phi_x: torch.Tensor,
    params: dict[str, Any],
) -> Projection:
    """App. A.4 projection chosen by ``params['projection']`` (bisection or Newton)."""
    bound = params["bound"]
    if params["projection"] == "newton":
        return newton(
            dist.features, x, x_adv, phi_x, bound, params["overshoot"], dist.ctx,
            NEWTON_MAX_ITERS, params["bisect_iters"],
        )  # fmt: skip
    return bisection(dist.features, x, x_adv, phi_x, bound, params["bisect_iters"], dist.ctx)


# --------------------------------------------------------------------------------------------
# PPGD (App. A.1, Algorithm 1)
# --------------------------------------------------------------------------------------------


def _jtj_operator(
    dist: DistanceNet, xg: torch.Tensor, phi_adv: torch.Tensor
) -> Callable[[torch.Tensor], torch.Tensor]:
    """MULTIPLYJACOBIAN (Algorithm 1 lines 22–25): ``JᵀJv`` with ``Jv ≈ (φ(x̃+hv) − φ(x̃))/h``.

    ``JᵀJv`` is the vector–Jacobian product of ``Jv`` through the retained graph of ``φ(x̃)``
    (the paper's ``∇ᵤ[φ(x̃+u)ᵀJv]``). One counted forward and one counted backward per call.
    """
    base = xg.detach()
    phi0 = phi_adv.detach()

    def matvec(v: torch.Tensor) -> torch.Tensor:
        jv = (dist.phi(base + PPGD_H * v) - phi0) / PPGD_H
        (out,) = torch.autograd.grad(phi_adv, xg, grad_outputs=jv, retain_graph=True)
        dist.ctx.backward_passes += 1
        return out

    return matvec


def _ppgd_gradient(
    dist: DistanceNet, x_adv: torch.Tensor, loss: Callable[[torch.Tensor], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """∇f̂ (Algorithm 1 line 4) and φ(x̃) on a graph kept for the ``JᵀJ`` products.

    Returns ``(xg, phi_adv, grad, loss value, logits)``. Self-bounded: one shared forward and one
    backward; external: ∇f̂ through ``ctx.gradient`` plus one forward of φ.
    """
    ctx = dist.ctx
    xg = x_adv.detach().requires_grad_(True)
    if dist.external:
        grad, value, logits = ctx.gradient(x_adv, lambda z, _x: loss(z))
        with torch.enable_grad():
            phi_adv = dist.features(xg)
        ctx.forward_passes += 1
        return xg, phi_adv, grad, value, logits
    with torch.enable_grad():
        logits, phi_adv = dist.logits_and_phi(xg)
        value = loss(logits)
        (grad,) = torch.autograd.grad(value.sum(), xg, retain_graph=True)
    ctx.backward_passes += 1
    return xg, phi_adv, grad, value.detach(), logits.detach()


def ppgd(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """Perceptual PGD (Laidlaw et al. 2021 §4, App. A.1 Algorithm 1, Lemma 1 / eq. 11–12).

    Per step: ``δ ≈ (JᵀJ)⁻¹∇f̂`` by ``cg_iters`` CG iterations, ``m = |φ(x̃+hδ) − φ(x̃)|/h``
    (h = 1e-3), ``x̃ ← clip(x̃ + (η/m) δ)`` (line 16 with the erratum fixed), then the projection
    onto ``d(x̃, x) ≤ bound``. ``η = step_size`` (0 = ``2·bound/steps``).
    """
    dist = DistanceNet(ctx, params["distance_net"])
    bound, steps = params["bound"], params["steps"]
    eta = params["step_size"] or 2.0 * bound / steps
    loss = _attack_loss(params, labels)
    phi_x = dist.phi(x)
    x_adv = _initial(ctx, x, params["random_start"])
    proj: Projection | None = None
    skipped, cg_done = 0, []
    residual_sq = CG_RESIDUAL_SQ if params.get("cg_stop", "fixed") == "residual" else 0.0
    for t in range(steps):
        xg, phi_adv, grad, value, logits = _ppgd_gradient(dist, x_adv, loss)
        matvec = _jtj_operator(dist, xg, phi_adv)
        delta, done = conjugate_gradient(matvec, grad, params["cg_iters"], residual_sq=residual_sq)
        cg_done.append(done)
        m = (dist.phi(x_adv + PPGD_H * delta) - phi_adv.detach()).norm(dim=1) / PPGD_H
        del xg, phi_adv
        x_adv = (x_adv + _bc(_safe_div(torch.full_like(m, eta), m)) * delta).clamp(0.0, 1.0)
        proj = _project(dist, x, x_adv, phi_x, params)
        skipped += int(proj.iterations == 0 and params["projection"] == "bisection")
        x_adv = proj.x
        fooled = is_adversarial(logits, labels, params["target"]).float().mean()
        if ctx.step(
            t + 1, steps, x_adv, loss=value.mean(), lpips=proj.distance.mean(), fooled_before_step=fooled
        ):
            break
    assert proj is not None  # steps ≥ 1
    info = {"step_size": eta, "projections_skipped": skipped, "cg_iterations": cg_done}
    return _bounded_output(dist, x_adv, proj, params, info)


def _bounded_output(
    dist: DistanceNet, x_adv: torch.Tensor, proj: Projection, params: dict[str, Any], info: dict[str, Any]
) -> AttackOutput:
    return AttackOutput(
        x_adv,
        constraints={dist.constraint_name: proj.distance},
        info={
            "distance_net": dist.name,
            "bound": params["bound"],
            "projection": params["projection"],
            "projected_last": proj.was_outside.tolist(),
            "newton_fallback": proj.fallback.tolist(),
            **info,
        },
    )


# --------------------------------------------------------------------------------------------
# LPA and Fast-LPA (App. A.2–A.3, Algorithms 2–3)
# --------------------------------------------------------------------------------------------


def _lagrangian_step(
    dist: DistanceNet,
    x_adv: torch.Tensor,
    phi_x: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
    lam: torch.Tensor,
    bound: float,
    eta: float,
    grow: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step of Algorithm 2 lines 6–10 / Algorithm 3 lines 5–9.

    ``Δ = ∇[L − λ·max(0, d(x̃, x) − ε)]``, ``Δ̂ = Δ/|Δ|``, ``m = d(x̃, x̃ + hΔ̂)/h`` (h = 0.1),
    ``x̃ ← clip(x̃ + (η/m)Δ̂)``. With ``grow`` (first step of an LPA round), λ is first multiplied
    by 10 where ``d(x̃, x) > ε`` (Algorithm 2 lines 12–13): ``x̃`` is then the previous round's
    final iterate, so the test reuses this forward. Returns ``(x̃_next, d(x̃, x), λ, loss, logits)``.
    """
    ctx = dist.ctx
    xg = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits, phi_adv = dist.logits_and_phi(xg)
        d = (phi_adv - phi_x).norm(dim=1)
        if grow:
            lam = torch.where(d.detach() > bound, lam * 10.0, lam)
        value = loss(logits)
        (grad,) = torch.autograd.grad((value - lam * F.relu(d - bound)).sum(), xg)
    ctx.backward_passes += dist.backward_cost()
    direction = _normalise(grad)
    m = (dist.phi(x_adv + LPA_H * direction) - phi_adv.detach()).norm(dim=1) / LPA_H
    x_next = (x_adv + _bc(_safe_div(torch.full_like(m, eta), m)) * direction).clamp(0.0, 1.0)
    return x_next, d.detach(), lam, value.detach(), logits.detach()


def lpa(ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]) -> AttackOutput:
    """Lagrangian Perceptual Attack (Laidlaw et al. 2021 §4 eq. 5, App. A.2 Algorithm 2).

    λ starts at ``lam`` per image and is multiplied by 10 after each of the ``search_steps`` rounds
    that ends outside the bound; each round runs ``steps`` steps with ``η = bound·0.1^(t/T)``
    from the current iterate; a final projection makes ``d(x̃, x) ≤ bound``. Beyond Algorithm 2:
    an image that was adversarial at some iterate inside the bound returns the latest such
    iterate (``info['kept_inside_iterate']``) instead of the projection, at no extra pass.
    """
    dist = DistanceNet(ctx, params["distance_net"])
    bound, steps, rounds = params["bound"], params["steps"], params["search_steps"]
    loss = _attack_loss(params, labels)
    phi_x = dist.phi(x)
    x_adv = _initial(ctx, x, params["random_start"])
    lam = torch.full((x.shape[0],), float(params["lam"]), device=x.device)
    lam_start = lam
    best, best_d = x_adv, torch.zeros_like(lam)
    found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    stop = False
    for i in range(rounds):
        for t in range(steps):
            eta = bound * 0.1 ** ((t + 1) / steps)
            grow = i > 0 and t == 0
            x_prev = x_adv
            x_adv, d, lam, value, logits = _lagrangian_step(dist, x_adv, phi_x, loss, lam, bound, eta, grow)
            adversarial = is_adversarial(logits, labels, params["target"])
            # Keep the latest iterate that was adversarial *inside* the bound (known from this
            # forward, no extra pass); the final projection can otherwise undo a success.
            keep = adversarial & (d <= bound)
            best = torch.where(_bc(keep), x_prev, best)
            best_d = torch.where(keep, d, best_d)
            found = found | keep
            fooled = adversarial.float().mean()
            it = i * steps + t + 1
            if ctx.step(
                it, rounds * steps, x_adv, loss=value.mean(), lpips=d.mean(), fooled_before_step=fooled
            ):
                stop = True
                break
        if stop:
            break
    proj = _project(dist, x, x_adv, phi_x, params)
    grown = torch.round(torch.log10(lam / lam_start)).long()
    proj.x = torch.where(_bc(found), best, proj.x)
    proj.distance = torch.where(found, best_d, proj.distance)
    info = {
        "lambda": lam.tolist(),
        "rounds_outside": grown.tolist(),
        "kept_inside_iterate": found.tolist(),
        "projections_skipped": int(proj.iterations == 0 and params["projection"] == "bisection"),
    }
    return _bounded_output(dist, proj.x, proj, params, info)


def fast_lpa(
    ctx: AttackContext, x: torch.Tensor, labels: torch.Tensor, params: dict[str, Any]
) -> AttackOutput:
    """Fast-LPA (Laidlaw et al. 2021 §5, App. A.3 Algorithm 3): λ = 10^(t/T), one round, no projection.

    Meant for adversarial training, not evaluation: the result can lie outside the bound. The
    final distance is measured on the returned image and reported as ``lpips_<net>`` together
    with ``outside_bound`` (1 where ``d > bound``).
    """
    dist = DistanceNet(ctx, params["distance_net"])
    bound, steps = params["bound"], params["steps"]
    loss = _attack_loss(params, labels)
    phi_x = dist.phi(x)
    x_adv = _initial(ctx, x, params["random_start"])
    for t in range(1, steps + 1):
        lam = torch.full((x.shape[0],), 10.0 ** (t / steps), device=x.device)
        eta = bound * 0.1 ** (t / steps)
        x_adv, d, _, value, logits = _lagrangian_step(dist, x_adv, phi_x, loss, lam, bound, eta)
        fooled = is_adversarial(logits, labels, params["target"]).float().mean()
        if ctx.step(t, steps, x_adv, loss=value.mean(), lpips=d.mean(), fooled_before_step=fooled):
            break
    final = distance_to(dist.features, phi_x, x_adv, ctx)
    outside = final > bound
    return AttackOutput(
        x_adv,
        constraints={dist.constraint_name: final, "outside_bound": outside.double()},
        info={
            "distance_net": dist.name,
            "bound": bound,
            "projection": "none",
            "outside_bound": outside.tolist(),
            "warning": "Fast-LPA does not project: results may lie outside the bound (Laidlaw et al. 2021 App. A.3)."
            if bool(outside.any())
            else "",
        },
    )


# --------------------------------------------------------------------------------------------
# Registry entries
# --------------------------------------------------------------------------------------------


def _perceptual_bound(kind: str) -> Constraint:
    return Constraint(
        distance="lpips_{distance_net}",
        kind=kind,  # type: ignore[arg-type]
        param="bound",
        measure=measure_perceptual,
        text=BOUND_TEXT if kind == "hard" else BOUND_TEXT + " (not enforced: no projection)",
    )


def _presets() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for size in ALEXNET_BOUNDS:
        bound = preset_bound(size, "self")
        out[f"{size}, self-bounded (ε = {bound:g})"] = {"bound": bound, "distance_net": "self"}
    for size in ALEXNET_BOUNDS:
        bound = preset_bound(size, "alexnet")
        out[f"{size}, AlexNet (ε = {bound:g}, Table 4)"] = {"bound": bound, "distance_net": "alexnet"}
    return out


register(
    AttackSpec(
        id="ppgd",
        title="Perceptual PGD",
        family="perceptual",
        source="Laidlaw et al. 2021, §4, App. A.1 Algorithm 1 (Lemma 1, eq. 11–12), App. A.4",
        summary="Projected gradient ascent in the perceptual metric: each step solves the linearised "
        "problem max ∇f̂ᵀδ s.t. |Jδ| ≤ η with a few conjugate-gradient iterations on JᵀJδ = ∇f̂ "
        "(J = Jacobian of the normalised features φ), scales the step to perceptual length η, then "
        "projects back onto the ball d(x̃, x) ≤ ε.",
        formula=r"\tilde x \leftarrow \Pi_{d(\cdot,x)\le\varepsilon}\Big(\tilde x + \tfrac{\eta}{m}\,\delta\Big),"
        r"\quad J^\top J\,\delta = \nabla_{\tilde x}\mathcal{L}(f(\tilde x), y),\quad m = \|J\delta\|_2",
        params=(
            *COMMON,
            with_default(STEPS, 10),
            PPGD_STEP,
            CG_ITERS,
            CG_STOP,
            PROJECTION,
            BISECT_ITERS,
            OVERSHOOT,
            *OBJECTIVE,
        ),
        fn=ppgd,
        presets=_presets(),
        bound=BOUND_TEXT,
        strength="bound",
        iteration_params=("steps",),
        cost_params=("cg_iters", "bisect_iters"),
        constraints=(_perceptual_bound("hard"),),
    )
)

register(
    AttackSpec(
        id="lpa",
        title="Lagrangian Perceptual Attack",
        family="perceptual",
        source="Laidlaw et al. 2021, §4 eq. 5, App. A.2 Algorithm 2, App. A.4",
        summary="Gradient ascent on the Lagrangian L(f(x̃), y) − λ·max(0, d(x̃, x) − ε) with steps "
        "of perceptual length η (decaying from ε to ε/10); λ grows ×10 after every round that ends "
        "outside the bound, and a final projection enforces d(x̃, x) ≤ ε.",
        formula=r"\max_{\tilde x}\ \mathcal{L}(f(\tilde x), y) - \lambda\max\big(0,\ \|\phi(\tilde x)-\phi(x)\|_2-\varepsilon\big)",
        params=(
            *COMMON,
            with_default(STEPS, 10),
            LAM,
            SEARCH_STEPS,
            PROJECTION,
            BISECT_ITERS,
            OVERSHOOT,
            *OBJECTIVE,
        ),
        fn=lpa,
        presets=_presets(),
        bound=BOUND_TEXT,
        strength="bound",
        iteration_params=("steps", "search_steps"),
        cost_params=("bisect_iters",),
        constraints=(_perceptual_bound("hard"),),
    )
)

register(
    AttackSpec(
        id="fast_lpa",
        title="Fast-LPA (no projection)",
        family="perceptual",
        source="Laidlaw et al. 2021, §5, App. A.3 Algorithm 3",
        summary="LPA without the λ search (λ = 10^(t/T) rises from 1 to 10 during the T steps) and "
        "without the final projection — the cheap attack of perceptual adversarial training. It can "
        "end outside the bound; the reported distance and 'outside_bound' say so.",
        formula=r"\lambda_t = 10^{t/T},\quad \tilde x \leftarrow \tilde x + \tfrac{\eta_t}{m}\hat\Delta,"
        r"\quad \eta_t = \varepsilon\,0.1^{t/T}",
        params=(*COMMON, with_default(STEPS, 10), MARGIN_LOSS, KAPPA_FAST, TARGET),
        fn=fast_lpa,
        presets=_presets(),
        bound="soft: " + BOUND_TEXT + " (not enforced)",
        strength="bound",
        iteration_params=("steps",),
        constraints=(_perceptual_bound("soft"),),
    )
)
