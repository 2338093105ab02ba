"""Shareable state in the URL (``st.query_params``): model, image sample, crop, attack, params, seed."""

from __future__ import annotations

import contextlib
import math
from typing import Any

import streamlit as st

from percviz.attacks.base import AttackSpec, registry
from percviz.images import SAMPLES
from percviz.models import all_model_status

PARAM_PREFIX = "p_"


def _encode(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.8g}"
    return str(value)


def load_once(prefix: str) -> dict[str, Any] | None:
    """On a session's first visit, the URL's model/image/attack/seed go into widget state.

    Returns the parameter values the URL names (validated later against the attack's schema), or
    None when the URL was already read in this session.
    """
    flag = f"pv_url_loaded_{prefix}"
    if st.session_state.get(flag):
        return None
    st.session_state[flag] = True
    q = st.query_params
    available = {s.spec.id for s in all_model_status() if s.available}
    if q.get("model") in available:
        st.session_state[f"{prefix}_model"] = q["model"]
    if q.get("image") in SAMPLES:
        st.session_state[f"{prefix}_image_source"] = "Bundled photo"
        st.session_state[f"{prefix}_image_sample"] = q["image"]
    if "crop" in q:
        try:
            crop = float(q["crop"])
            if 0.5 <= crop <= 1.0:
                st.session_state[f"{prefix}_image_crop"] = round(crop * 40) / 40
        except ValueError:
            pass
    if q.get("attack") in registry():
        st.session_state[f"{prefix}_attack"] = q["attack"]
    if "seed" in q:
        with contextlib.suppress(ValueError):
            st.session_state[f"{prefix}_seed"] = max(0, min(2**31 - 1, int(q["seed"])))
    params: dict[str, Any] = {}
    for name in q:
        if name.startswith(PARAM_PREFIX):
            raw = q[name]
            params[name[len(PARAM_PREFIX) :]] = None if raw == "none" else raw
    return params


def save(
    model: str, sample: str | None, crop: float, spec: AttackSpec, params: dict[str, Any], seed: int
) -> None:
    """Write the current choice to the URL (only when it changed)."""
    data = {"model": model, "attack": spec.id, "seed": str(seed)}
    if sample is not None:
        data["image"] = sample
    if crop != 1.0:
        data["crop"] = f"{crop:g}"
    for name, value in params.items():
        data[PARAM_PREFIX + name] = _encode(value)
    if dict(st.query_params) != data:
        st.query_params.from_dict(data)
