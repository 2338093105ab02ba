"""Explore: one image, one attack, every view (SPEC §6)."""

import streamlit as st

from percviz import figures
from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.evaluate import run_label
from percviz.hosted import check_params, current_limits
from percviz.recipes import Recipe
from ui import jobs, results, urlstate, views
from ui.common import (
    ADVERSARIAL,
    cached_predictions,
    image_input,
    model_choice,
    one_sentence,
    page_setup,
    prediction_chart,
    render_done,
)
from ui.params import apply_values, param_widgets, preset_buttons

P = "ex"
page_setup(
    "Explore", "One image, one attack, every view: tune the budget, run, and inspect what changed and why."
)

url_params = urlstate.load_once(P)
request = st.session_state.pop("pv_explore_request", None)  # from Learn's "Try it"
attacks = registry()
if request and request.get("attack") in attacks:
    st.session_state[f"{P}_attack"] = request["attack"]
elif st.session_state.get(f"{P}_attack") not in attacks:
    st.session_state[f"{P}_attack"] = "pgd" if "pgd" in attacks else next(iter(attacks))

with st.sidebar:
    st.header("Setup")
    model = model_choice(f"{P}_model")
    picked = image_input(model.input_size if model else 224, f"{P}_image") if model else None
    attack_id = st.selectbox(
        "Attack",
        list(attacks),
        format_func=lambda a: f"{attacks[a].title} · {attacks[a].family}",
        key=f"{P}_attack",
    )
    spec = attacks[attack_id]
    if request and request.get("attack") == attack_id:
        apply_values(P, spec, request.get("params", {}))
    elif url_params:
        apply_values(P, spec, url_params)
    st.caption(f"{spec.source}. Bound: {spec.bound or '—'}")
    preset_buttons(P, spec)
    with st.form(f"{P}_form", border=True):
        raw = param_widgets(P, spec)
        seed = st.number_input(
            "Seed", 0, 2**31 - 1, key=f"{P}_seed", help="Seeds the attack's own randomness."
        )
        submitted = st.form_submit_button(
            "Run attack", type="primary", width="stretch", icon=":material/bolt:"
        )

if model is None or picked is None:
    st.info("Choose a model and an image in the sidebar.")
    st.stop()

try:
    values = spec.validate(raw)
    check_params(values, current_limits())
except PercvizError as exc:
    values = None
    st.error(str(exc))

recipe = Recipe(
    model=model.spec.id,
    image=picked.ref,
    attack=attack_id,
    params=values or {},
    seed=int(seed),
    crop_fraction=picked.crop,
)
key = results.recipe_key(recipe)
if values is not None:
    urlstate.save(model.spec.id, picked.ref.sample, picked.crop, spec, values, int(seed))

if submitted and values is not None and not results.select(P, key):
    jobs.submit(
        P,
        results.attack_work(model, picked, recipe, key),
        f"{spec.title} on {picked.name}",
    )


def _stored(entry: results.Entry, meta: dict) -> str | None:
    results.store(P, entry)
    if entry.result.cancelled:
        return f"Cancelled after {len(entry.result.history)} iterations; showing the last iterate."
    return None


jobs.follow(P, _stored)
entry = results.current(P)

if entry is None:
    left, right = st.columns([1, 1.3], gap="large")
    left.image(picked.pixels, caption=f"{picked.name}: what the model sees", width="stretch")
    with right:
        st.plotly_chart(
            prediction_chart(cached_predictions(model, picked), f"{model.spec.title}: top-5"),
            key=f"{P}_preview_chart",
        )
        st.markdown(
            f"**{spec.title}** — {spec.summary}\n\nSet the parameters in the sidebar and press **Run attack**."
        )
    st.stop()

# ------------------------------------------------------------------ the current result
history = results.stored(P)
if len(history) > 1:
    labels = {
        k: f"{e.recipe.attack} on {e.image_name}, seed {e.recipe.seed} — {e.after[0].label}"
        for k, e in history.items()
    }
    chosen = st.selectbox(
        "Result",
        list(history)[::-1],
        index=list(history)[::-1].index(entry.key),
        format_func=lambda k: labels[k],
        key=f"{P}_history",
        help="Every result of this session is kept; pick one to show it again (nothing recomputes).",
    )
    if chosen != entry.key:
        results.select(P, chosen)
        entry = history[chosen]
if entry.key != key:
    st.caption(
        "Showing the last result; the settings in the sidebar differ — press **Run attack** to compute them."
    )

res = entry.result
ok = bool(res.success[0])
b0, a0 = entry.before[0], entry.after[0]
verdict = (
    f"<b>Fooled.</b> {b0.label} ({b0.probability:.0%}) → <b>{a0.label}</b> ({a0.probability:.0%})"
    if ok
    else f"<b>Not fooled.</b> The model still says {a0.label} ({a0.probability:.0%})"
)
st.markdown(
    f'<div class="pv-verdict {"pv-ok" if ok else "pv-no"}">{verdict} · {res.attack_id}, '
    f"{len(res.history)} iterations, {res.forward_passes} forward / {res.backward_passes} backward passes, "
    f"{res.wall_time:.2f} s on {res.device}</div>",
    unsafe_allow_html=True,
)
if ok and not entry.png_ok:
    st.warning(
        "8-bit quantisation undoes this attack: the saved PNG is classified as the original class again "
        "(use the float .npy to keep it adversarial)."
    )

arrays = entry.views["arrays"]
c1, c2, c3 = st.columns(3, gap="medium")
c1.image(entry.original, caption=f"original — {b0.label}", width="stretch")
c2.image(entry.adversarial, caption=f"adversarial — {a0.label}", width="stretch")
c3.image(
    arrays.perturbation, caption=f"perturbation × {arrays.perturbation_gain:g} (grey = 0)", width="stretch"
)
c1, c2 = st.columns(2, gap="large")
with c1:
    views.show((entry.short, "before"), lambda: prediction_chart(entry.before, "original: top-5", height=220))
with c2:
    views.show(
        (entry.short, "after"),
        lambda: prediction_chart(entry.after, "adversarial: top-5", color=ADVERSARIAL, height=220),
    )

m = entry.metrics
cols = st.columns(7)
cols[0].metric("SSIM", f"{m['ssim']:.4f}")
cols[1].metric("PSNR", f"{m['psnr']:.1f} dB")
cols[2].metric("L∞", f"{m['linf'] * 255:.2f}/255")
cols[3].metric("L2", f"{m['l2']:.3f}")
cols[4].metric("L0", f"{m['l0'] / (entry.original.shape[0] * entry.original.shape[1] * 3):.1%}")
cols[5].metric("S1 / S2", f"{m['s1']:.3f} / {m['s2']:.3f}")
cols[6].metric("8-bit PNG", "adversarial" if entry.png_ok else "not adversarial")

st.subheader("Views")
try:
    views.render(entry, P)
except Exception as exc:  # a view that fails must not take the computed result with it
    st.error(one_sentence(exc))

with st.expander("All metrics, constraints and diagnostics"):
    t1, t2 = st.columns(2)
    t1.dataframe({"metric": list(m), "value": [f"{v:.6g}" for v in m.values()]}, hide_index=True)
    t2.dataframe(
        {"constraint": list(res.constraints), "value": [f"{v[0]:.6g}" for v in res.constraints.values()]},
        hide_index=True,
    )
    if any(isinstance(h.get("loss"), int | float) for h in res.history):
        views.show((entry.short, "loss"), lambda: figures.history_figure(res.history))
    if res.info:
        st.json(entry.report.get("info", {}), expanded=False)

st.subheader("Downloads")
try:
    results.download_row(
        entry,
        views.figure_exporter(
            [
                (
                    arrays,
                    attacks[entry.recipe.attack].title,
                    run_label(entry.recipe.attack, entry.recipe.params, with_attack=False),
                )
            ]
        ),
    )
except Exception as exc:  # a download must never take the page down
    st.error(one_sentence(exc))

render_done("explore")
