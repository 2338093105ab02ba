"""Learn: every attack in a paragraph, its formula, its paper, and a one-click try (SPEC §6)."""

import streamlit as st

from percviz.attacks.base import registry
from ui.common import page_setup
from ui.params import describe_params

page_setup(
    "Learn",
    "Every method in one paragraph, its update rule and its paper; “Try it” opens Explore with the preset.",
)

attacks = registry()
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
            left, right = st.columns([3, 1.1], gap="medium")
            with left:
                st.markdown(f"#### {spec.title}  \n`{spec.id}` · {spec.source}")
                st.write(spec.summary)
                if spec.formula:
                    st.latex(spec.formula)
                if spec.bound:
                    st.caption(f"Constraint: {spec.bound}")
                with st.expander("Parameters"):
                    st.dataframe(describe_params(spec), hide_index=True, width="stretch")
            with right:
                st.caption("Try it in Explore")
                for i, (name, values) in enumerate([*spec.presets.items(), ("defaults", {})]):
                    if st.button(
                        name, key=f"learn_{attack_id}_{i}", width="stretch", icon=":material/play_arrow:"
                    ):
                        st.session_state["pv_explore_request"] = {"attack": attack_id, "params": dict(values)}
                        st.switch_page("pages/1_Explore.py")
if not attacks:
    st.info("No attacks are registered.")
