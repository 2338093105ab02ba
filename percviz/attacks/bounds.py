"""What an attack promises about its output and how the run template judges it: a :class:`Constraint`
per bound (distance, against which parameter or limit, hard or soft, tolerance), :func:`judge` for one
constraint per image, and :func:`judge_bounds` for every constraint an attack declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

from percviz.attacks.schema import ParamValue
from percviz.jsonsafe import json_safe

if TYPE_CHECKING:
    from percviz.attacks.base import AttackSpec


ConstraintKind = Literal["hard", "soft"]
Measure = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, Mapping[str, Any]], torch.Tensor]


@dataclass(frozen=True, kw_only=True)
class Constraint:
    """What an attack promises about its output, judged by :func:`run_attack` per image.

    ``distance`` names a value measured against the *original* image after clipping: a key of
    :attr:`AttackResult.constraints` that the template always measures (``linf``, ``l2``, ``l0``
    in pixels, ``s1``, ``s2``, ``ssim``), or one that ``measure(model, x, x_adv, params) → (N,)``
    re-measures (``lp`` of order ``params['p']``, ``s2_scope``, ``lpips_self``…); the template
    stores that value under the name, replacing what the attack reported. ``{name}`` fields are
    filled from the parameters (``lpips_{distance_net}`` → ``lpips_alexnet``).

    ``relation`` says whether the distance must stay at or below (``"<="``) or at or above
    (``">="``, similarities such as S2) the limit: ``params[param]``, or ``limit(params)`` when
    given (e.g. ``1 − eps2²``; ``text`` then says so). No limit at all (``param`` and ``limit``
    both ``None``): the distance is only reported. Within means ``value ≤ limit + tol`` (``≥ limit
    − tol``) with ``tol = tolerance · max(1, |limit|)``.

    ``hard`` constraints decide success (fooled **and** within every hard bound); ``soft`` ones
    (no budget, or a penalty that may end outside it) are reported with their excess and flagged
    soft but never turn a fooled image into a failure. ``when`` restricts the constraint to runs
    whose parameters equal the given values (e.g. FPGAP's bound holds only with
    ``anchor=original``).
    """

    distance: str
    kind: ConstraintKind
    param: str | None = None
    relation: Literal["<=", ">="] = "<="
    tolerance: float = 1e-5
    limit: Callable[[Mapping[str, Any]], float] | None = field(default=None, compare=False)
    text: str = ""
    when: Mapping[str, ParamValue] = field(default_factory=dict)
    measure: Measure | None = field(default=None, compare=False)

    def applies(self, params: Mapping[str, Any]) -> bool:
        """Whether this constraint holds for a run with these (validated) parameters."""
        return all(params.get(k) == v for k, v in self.when.items())

    def key(self, params: Mapping[str, Any]) -> str:
        """The name the distance is reported under for these parameters."""
        return self.distance.format(**params) if "{" in self.distance else self.distance

    def bound(self, params: Mapping[str, Any]) -> float | None:
        """The limit for these parameters (``None``: report only)."""
        if self.limit is not None:
            return float(self.limit(params))
        if self.param is None or params.get(self.param) is None:
            return None
        return float(params[self.param])

    def as_dict(self) -> dict[str, Any]:
        return {
            "distance": self.distance,
            "kind": self.kind,
            "relation": self.relation,
            "param": self.param,
            "limit": self.param if self.limit is None else "computed (see text)",
            "tolerance": self.tolerance,
            "when": {k: json_safe(v) for k, v in self.when.items()},
            "text": self.text,
        }


def judge(constraint: Constraint, params: Mapping[str, Any], values: torch.Tensor) -> dict[str, Any]:
    """One constraint judged per image: ``values``, ``excess`` (≥ 0; 0 within) and ``within``."""
    limit = constraint.bound(params)
    v = values.detach().double().cpu()
    if limit is None:
        excess = torch.zeros_like(v)
        tol = 0.0
    else:
        tol = constraint.tolerance * max(1.0, abs(limit))
        excess = (v - limit if constraint.relation == "<=" else limit - v).clamp_min(0.0)
    within = (excess <= tol) & torch.isfinite(v)
    return {
        "distance": constraint.key(params),
        "kind": constraint.kind,
        "relation": constraint.relation,
        "limit": limit,
        "tolerance": tol,
        "text": constraint.text,
        "values": v.tolist(),
        "excess": excess.tolist(),
        "within": within.tolist(),
    }


class MeasureMemo:
    """Values an attack computed on exact pixels, for the template's re-measurement to reuse.

    The template re-measures every bound on the original and the returned image; where the
    attack already evaluated the same function on the very same pixels (its φ(x) at the start,
    φ of its final image), :func:`judge_bounds` looks the value up instead of running the network
    again. Lookups compare pixels exactly (``torch.equal``), so a reused value is the value the
    re-measurement would compute. Keeps the first entry of each kind (the original) and the
    ``keep − 1`` most recent others.
    """

    def __init__(self, keep: int = 3) -> None:
        self.keep = keep
        self._entries: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.hits = 0

    def put(self, kind: str, x: torch.Tensor, value: torch.Tensor) -> None:
        entries = self._entries.setdefault(kind, [])
        if len(entries) >= self.keep:
            del entries[1]
        entries.append((x.detach().clone(), value.detach()))

    def get(self, kind: str, x: torch.Tensor) -> torch.Tensor | None:
        for seen, value in reversed(self._entries.get(kind, [])):
            if seen.shape == x.shape and seen.device == x.device and torch.equal(seen, x):
                self.hits += 1
                return value
        return None


_MEMO: ContextVar[MeasureMemo | None] = ContextVar("percviz_measure_memo", default=None)


def current_memo() -> MeasureMemo | None:
    """The memo of the run being judged (None outside :func:`judge_bounds`)."""
    return _MEMO.get()


def judge_bounds(
    spec: AttackSpec,
    params: Mapping[str, Any],
    model: torch.nn.Module,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    constraints: dict[str, list[float]],
    memo: MeasureMemo | None = None,
) -> list[dict[str, Any]]:
    """Judge every applicable constraint of ``spec`` (see :class:`Constraint`), in order.

    Distances with a ``measure`` are re-measured here on ``x`` and the clipped ``x_adv`` and
    written into ``constraints`` (replacing the attack's own value); the others must already be
    there. A measure may reuse what the attack computed on the same pixels (``memo``,
    :class:`MeasureMemo`). Returns one :func:`judge` record per constraint.
    """
    out = []
    token = _MEMO.set(memo)
    try:
        for c in spec.constraints:
            if not c.applies(params):
                continue
            key = c.key(params)
            if c.measure is not None:
                with torch.no_grad():
                    measured = c.measure(model, x, x_adv, params)
                constraints[key] = measured.detach().double().cpu().tolist()
            if key not in constraints:
                raise RuntimeError(f"Attack '{spec.id}' declares constraint '{key}' but nothing measured it.")
            out.append(judge(c, params, torch.tensor(constraints[key], dtype=torch.float64)))
    finally:
        _MEMO.reset(token)
    return out
