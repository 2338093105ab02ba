"""The parameter schema of the attack registry: one :class:`Param` per parameter (kind, default, range,
unit, choices, paper symbol and reference), which validates a value and describes itself for the UI
sliders, the CLI's ``--param`` and the recipes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from percviz.errors import ParameterError
from percviz.jsonsafe import json_safe

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
    symbol: str = ""
    used_when: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """``((name, values), …)``: the parameter matters only when each named parameter takes one of
    its values (quadratic-ℓp's ``candidates`` only for p = 1 or ∞); forms hide it otherwise."""

    def used(self, values: Mapping[str, Any]) -> bool:
        """Whether this parameter matters for a run with ``values`` (see :attr:`used_when`)."""
        return all(str(values.get(name)) in allowed for name, allowed in self.used_when)

    def display_label(self) -> str:
        return self.label or self.name

    def display_symbol(self) -> str:
        """How legends and run labels write the name (``ε``, ``κ``…; the name when none is set)."""
        return self.symbol or self.name

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
            "default": json_safe(self.default),
            "low": self.low,
            "high": self.high,
            "choices": list(self.choices),
            "unit": self.unit,
            "help": self.help,
            "source": self.source,
            "label": self.display_label(),
            "symbol": self.display_symbol(),
            "log": self.log,
            "used_when": {name: list(allowed) for name, allowed in self.used_when},
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
