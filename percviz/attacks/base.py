"""The attack contract: parameter schemas, the registry, the run template, the result.

An attack is one function ``fn(ctx, x, labels, params) -> AttackOutput`` plus an
:class:`AttackSpec` naming its parameters. :func:`run_attack` is the only way attacks are run:
it validates the parameters against the schema, checks the input, seeds the randomness, counts
forward/backward passes, clips the output to [0, 1], classifies the result and re-measures the
constraints against the original image, so every attack reports the same honest numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from percviz.attacks.bounds import Constraint, MeasureMemo
from percviz.attacks.frames import FrameRecorder
from percviz.attacks.schema import Param, ParamValue
from percviz.errors import ParameterError, PercvizError, UnknownIdError, check_finite_output
from percviz.jsonsafe import json_safe
from percviz.limits import Limits
from percviz.models.layout import call_channels_last
from percviz.progress import ProgressCallback


@dataclass
class AttackOutput:
    """What an attack function returns to the template.

    Attributes:
        x_adv: ``N×3×H×W`` candidate adversarial batch (the template clips it to [0, 1]).
        constraints: extra per-image constraint values the attack measured (e.g. ``lpips``).
        info: attack-specific diagnostics (solver status, duals, λ reached, residuals…).
    """

    x_adv: torch.Tensor
    constraints: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


StopCheck = Callable[[], bool]

_STOP_CHECK: ContextVar[StopCheck | None] = ContextVar("percviz_stop_check", default=None)


class AttackCancelled(PercvizError):
    """Raised by :meth:`AttackContext.check_cancel` inside a step; :func:`run_attack` catches it."""


@contextlib.contextmanager
def stop_when(check: StopCheck) -> Iterator[None]:
    """Attacks started in this block (this thread) also stop as soon as ``check()`` is True.

    The compute queue wraps each job in it (cancel button, time limit, shutdown), so a run stops
    between the passes of one step (:meth:`AttackContext.check_cancel`), not only between steps.
    """
    token = _STOP_CHECK.set(check)
    try:
        yield
    finally:
        _STOP_CHECK.reset(token)


class AttackContext:
    """Services an attack function uses: the model, seeded noise, pass counting, progress.

    ``gradient`` is the one place gradients are taken, so pass counts are exact: one forward
    and one backward per call, whatever the batch size.
    """

    def __init__(
        self, model: torch.nn.Module, seed: int, progress: ProgressCallback | None, frames: int = 0
    ) -> None:
        self.model = model
        self.recorder = FrameRecorder(frames) if frames else None
        """Keeps the iterates offered by :meth:`step` for replay (``frames`` > 0)."""
        self.device = next(iter(model.buffers())).device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.progress = progress
        self.forward_passes = 0
        self.backward_passes = 0
        self.history: list[dict[str, Any]] = []
        self.cancelled = False
        self.memo = MeasureMemo()
        """What the attack computed on exact pixels that the bound re-check may reuse."""
        self._stop_check = _STOP_CHECK.get()

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass without gradient (counted)."""
        self.forward_passes += 1
        with torch.no_grad():
            return call_channels_last(self.model, self.model, x)

    def gradient(
        self, x: torch.Tensor, objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """∇ₓ of ``objective(logits, x).sum()``; returns ``(grad, objective (N,), logits)``.

        ``objective`` receives the logits and the differentiable input and returns per-image
        values to *maximise*. One counted forward and one counted backward.
        """
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = call_channels_last(self.model, self.model, xg)
            value = objective(logits, xg)
            (grad,) = torch.autograd.grad(value.sum(), xg)
        self.forward_passes += 1
        self.backward_passes += 1
        return grad.detach(), value.detach(), logits.detach()

    def randn(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """Standard normal noise drawn on CPU from the seeded generator, then moved."""
        return torch.randn(shape, generator=self.generator).to(self.device)

    def rand(self, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
        """Uniform [0, 1) noise drawn on CPU from the seeded generator, then moved."""
        return torch.rand(shape, generator=self.generator).to(self.device)

    def step(
        self, iteration: int, total: int, iterate: torch.Tensor | None = None, **metrics: float | torch.Tensor
    ) -> bool:
        """Record one iteration (tensor metrics become floats, or lists for per-image values) and,
        when replay frames are recorded, the ``iterate`` after it; returns True when the attack
        must stop (cancelled)."""
        if iterate is not None and self.recorder is not None:
            self.recorder.offer(iteration, total, iterate)
        record = {"iteration": iteration, "total": total, **{k: _scalar(v) for k, v in metrics.items()}}
        self.history.append(record)
        if self.progress is not None and self.progress(record) is False:
            self.cancelled = True
        return self.stop_requested()

    def stop_requested(self) -> bool:
        """True once the run was cancelled (progress returned False, or :func:`stop_when`'s check)."""
        if not self.cancelled and self._stop_check is not None and self._stop_check():
            self.cancelled = True
        return self.cancelled

    def check_cancel(self) -> None:
        """Raise :class:`AttackCancelled` if the run must stop; for loops inside one step (e.g. one
        gradient per candidate class), so a long step is not finished after a cancel."""
        if self.stop_requested():
            raise AttackCancelled("The run was cancelled.")


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().tolist() if value.numel() > 1 else float(value)
    return value


AttackFn = Callable[[AttackContext, torch.Tensor, torch.Tensor, dict[str, Any]], AttackOutput]


@dataclass(frozen=True, kw_only=True)
class AttackSpec:
    """A registry entry: identity, paper reference, schema, presets and the function."""

    id: str
    title: str
    family: str
    source: str
    summary: str
    formula: str
    params: tuple[Param, ...]
    fn: AttackFn = field(repr=False, compare=False)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bound: str = ""
    strength: str | None = None
    iteration_params: tuple[str, ...] = ()
    cost_params: tuple[str, ...] = ()
    constraints: tuple[Constraint, ...] = ()
    task: Literal["classification", "regression"] = "classification"
    #: ``{param: {choice: formula}}``: the formula shown when that choice is in use (e.g. a
    #: ranking rule other than the paper's); :meth:`formula_for` picks it.
    formula_variants: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def formula_for(self, values: Mapping[str, Any] | None = None) -> str:
        """The formula of the method these parameter values run (defaults where not given)."""
        chosen = {**self.defaults(), **(values or {})}
        for name, variants in self.formula_variants.items():
            if str(chosen.get(name)) in variants:
                return variants[str(chosen[name])]
        return self.formula

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(
            f"Attack '{self.id}' has no parameter '{name}'; valid names: {', '.join(self.param_names())}."
        )

    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    def defaults(self) -> dict[str, ParamValue]:
        return {p.name: p.default for p in self.params}

    def validate(self, values: Mapping[str, Any] | None) -> dict[str, ParamValue]:
        """Defaults overlaid with ``values``; unknown names and bad values raise ParameterError."""
        out = self.defaults()
        for name, value in (values or {}).items():
            out[name] = self.param(name).validate(value)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "family": self.family,
            "source": self.source,
            "summary": self.summary,
            "formula": self.formula,
            "formula_variants": {k: dict(v) for k, v in self.formula_variants.items()},
            "bound": self.bound,
            "params": [p.as_dict() for p in self.params],
            "presets": {
                k: {n: json_safe(v) for n, v in preset.items()} for k, preset in self.presets.items()
            },
            "strength": self.strength,
            "iteration_params": list(self.iteration_params),
            "cost_params": list(self.cost_params),
            "constraints": [c.as_dict() for c in self.constraints],
            "task": self.task,
        }


_REGISTRY: dict[str, AttackSpec] = {}


def register(spec: AttackSpec) -> AttackSpec:
    """Add an attack to the registry (module import time); ids must be unique."""
    if spec.id in _REGISTRY:
        raise ValueError(f"Attack id '{spec.id}' is registered twice.")
    names = spec.param_names()
    if len(set(names)) != len(names):
        raise ValueError(f"Attack '{spec.id}' repeats a parameter name.")
    for p in spec.params:
        p.validate(p.default)
    declared = [spec.strength, *spec.iteration_params, *spec.cost_params]
    declared += [n for c in spec.constraints for n in (c.param, *c.when)]
    unknown = {n for n in declared if n is not None} - set(names)
    if unknown:
        raise ValueError(f"Attack '{spec.id}' declares unknown parameter(s) {sorted(unknown)}.")
    for preset in spec.presets.values():
        spec.validate(preset)
    _REGISTRY[spec.id] = spec
    return spec


def registry(task: Literal["classification", "regression"] | None = None) -> dict[str, AttackSpec]:
    """Registered attacks by id (importing every attack module on first use); only those of
    ``task`` when given (the classifier pages ask for ``"classification"``)."""
    from percviz.attacks import load_all

    load_all()
    return {k: s for k, s in _REGISTRY.items() if task is None or s.task == task}


def get_attack(attack_id: str) -> AttackSpec:
    attacks = registry()
    if attack_id not in attacks:
        raise UnknownIdError(f"Unknown attack '{attack_id}'; choose one of: {', '.join(attacks)}.")
    return attacks[attack_id]


@dataclass
class AttackResult:
    """Everything one run produced, on CPU (safe to cache and share).

    Per-image tensors have length ``N``; ``constraints`` maps a name to ``N`` floats measured
    against the *original* image after clipping (``linf``, ``l2``, ``ssim``, ``s1``, ``s2`` always,
    plus the attack's own, e.g. ``lpips_self``).

    ``fooled``: the prediction left the label (or reached the target). ``within_bound``: every hard
    constraint of the attack holds (``True`` where it has none). ``success = fooled & within_bound``.
    ``bounds`` lists each applicable constraint judged (:func:`judge`: distance, kind, limit,
    values, excess, within); ``violation`` maps each judged distance to its per-image excess.
    """

    attack_id: str
    params: dict[str, ParamValue]
    seed: int
    x: torch.Tensor
    x_adv: torch.Tensor
    labels: torch.Tensor
    adv_labels: torch.Tensor
    success: torch.Tensor
    history: list[dict[str, Any]]
    forward_passes: int
    backward_passes: int
    wall_time: float
    constraints: dict[str, list[float]]
    info: dict[str, Any]
    cancelled: bool
    device: str
    fooled: torch.Tensor
    within_bound: torch.Tensor
    bounds: list[dict[str, Any]]
    violation: dict[str, list[float]]
    logits: torch.Tensor | None = None
    """``N×K`` logits of ``x`` from which ``labels`` were taken (None when labels were given)."""
    adv_logits: torch.Tensor | None = None
    """``N×K`` logits of ``x_adv`` from which ``adv_labels`` were taken."""
    ssim_maps: torch.Tensor | None = None
    """``N×3×H×W`` float32 SSIM maps of (x, x_adv) behind ``constraints['ssim']`` (float64 computation)."""
    frames: torch.Tensor | None = None
    """``K×3×H×W`` float16 iterates of image 0 for replay (``run_attack(frames=…)``), else None."""
    frame_iterations: tuple[int, ...] = ()
    """The iteration after which each frame was taken (0 = the clean image)."""
    frame_distances: tuple[tuple[float, float], ...] = ()
    """``(L∞, L2)`` of each frame from the clean image, measured at full precision."""

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def target(self) -> int | None:
        """The target class of a targeted run (``params["target"]``), else None."""
        value = self.params.get("target")
        return int(value) if value is not None else None


def _title(model: torch.nn.Module) -> str:
    """How a model is named to a user: its spec's title, else its class name."""
    spec = getattr(model, "spec", None)
    return str(getattr(spec, "title", None) or type(model).__name__)


def validate_batch(x: torch.Tensor) -> None:
    """Refuse anything but a finite ``N×3×H×W`` float batch in [0, 1]."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"Attacks take an N×3×H×W tensor; got {shape}.")
    if not x.is_floating_point():
        raise ValueError(f"Attacks take a float tensor; got {x.dtype}.")
    if not torch.isfinite(x).all():
        raise ValueError("The input batch contains NaN or infinite values.")
    if float(x.min()) < 0.0 or float(x.max()) > 1.0:
        raise ValueError(
            f"Input values must lie in [0, 1]; got [{float(x.min()):.3g}, {float(x.max()):.3g}]."
        )


def run_attack(
    attack_id: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    params: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    labels: torch.Tensor | None = None,
    progress: ProgressCallback | None = None,
    frames: int = 0,
    limits: Limits | None = None,
) -> AttackResult:
    """Run one registered attack on a batch ``x`` (``N×3×H×W`` in [0, 1]) — the template
    (:mod:`percviz.attacks.template` holds the steps it shares with the regression template).

    ``frames`` > 0 keeps up to that many iterates of image 0 for replay
    (:mod:`percviz.attacks.frames`; iterative attacks offer theirs, one-shot attacks give the
    start and the end). ``limits`` (default: this process's) caps the loop and cost parameters.

    ``labels`` default to the model's own predictions (untargeted attacks move away from what
    the model says, as in the papers). With ``params['target']`` set, fooled means the
    prediction equals the target class. ``success`` is fooled **and** within every hard bound of
    the attack's :attr:`AttackSpec.constraints`, judged on distances re-measured against the
    original image (:func:`judge_bounds`). The input tensor is never modified.
    """
    from percviz.attacks.checks import measure_with_ssim_maps
    from percviz.attacks.template import execute_run, judge_run, start_run, stop_clock

    run = start_run(
        attack_id,
        "classification",
        model,
        x,
        params,
        seed=seed,
        progress=progress,
        frames=frames,
        limits=limits,
    )
    ctx, x0, values = run.ctx, run.x0, run.values
    clean_logits = ctx.logits(x0) if labels is None else None
    if clean_logits is not None:
        check_finite_output(clean_logits, _title(model))
        labels = clean_logits.argmax(1)
    assert labels is not None
    labels = labels.to(ctx.device)
    raw_target = values.get("target")
    target = int(raw_target) if raw_target is not None else None
    if target is not None and x0.shape[0] == 1 and int(labels[0]) == target:
        raise ParameterError(
            f"The image is already classified as the target class {target}; choose another target."
        )
    output, x_adv = execute_run(run, labels)
    adv_logits = ctx.logits(x_adv)
    adv_labels = adv_logits.argmax(1)
    wall = stop_clock(run)
    fooled = (torch.eq(adv_labels, target) if target is not None else torch.ne(adv_labels, labels)).cpu()
    info = dict(output.info)
    if target is not None:  # as foolbox does, an image already of the target class counts as reached
        info["already_target"] = torch.eq(labels, target).cpu().tolist()
    if ctx.recorder is not None:  # the returned image is the last frame
        ctx.recorder.keep(max([int(r["iteration"]) for r in ctx.history] + [1]), x_adv)
    measured, ssim_maps = measure_with_ssim_maps(x0, x_adv)
    constraints, bounds, within = judge_run(run, model, x_adv, output, measured)
    return AttackResult(
        attack_id=attack_id,
        params=values,
        seed=seed,
        x=x0.cpu(),
        x_adv=x_adv.cpu(),
        labels=labels.cpu(),
        adv_labels=adv_labels.cpu(),
        success=fooled & within,
        history=ctx.history,
        forward_passes=ctx.forward_passes,
        backward_passes=ctx.backward_passes,
        wall_time=wall,
        constraints=constraints,
        info=info,
        cancelled=ctx.cancelled,
        device=str(ctx.device),
        fooled=fooled,
        within_bound=within,
        bounds=bounds,
        frames=ctx.recorder.stacked() if ctx.recorder is not None else None,
        frame_iterations=tuple(ctx.recorder.iterations) if ctx.recorder is not None else (),
        frame_distances=tuple(ctx.recorder.distances) if ctx.recorder is not None else (),
        violation={check["distance"]: check["excess"] for check in bounds},
        logits=clean_logits.detach().float().cpu() if clean_logits is not None else None,
        adv_logits=adv_logits.detach().float().cpu(),
        ssim_maps=ssim_maps,
    )
