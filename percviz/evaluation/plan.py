"""What an evaluation runs: validated attack × parameter points, their keys and their labels."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from percviz.attacks.base import get_attack
from percviz.errors import ParameterError
from percviz.jsonsafe import json_safe


@dataclass(frozen=True)
class RunSpec:
    """One attack with fully validated parameters (one group of the summary)."""

    attack: str
    params: Mapping[str, Any]

    @property
    def key(self) -> str:
        """Canonical parameter string (sorted JSON; ``inf`` as a string)."""
        return params_key(self.params)

    @property
    def label(self) -> str:
        return f"{self.attack}({self.key})"


def params_key(params: Mapping[str, Any]) -> str:
    return json.dumps({k: json_safe(v) for k, v in sorted(params.items())}, sort_keys=True)


def make_runs(
    attacks: Sequence[str],
    params: Mapping[str, Any] | None = None,
    sweep: Mapping[str, Sequence[Any]] | None = None,
) -> list[RunSpec]:
    """Attack × swept-value runs, each validated against the registry schema.

    ``params`` and ``sweep`` names may be plain (``eps``: applied to every attack that has that
    parameter) or scoped (``pgd.eps``: that attack only). A name no selected attack accepts is an
    error listing the valid names. Several swept names give their Cartesian product.
    """
    params, sweep = dict(params or {}), dict(sweep or {})
    if not attacks:
        raise ParameterError("evaluate needs at least one --attack.")
    specs = [get_attack(a) for a in attacks]
    for name in [*params, *sweep]:
        attack, _, plain = name.rpartition(".")
        owners = [s for s in specs if (not attack or s.id == attack) and plain in s.param_names()]
        if not owners:
            valid = sorted({n for s in specs for n in s.param_names()})
            raise ParameterError(
                f"No selected attack has a parameter '{name}'; valid names: {', '.join(valid)}."
            )
    runs: list[RunSpec] = []
    for spec in specs:
        fixed = scoped_params(params, spec.id, spec.param_names())
        axes = scoped_params(sweep, spec.id, spec.param_names())
        combos: list[dict[str, Any]] = [{}]
        for name, values in axes.items():
            if not values:
                raise ParameterError(f"--sweep {name} needs at least one value.")
            combos = [{**c, name: v} for c in combos for v in values]
        for combo in combos:
            runs.append(RunSpec(spec.id, spec.validate({**fixed, **combo})))
    return runs


def scoped_params(values: Mapping[str, Any], attack: str, names: Sequence[str]) -> dict[str, Any]:
    """The entries of ``values`` that apply to ``attack``: plain names it has, and ``attack.name``."""
    plain = {k: v for k, v in values.items() if "." not in k and k in names}
    scoped = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(f"{attack}.")}
    return {**plain, **scoped}


def strength_param(attack: str) -> str:
    """The strength parameter ``attack`` declares in the registry (larger = stronger).

    Norm-bounded attacks use their budget, the SSIM-ball attacks ``eps2``, the perceptual attacks
    their ``bound``; minimum-distortion attacks (C&W, DeepFool, min-norm) have no budget and
    declare their confidence ``kappa`` or ``overshoot``.
    """
    name = get_attack(attack).strength
    if name is None:
        from percviz.attacks import registry

        known = [k for k, s in registry().items() if s.strength is not None]
        raise ParameterError(
            f"Attack '{attack}' has no strength parameter for matched quality (known: {', '.join(known)})."
        )
    return name


_LABEL_EXTRAS = ("eps1", "smooth_alpha", "target")


def run_label(attack: str, params: Mapping[str, Any], *, with_attack: bool = True) -> str:
    """A run in a few characters, for legends, table rows and figure captions: ``pgd ε=0.01569``.

    The attack id (left out with ``with_attack=False``, e.g. under a title that names the attack),
    then, in schema order, its strength parameter (:attr:`AttackSpec.strength`) and whichever of
    ε₁, the smoothing α and the target class the run sets, written with each parameter's
    :meth:`Param.display_symbol`: ``pgap ε₁=0, ε₂=0.01``.
    """
    from percviz.attacks import registry

    spec = registry().get(attack)
    schema = {p.name: p for p in spec.params} if spec is not None else {}
    strength = spec.strength if spec is not None else None
    parts = [
        f"{schema[name].display_symbol() if name in schema else name}={_value_text(value)}"
        for name, value in params.items()
        if value is not None and (name == strength or name in _LABEL_EXTRAS)
    ]
    text = ", ".join(parts)
    return f"{attack} {text}".strip() if with_attack else text


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return "∞" if math.isinf(value) else f"{value:.4g}"
    return str(value)
