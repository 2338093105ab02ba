"""The attack contract (SPEC §2): parameter schemas, the registry, the run template, the result.

An attack is one function ``fn(ctx, x, labels, params) -> AttackOutput`` plus an
:class:`AttackSpec` naming its parameters. :func:`run_attack` is the only way attacks are run:
it validates the parameters against the schema, checks the input, seeds the randomness, counts
forward/backward passes, clips the output to [0, 1], classifies the result and re-measures the
constraints against the original image, so every attack reports the same honest numbers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from percviz.errors import ParameterError, UnknownIdError

ParamKind = Literal["float", "int", "bool", "choice", "class"]
ParamValue = float | int | bool | str | None


@dataclass(frozen=True, kw_only=True)
class Param:
    """One attack parameter: what the UI slider, the CLI ``--param`` and recipes share.

    ``kind='class'`` is an optional ImageNet class index (``None`` = absent, e.g. ``target``).
    ``choice`` parameters take one of ``choices``; ``p`` is a choice over ``"1"``, ``"2"``,
    ``"inf"`` unless the attack accepts any float (then it is a float with ``allow_inf``).
    """

    name: str
    kind: ParamKind
    default: ParamValue
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""
    help: str = ""
    source: str = ""
    log: bool = False
    allow_inf: bool = False
    label: str = ""

    def display_label(self) -> str:
        return self.label or self.name

    def validate(self, value: Any) -> ParamValue:
        """Coerce and check one value (strings from the CLI are accepted); raise ParameterError."""
        name = self.name
        if self.kind == "class":
            if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
                return None
            return int(self._number(value, integer=True, low=0, high=999))
        if self.kind == "bool":
            return _as_bool(name, value)
        if self.kind == "choice":
            text = str(value).strip()
            if text not in self.choices:
                raise ParameterError(
                    f"Parameter '{name}' must be one of {', '.join(self.choices)}; got {value!r}."
                )
            return text
        if self.kind == "int":
            return int(self._number(value, integer=True, low=self.low, high=self.high))
        return float(self._number(value, integer=False, low=self.low, high=self.high))

    def _number(self, value: Any, *, integer: bool, low: float | None, high: float | None) -> float:
        name = self.name
        if isinstance(value, bool):
            raise ParameterError(f"Parameter '{name}' must be a number; got {value!r}.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ParameterError(f"Parameter '{name}' must be a number; got {value!r}.") from None
        if math.isnan(number) or (math.isinf(number) and not (self.allow_inf and number > 0)):
            raise ParameterError(f"Parameter '{name}' must be finite; got {value!r}.")
        if integer and number != int(number):
            raise ParameterError(f"Parameter '{name}' must be an integer; got {value!r}.")
        if (low is not None and number < low) or (
            high is not None and number > high and not math.isinf(number)
        ):
            raise ParameterError(f"Parameter '{name}' must lie in [{low}, {high}]; got {value!r}.")
        return number

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "default": _jsonable(self.default),
            "low": self.low,
            "high": self.high,
            "choices": list(self.choices),
            "unit": self.unit,
            "help": self.help,
            "source": self.source,
        }


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ParameterError(f"Parameter '{name}' must be true or false; got {value!r}.")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return value


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


ProgressCallback = Callable[[dict[str, Any]], bool | None]


class AttackContext:
    """Services an attack function uses: the model, seeded noise, pass counting, progress.

    ``gradient`` is the one place gradients are taken, so pass counts are exact: one forward
    and one backward per call, whatever the batch size.
    """

    def __init__(self, model: torch.nn.Module, seed: int, progress: ProgressCallback | None) -> None:
        self.model = model
        self.device = next(iter(model.buffers())).device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.progress = progress
        self.forward_passes = 0
        self.backward_passes = 0
        self.history: list[dict[str, Any]] = []
        self.cancelled = False

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Forward pass without gradient (counted)."""
        self.forward_passes += 1
        with torch.no_grad():
            return self.model(x)

    def gradient(
        self, x: torch.Tensor, objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """∇ₓ of ``objective(logits, x).sum()``; returns ``(grad, objective (N,), logits)``.

        ``objective`` receives the logits and the differentiable input and returns per-image
        values to *maximise*. One counted forward and one counted backward.
        """
        xg = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(xg)
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

    def step(self, iteration: int, total: int, **metrics: float) -> bool:
        """Record one iteration; returns True when the attack must stop (cancelled)."""
        record = {"iteration": iteration, "total": total, **{k: _scalar(v) for k, v in metrics.items()}}
        self.history.append(record)
        if self.progress is not None and self.progress(record) is False:
            self.cancelled = True
        return self.cancelled


def _scalar(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().float().cpu().tolist() if value.numel() > 1 else float(value)
    return value


AttackFn = Callable[[AttackContext, torch.Tensor, torch.Tensor, dict[str, Any]], AttackOutput]


ConstraintKind = Literal["hard", "soft"]


@dataclass(frozen=True, kw_only=True)
class Constraint:
    """What an attack promises about its output, judged by :func:`run_attack` per image.

    ``distance`` names a value the template re-measures against the *original* image (a key of
    :attr:`AttackResult.constraints`: ``linf``, ``l2``, ``lp`` (order ``params['p']``), ``l0``,
    ``s1``, ``s2``, ``ssim``, or one the attack measures itself such as ``lpips_self``).
    ``relation`` says whether the distance must stay at or below (``"<="``) or at or above
    (``">="``, similarities such as S2) the limit. The limit is ``params[param]`` unless ``limit``
    computes it (e.g. ``1 − eps2²``). ``hard`` constraints decide success (fooled **and** within the
    bound, to ``tolerance``); ``soft`` ones (no budget, or a penalty that may end outside it) are
    reported but never turn a fooled image into a failure.
    """

    distance: str
    kind: ConstraintKind
    param: str | None = None
    relation: Literal["<=", ">="] = "<="
    tolerance: float = 1e-5
    limit: Callable[[Mapping[str, Any]], float] | None = field(default=None, compare=False)
    text: str = ""


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
            "bound": self.bound,
            "params": [p.as_dict() for p in self.params],
            "presets": {k: dict(v) for k, v in self.presets.items()},
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
    for preset in spec.presets.values():
        spec.validate(preset)
    _REGISTRY[spec.id] = spec
    return spec


def registry() -> dict[str, AttackSpec]:
    """All registered attacks by id (importing every attack module on first use)."""
    from percviz.attacks import load_all

    load_all()
    return dict(_REGISTRY)


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

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())


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
) -> AttackResult:
    """Run one registered attack on a batch ``x`` (``N×3×H×W`` in [0, 1]) — the template.

    ``labels`` default to the model's own predictions (untargeted attacks move away from what
    the model says, as in the seed papers). With ``params['target']`` set, success means the
    prediction equals the target class. The input tensor is never modified.
    """
    from percviz.attacks.checks import measure_constraints

    spec = get_attack(attack_id)
    values = spec.validate(params)
    validate_batch(x)
    ctx = AttackContext(model, seed, progress)
    x0 = x.detach().to(ctx.device, torch.float32).clone()
    start = time.perf_counter()
    if labels is None:
        labels = ctx.logits(x0).argmax(1)
    labels = labels.to(ctx.device)
    output = spec.fn(ctx, x0.clone(), labels, values)
    x_adv = output.x_adv.detach().clamp(0.0, 1.0)
    if not torch.isfinite(x_adv).all():
        raise RuntimeError(f"Attack '{attack_id}' produced non-finite values.")
    adv_labels = ctx.logits(x_adv).argmax(1)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    wall = time.perf_counter() - start
    target = values.get("target")
    success = adv_labels == target if target is not None else adv_labels != labels
    constraints = measure_constraints(x0, x_adv)
    constraints.update({k: v.detach().double().cpu().tolist() for k, v in output.constraints.items()})
    return AttackResult(
        attack_id=attack_id,
        params=values,
        seed=seed,
        x=x0.cpu(),
        x_adv=x_adv.cpu(),
        labels=labels.cpu(),
        adv_labels=adv_labels.cpu(),
        success=success.cpu(),
        history=ctx.history,
        forward_passes=ctx.forward_passes,
        backward_passes=ctx.backward_passes,
        wall_time=wall,
        constraints=constraints,
        info=output.info,
        cancelled=ctx.cancelled,
        device=str(ctx.device),
    )
