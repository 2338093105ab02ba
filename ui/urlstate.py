"""Shareable state in the URL (``st.query_params``): model, image sample, crop, attack, params, seed,
and the open view tab (``view=gradcam``; ``ui.views`` keeps it up to date as tabs switch).

``run=1`` says the link shows a result: opening it runs that recipe again (results are seeded, so
the same numbers come back). Values a link carries that cannot be used are named, never dropped
silently.
"""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

from percviz.attacks.base import AttackSpec, registry
from percviz.images import SAMPLES
from percviz.models import all_model_status
from percviz.recipes import ImageRef
from ui.views import VIEW_PARAM, VIEWS, choose, view_id

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
    if not q:
        return None
    notes: list[str] = []
    available = {s.spec.id for s in all_model_status() if s.available}
    if "model" in q:
        if q["model"] in available:
            st.session_state[f"{prefix}_model"] = q["model"]
        else:
            notes.append(f"model “{q['model']}” is not available here")
    if "own_model" in q:
        notes.append("the link was made with an own model, which links do not carry: choose it again")
    if q.get("image") in SAMPLES:
        st.session_state[f"{prefix}_image_source"] = "Bundled photo"
        st.session_state[f"{prefix}_image_sample"] = q["image"]
    elif "image" in q:
        notes.append(f"image “{q['image']}” is not a bundled photo")
    if "upload" in q:
        notes.append("the link was made with an uploaded image, which links do not carry: upload it again")
        st.session_state[f"{prefix}_image_source"] = "Upload"
    if "crop" in q:
        try:
            crop = float(q["crop"])
            if not 0.5 <= crop <= 1.0:
                raise ValueError(crop)
            st.session_state[f"{prefix}_image_crop"] = round(crop * 40) / 40
        except ValueError:
            notes.append(f"crop “{q['crop']}” (must be 0.5–1)")
    if q.get("attack") in registry("classification"):
        st.session_state[f"{prefix}_attack"] = q["attack"]
    elif "attack" in q:
        notes.append(f"attack “{q['attack']}” is unknown")
    if VIEW_PARAM in q:
        view = view_id(q[VIEW_PARAM])
        if view is not None:
            choose(prefix, view)
        else:
            notes.append(f"view “{q[VIEW_PARAM]}” is unknown (one of {', '.join(VIEWS)})")
    if "seed" in q:
        try:
            seed = int(q["seed"])
            if not 0 <= seed < 2**31:
                raise ValueError(seed)
            st.session_state[f"{prefix}_seed"] = seed
        except ValueError:
            notes.append(f"seed “{q['seed']}” (must be an integer 0 – 2³¹−1)")
    st.session_state[f"pv_url_notes_{prefix}"] = (
        ["Part of the link could not be used and was ignored: " + "; ".join(notes) + "."] if notes else []
    )
    if q.get("run") == "1" and "upload" not in q:
        st.session_state[f"pv_run_request_{prefix}"] = True
    params: dict[str, Any] = {}
    for name in q:
        if name.startswith(PARAM_PREFIX):
            raw = q[name]
            params[name[len(PARAM_PREFIX) :]] = None if raw == "none" else raw
    return params


def notes(prefix: str) -> list[str]:
    """What the link of this session's first visit carried that could not be used."""
    return list(st.session_state.get(f"pv_url_notes_{prefix}", []))


def save(
    model: str,
    image: ImageRef,
    crop: float,
    spec: AttackSpec,
    params: dict[str, Any],
    seed: int,
    shown: Any = None,
    view: str | None = None,
) -> None:
    """Write the current choice to the URL (only when it changed); ``run=1`` when the result on
    screen (``shown``, an Explore entry) is of exactly these settings; ``view`` the open view tab's
    id (None for the first)."""
    own = model.startswith(("file:", "hf:")) or "@" in model  # a file of this machine: links never carry it
    data = {"own_model": "1"} if own else {"model": model}
    data.update({"attack": spec.id, "seed": str(seed)})
    if image.sample is not None:
        data["image"] = image.sample
    else:
        data["upload"] = "1"
    if crop != 1.0:
        data["crop"] = f"{crop:g}"
    for name, value in params.items():
        data[PARAM_PREFIX + name] = _encode(value)
    recipe = getattr(shown, "recipe", None)
    if (
        recipe is not None
        and not shown.result.cancelled
        and (recipe.attack, recipe.model, recipe.seed, recipe.image, recipe.crop_fraction)
        == (spec.id, model, seed, image, crop)
        and dict(recipe.params) == dict(params)
    ):
        data["run"] = "1"
    if view is not None:
        data[VIEW_PARAM] = view
    if dict(st.query_params) != data:
        st.query_params.from_dict(data)
