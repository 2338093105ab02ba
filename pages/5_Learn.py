"""Learn: every attack in a paragraph, its formula, its paper, and a one-click try."""

from collections.abc import Mapping
from typing import Any

import streamlit as st

from percviz.attacks.base import AttackSpec, registry
from percviz.attacks.caps import check_params
from percviz.errors import PercvizError
from percviz.limits import current_limits
from ui.common import formula_lines, page_setup
from ui.params import describe_params

page_setup(
    "Learn",
    "Every method in one paragraph, its update rule and its paper; “Try it” opens Explore with the "
    "preset and runs it.",
)

attacks = registry()
limits = current_limits()


def unavailable(spec: AttackSpec, values: Mapping[str, Any]) -> str | None:
    """Why a preset cannot run on this server (missing weights, a cap), or None."""
    try:
        check_params(spec, {**spec.defaults(), **values}, limits)
    except PercvizError as exc:
        return str(exc)
    return None


families: dict[str, list[str]] = {}
for attack_id, spec in attacks.items():
    families.setdefault(spec.family, []).append(attack_id)

query = (
    st.text_input(
        "Filter methods", placeholder="type to filter: pgd, ssim, lpips, smooth…", key="learn_filter"
    )
    .strip()
    .lower()
)
for family, ids in families.items():
    shown = [
        a
        for a in ids
        if not query or query in f"{a} {attacks[a].title} {attacks[a].summary} {family}".lower()
    ]
    if not shown:
        continue
    st.subheader(family.capitalize())
    for attack_id in shown:
        spec = attacks[attack_id]
        with st.container(border=True):
            st.markdown(f"#### {spec.title}  \n`{spec.id}` · {spec.source}")
            st.write(spec.summary)
            if spec.formula:
                st.latex(formula_lines(spec.formula))
            for name, variants in spec.formula_variants.items():
                for choice, text in variants.items():
                    if text != spec.formula:
                        st.caption(f"With {name} = {choice} (default {spec.param(name).default}):")
                        st.latex(formula_lines(text))
            if spec.bound:
                st.caption(f"Constraint: {spec.bound}")
            st.caption(
                "Try it on the Regression page (opens the attack)"
                if spec.task == "regression"
                else "Try it in Explore (opens the attack with these parameters and runs it)"
            )
            presets = [*spec.presets.items(), ("defaults", {})]
            cols = st.columns(min(len(presets), 3))
            for i, (name, values) in enumerate(presets):
                blocked = unavailable(spec, values)
                if cols[i % len(cols)].button(
                    name,
                    key=f"learn_{attack_id}_{i}",
                    width="stretch",
                    icon=":material/play_arrow:",
                    disabled=blocked is not None,
                    help=blocked,
                ):
                    if spec.task == "regression":  # regression attacks have their own page
                        st.session_state["reg_attack"] = attack_id
                        st.switch_page("pages/6_Regression.py")
                    st.session_state["pv_explore_request"] = {
                        "attack": attack_id,
                        "params": dict(values),
                        "run": True,
                    }
                    st.switch_page("pages/1_Explore.py")
            with st.expander("Parameters"):
                st.dataframe(describe_params(spec), hide_index=True, width="stretch")
if not attacks:
    st.info("No attacks are registered.")
