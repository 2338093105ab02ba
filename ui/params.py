"""Attack parameter widgets generated from the registry schema (``AttackSpec.params``).

Widget values live in ``st.session_state`` under ``{prefix}_{attack}_{param}`` so presets and the
URL can set them before the widgets are drawn (no widget gets both a default and a state value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import streamlit as st

from percviz.attacks.base import AttackSpec
from percviz.attacks.schema import Param
from percviz.errors import ParameterError, PercvizError
from percviz.models.classifier import imagenet_labels

T = TypeVar("T")


@st.cache_data(show_spinner=False)
def class_labels() -> list[str]:
    return imagenet_labels()


UNTARGETED = -1  # the "no class" option of class parameters (None would show as an empty select box)


def widget_key(prefix: str, spec: AttackSpec, param: Param) -> str:
    return f"{prefix}_{spec.id}_{param.name}"


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if math.isinf(value):
        return "∞"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def _log_grid(low: float, high: float, value: float) -> list[float]:
    """1-2-5 grid between the bounds (log parameters), with the current value included."""
    lo = max(low, 1e-8) if low is not None else 1e-6
    hi = high if high is not None and math.isfinite(high) else lo * 1e6
    grid = {float(m * 10.0**e) for e in range(-9, 7) for m in (1, 2, 5)}
    options = sorted(v for v in grid if lo <= v <= hi)
    if low == 0:
        options.insert(0, 0.0)
    if value not in options:
        options = sorted({*options, float(value)})
    return options


def _finite(value: Any) -> float | None:
    """``value`` as a finite, non-zero float, else None (∞ defaults such as GNM's ``p`` have no scale)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = abs(float(value))
    return number if math.isfinite(number) and number > 0 else None


def _float_step(p: Param) -> float:
    """Number-input step: a tenth of the default's decade (its range, or 1, when the default is 0 or ∞)."""
    span = _finite(p.high - p.low) if p.low is not None and p.high is not None else None
    ref = _finite(p.default) or span or 1.0
    return float(10.0 ** math.floor(math.log10(ref)) / (10 if ref < 1 else 1))


def _decimals(value: float, most: int = 6) -> int:
    """Fewest decimals that write ``value`` exactly (at most ``most``): 0.997 → 3."""
    for digits in range(most + 1):
        if abs(round(value, digits) - value) < 1e-12:
            return digits
    return most


LOG_NAMES = frozenset({"kappa", "c", "lam"})  # spans of several decades: a log-scale slider


def _is_log(p: Param) -> bool:
    return p.kind == "float" and (p.log or p.name in LOG_NAMES)


def choice_label(p: Param, value: Any) -> str:
    """How a choice reads in the form: the registry's label for it, else a plain-words default."""
    labels = getattr(p, "choice_labels", None) or {}
    if isinstance(labels, tuple | list):
        labels = dict(zip(p.choices, labels, strict=False))
    return str(labels.get(value) or CHOICE_WORDS.get(str(value)) or value)


CHOICE_WORDS = {
    "ce": "cross-entropy",
    "cw": "C&W margin (clipped at κ)",
    "inf": "L∞",
    "1": "L1",
    "2": "L2",
    "moving": "moving (previous iterate)",
    "original": "original image",
    "image": "whole image",
    "channel": "each channel",
    "exact": "exact (fast)",
    "cvxpy": "cvxpy (reference)",
    "bisection": "bisection",
    "newton": "Newton",
    "self": "the classifier itself",
    "alexnet": "AlexNet",
    "vgg16": "VGG-16",
    "resnet50": "ResNet-50",
    "tanh": "tanh (change of variables)",
    "sigmoid": "sigmoid (change of variables)",
    "clip": "clipping",
}


def param_label(p: Param) -> str:
    """The widget label with its unit: ``random_start`` → "random start"."""
    label = p.display_label()
    return label.replace("_", " ") if label == p.name else label


def _slider_range(p: Param) -> tuple[float, float] | None:
    """``(low, high)`` of a slider when the whole range is useful (the default is a sizeable share
    of it), else None (a number box or a log-spaced select slider)."""
    if p.low is None or p.high is None or not math.isfinite(p.high) or _is_log(p):
        return None
    span = p.high - p.low
    default = abs(float(p.default or 0))
    useful = span > 0 and (
        span <= 20 if p.kind == "int" else default >= span / 25 or (span <= 1.0 and default == 0)
    )
    return (p.low, p.high) if useful else None


def _choice_format(p: Param) -> Callable[[str], str]:
    return lambda v: choice_label(p, v)


def _class_format(labels: Sequence[str]) -> Callable[[int], str]:
    return lambda i: "none (untargeted)" if i == UNTARGETED else f"{i}: {labels[i]}"


def _help(p: Param) -> str:
    parts = [p.help] if p.help else []
    if p.unit:
        parts.append(f"Unit: {p.unit}.")
    if p.low is not None or p.high is not None:
        parts.append(
            f"Range: [{_fmt(p.low) if p.low is not None else '−∞'}, {_fmt(p.high) if p.high is not None else '∞'}]."
        )
    if p.source:
        parts.append(f"Source: {p.source}.")
    return " ".join(parts)


def ensure_state(
    prefix: str, spec: AttackSpec, values: Mapping[str, Any] | None = None, *, force: bool = False
) -> None:
    """Put values (or defaults) into session state for every parameter widget of ``spec``."""
    values = values or {}
    for p in spec.params:
        key = widget_key(prefix, spec, p)
        if not force and key in st.session_state and p.name not in values:
            continue
        value = values.get(p.name, p.default)
        try:
            value = p.validate(value)
        except ParameterError:
            value = p.default
        if p.kind == "float" and value is not None:
            value = float(value)
        if p.kind == "class" and value is None:
            value = UNTARGETED
        st.session_state[key] = value
        if p.allow_inf:
            st.session_state[key + "_inf"] = value is not None and math.isinf(float(value))
            if st.session_state[key + "_inf"]:
                st.session_state[key] = float(p.high if p.high is not None and math.isfinite(p.high) else 1.0)


def param_widgets(prefix: str, spec: AttackSpec, *, only_used: bool = False) -> dict[str, Any]:
    """Draw one widget per parameter (call inside a form); returns the raw values by name.

    Each widget also gets its current state as its default: a browser that re-creates a widget
    shows (and later sends) that default, so it must never be the range's minimum. ``only_used``
    (outside a form, where a choice reruns the page) hides the parameters that the current
    choices make irrelevant (:meth:`Param.used`); they keep their defaults.
    """
    ensure_state(prefix, spec)
    out: dict[str, Any] = {}
    state = {p.name: st.session_state.get(widget_key(prefix, spec, p)) for p in spec.params}
    for p in spec.params:
        if only_used and not p.used(state):
            continue
        key = widget_key(prefix, spec, p)
        label, help_text = param_label(p), _help(p)
        current = st.session_state.get(key)
        if p.kind == "bool":
            out[p.name] = st.checkbox(label, value=bool(current), key=key, help=help_text)
        elif p.kind == "choice":
            choices: list[str] = list(p.choices)
            out[p.name] = st.selectbox(
                label,
                choices,
                index=choices.index(current) if current in choices else 0,
                key=key,
                help=help_text,
                format_func=_choice_format(p),
            )
        elif p.kind == "class":
            labels = class_labels()
            if current is None or current not in range(-1, len(labels)):
                st.session_state[key] = current = UNTARGETED
            options: list[int] = [UNTARGETED, *range(len(labels))]
            chosen = st.selectbox(
                label,
                options,
                index=int(current) + 1,
                key=key,
                help=help_text,
                format_func=_class_format(labels),
            )
            out[p.name] = None if chosen == UNTARGETED else chosen
        elif p.kind == "int":
            current = int(current if current is not None else p.default or 0)  # ensure_state set it
            int_range = _slider_range(p)
            if int_range is not None:
                low, high = int_range
                out[p.name] = st.slider(label, int(low), int(high), current, step=1, key=key, help=help_text)
            else:
                out[p.name] = st.number_input(
                    label,
                    min_value=int(p.low) if p.low is not None else None,
                    max_value=int(p.high) if p.high is not None and math.isfinite(p.high) else None,
                    value=current,
                    step=1,
                    key=key,
                    help=help_text,
                )
        else:
            out[p.name] = _float_widget(p, key, label, help_text)
    return out


def _float_widget(p: Param, key: str, label: str, help_text: str) -> float:
    if p.allow_inf and st.checkbox(
        f"{label} = ∞", value=bool(st.session_state.get(key + "_inf")), key=key + "_inf"
    ):
        return math.inf
    if _is_log(p):
        options = _log_grid(
            p.low or 0.0, p.high if p.high is not None else math.inf, float(st.session_state[key])
        )
        if st.session_state[key] not in options:
            st.session_state[key] = min(options, key=lambda v: abs(v - st.session_state[key]))
        return float(
            st.select_slider(
                label,
                options=options,
                value=st.session_state[key],
                key=key,
                help=help_text,
                format_func=_fmt,
            )
        )
    float_range = _slider_range(p)
    if float_range is not None:
        low, high = float_range
        digits = slider_decimals(p)
        step = 10.0**-digits
        value = float(np.clip(st.session_state[key], low, high))
        st.session_state[key] = float(np.clip(round(round(value / step) * step, digits), low, high))
        return float(
            st.slider(
                label,
                float(low),
                float(high),
                float(st.session_state[key]),
                step=step,
                format=f"%.{digits}f",
                key=key,
                help=help_text,
            )
        )
    step = _float_step(p)
    digits = max(0, -math.floor(math.log10(step))) + 1
    return float(
        st.number_input(
            label,
            min_value=float(p.low) if p.low is not None else None,
            max_value=float(p.high) if p.high is not None and math.isfinite(p.high) else None,
            value=float(st.session_state[key]),
            step=step,
            format=f"%.{min(digits, 8)}f",
            key=key,
            help=help_text + _pixel_hint(p, float(st.session_state[key])),
        )
    )


def slider_decimals(p: Param) -> int:
    """Decimals of a float slider: a hundredth of the range, finer if the default needs it (α 0.997 → 3)."""
    span = float((p.high or 0.0) - (p.low or 0.0))
    coarse = max(0, -math.floor(math.log10(span / 100)))
    default = _finite(p.default)
    return min(6, max(coarse, _decimals(default) if default is not None else 0))


def _pixel_hint(p: Param, value: float) -> str:
    if "pixel" in p.unit and p.name in ("eps", "step_size") and value > 0:
        return f" Now {value:.5f} ≈ {value * 255:.2f}/255."
    return ""


def apply_values(prefix: str, spec: AttackSpec, values: Mapping[str, Any]) -> list[str]:
    """Set widget state from a preset, the URL or a recipe (unknown names are ignored).

    Returns one phrase per value that was not used, quoting it: refused ones ("eps=abc ignored:
    not a number") were replaced by the default; unknown names are called unknown.
    """
    known = {k: v for k, v in values.items() if k in spec.param_names()}
    ignored = [
        f"{k}={v} ignored: {spec.id} has no parameter “{k}”" for k, v in values.items() if k not in known
    ]
    for p in spec.params:
        if p.name in known:
            try:
                p.validate(known[p.name])
            except ParameterError as exc:
                ignored.append(f"{p.name}={known[p.name]} ignored: {_reason(exc)}")
    ensure_state(prefix, spec, {**spec.defaults(), **known}, force=True)
    remember(prefix, form_keys(prefix, spec))
    return ignored


def _reason(exc: ParameterError) -> str:
    """ "Parameter 'eps' must be a number; got 'abc'." → "not a number" (the rule, without the echo)."""
    text = str(exc).split("; got", 1)[0]
    text = re.sub(r"^Parameter '[^']*' ", "", text).rstrip(".")
    return "not a number" if text == "must be a number" else text


def form_keys(prefix: str, spec: AttackSpec) -> list[str]:
    """The session-state keys of ``spec``'s parameter widgets (and their "= ∞" boxes)."""
    keys = []
    for p in spec.params:
        keys.append(widget_key(prefix, spec, p))
        if p.allow_inf:
            keys.append(widget_key(prefix, spec, p) + "_inf")
    return keys


def _pinned(prefix: str) -> dict[str, Any]:
    return st.session_state.setdefault(f"pv_pinned_{prefix}", {})


def remember(prefix: str, keys: list[str]) -> None:
    """Pin the current value of each widget key: :func:`recall` puts it back on every rerun.

    A form's widgets show what was last submitted, set by a preset or loaded from a recipe, never
    what a rerun, a page switch or a half-initialised browser widget happened to send.
    """
    pinned = _pinned(prefix)
    for key in keys:
        if key in st.session_state:
            pinned[key] = st.session_state[key]


def recall(prefix: str, keys: list[str]) -> None:
    """Write the pinned values of ``keys`` into widget state (call before the widgets are drawn)."""
    pinned = _pinned(prefix)
    for key in keys:
        if key in pinned:
            st.session_state[key] = pinned[key]


def describe_params(spec: AttackSpec) -> dict[str, list[str]]:
    """The schema as a table: name, label, default, range, unit, meaning."""
    rows: dict[str, list[str]] = {"name": [], "default": [], "range / choices": [], "meaning": []}
    for p in spec.params:
        rows["name"].append(p.name)
        default = p.default
        rows["default"].append(
            "none" if default is None else _fmt(default) if isinstance(default, float) else str(default)
        )
        if p.kind == "choice":
            rng = ", ".join(p.choices)
        elif p.kind == "class":
            rng = "ImageNet class 0–999 or none"
        elif p.kind == "bool":
            rng = "true / false"
        else:
            rng = f"[{_fmt(p.low) if p.low is not None else '−∞'}, {_fmt(p.high) if p.high is not None else '∞'}]"
        rows["range / choices"].append(rng)
        rows["meaning"].append(" ".join(x for x in (p.help, f"({p.unit})" if p.unit else "") if x))
    return rows


def _apply_preset(prefix: str, spec: AttackSpec) -> None:
    name = st.session_state.get(f"{prefix}_{spec.id}_preset", "defaults")
    apply_values(prefix, spec, dict(spec.presets.get(name, {})))


def attack_block(prefix: str, spec: AttackSpec, expanded: bool = False) -> dict[str, Any] | None:
    """An expander with a preset picker and the generated widgets; validated values or None."""
    with st.expander(f"{spec.title} — parameters", expanded=expanded):
        st.caption(spec.source)
        if spec.presets:
            st.selectbox(
                "Preset",
                ["defaults", *spec.presets],
                key=f"{prefix}_{spec.id}_preset",
                on_change=_apply_preset,
                args=(prefix, spec),
            )
        raw = param_widgets(prefix, spec)
    try:
        return spec.validate(raw)
    except ParameterError as exc:
        st.error(str(exc))
        return None


def parse_values(text: str, limit: int = 64) -> list[float]:
    """``"0, 0.01, 2/255"`` → floats (fractions allowed); ParameterError naming the bad token."""
    values: list[float] = []
    for token in text.replace(";", ",").replace(" ", ",").split(","):
        token = token.strip()
        if not token:
            continue
        try:
            if "/" in token:
                num, den = token.split("/", 1)
                value = float(num) / float(den)
            else:
                value = float(token)
        except (ValueError, ZeroDivisionError):
            raise ParameterError(f"'{token}' is not a number (write 0.01 or 4/255).") from None
        if not math.isfinite(value):
            raise ParameterError(f"'{token}' is not a finite number.")
        values.append(value)
    if not values:
        raise ParameterError("Give at least one value.")
    if len(values) > limit:
        raise ParameterError(f"At most {limit} values; got {len(values)}.")
    return values


def numeric_params(spec: AttackSpec) -> list[str]:
    return [p.name for p in spec.params if p.kind in ("float", "int")]


def around_default(p: Param) -> str:
    """Three values around a parameter's default (half, default, double), inside its range."""
    d = float(p.default) if isinstance(p.default, int | float) and p.default else (p.high or 1.0) / 10
    values = [d / 2, d, d * 2]
    if p.low is not None:
        values = [max(v, p.low) for v in values]
    if p.high is not None and math.isfinite(p.high):
        values = [min(v, p.high) for v in values]
    if p.kind == "int":
        return ", ".join(str(v) for v in dict.fromkeys(max(1, round(v)) for v in values))
    return ", ".join(_fmt(v) for v in dict.fromkeys(values))


def run_button(label: str, key: str, icon: str, plan: Callable[[], T], *, ready: bool = True) -> T | None:
    """Check a planned run, then draw its primary button.

    ``plan`` validates the inputs and returns what the run needs; a PercvizError it raises is shown
    as one error line and disables the button, as does ``ready=False`` (inputs missing, a run in
    progress). Returns the plan when the button was pressed, else None.
    """
    try:
        planned: T | None = plan()
    except PercvizError as exc:
        planned = None
        st.error(str(exc))
    pressed = st.button(label, type="primary", key=key, icon=icon, disabled=planned is None or not ready)
    return planned if pressed else None
