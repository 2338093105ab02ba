"""Paper presets as buttons: one click sets an attack's widgets (and may run them); a preset this
server cannot run (its distance network's weights are missing) is disabled with the reason."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st

from percviz.attacks.base import AttackSpec
from ui.params import apply_values


def preset_unavailable(values: Mapping[str, Any]) -> str | None:
    """Why a preset cannot run on this server (its distance network's weights are missing), or None."""
    from percviz.models.zoo import ZOO_MODELS, model_status

    net = values.get("distance_net")
    if not isinstance(net, str) or net == "self" or net not in ZOO_MODELS:
        return None
    status = model_status(net)
    if status.available:
        return None
    return f"Needs the {status.spec.title} weights, which this server does not have."


def _pick_preset(
    prefix: str, spec: AttackSpec, values: dict[str, Any], on_pick: Callable[..., None] | None
) -> None:
    apply_values(prefix, spec, values)
    if on_pick is not None:
        on_pick(prefix)


def preset_buttons(prefix: str, spec: AttackSpec, on_pick: Callable[..., None] | None = None) -> None:
    """One button per paper preset plus "defaults" (outside the form); a click sets the widgets
    (and calls ``on_pick(prefix)``, e.g. to run them). A preset this server cannot run is disabled,
    with the reason as its tooltip."""
    st.caption("Presets (one click sets the parameters and runs them)" if on_pick else "Presets")
    items = [*spec.presets.items(), ("defaults", {})]
    for i, (name, values) in enumerate(items):
        reason = preset_unavailable(values)
        st.button(
            name,
            key=f"{prefix}_{spec.id}_preset_{i}",
            width="stretch",
            type="tertiary" if name == "defaults" else "secondary",
            on_click=_pick_preset,
            args=(prefix, spec, dict(values), on_pick),
            disabled=reason is not None,
            help=reason,
        )
