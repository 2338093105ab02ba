"""Evaluate: an image set → the dataset tables of Pochimireddy et al. 2021 (Tables I–III) and Zhang et al. 2020 (Table 1, P(D))."""

import json
import tempfile
from pathlib import Path

import streamlit as st

from percviz import evaluation as ev
from percviz import figures as pv_figures
from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.jsonsafe import json_safe
from percviz.limits import current_limits
from percviz.workflows import EvalOutcome, EvaluatePlan, evaluate_work, plan_evaluate
from ui import jobs, views
from ui.common import model_choice, page_setup, render_done
from ui.image_sets import image_set_input
from ui.models import transfer_section
from ui.params import attack_block

P = "evl"
page_setup(
    "Evaluate",
    "Run attacks over a set of images and read the dataset numbers: fooling rate, P_suc, mean distortion, "
    "SSIM/PSNR, explainability scores, matched-quality fooling rates and the operating characteristic P(D).",
)
attacks = registry("classification")
limits = current_limits()

with st.sidebar:
    st.header("Setup")
    model = model_choice(f"{P}_model")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key=f"{P}_seed")
    batch = st.number_input(
        "Batch (images per pass)", 1, limits.max_batch, min(8, limits.max_batch), key=f"{P}_batch"
    )
    explain = st.checkbox(
        "Explainability scores (GradCAM++, Pochimireddy et al. 2021 Table I)", True, key=f"{P}_explain"
    )
    match_on = st.checkbox(
        "Matched quality (Pochimireddy et al. 2021 Tables II–III)", False, key=f"{P}_match"
    )
    match: tuple[ev.QualityMetric, float] | None = None
    if match_on:
        metric: ev.QualityMetric = st.radio("Match", ["ssim", "psnr"], horizontal=True, key=f"{P}_metric")
        target = (
            st.slider("Target mean SSIM", 0.80, 0.999, 0.95, 0.001, format="%.3f", key=f"{P}_tssim")
            if metric == "ssim"
            else st.slider("Target mean PSNR (dB)", 25.0, 55.0, 40.0, 0.5, key=f"{P}_tpsnr")
        )
        match = (metric, float(target))
if model is None:
    st.info("Choose a model in the sidebar.")
    st.stop()

left, right = st.columns([1, 1], gap="large")
with left:
    st.markdown("##### Images")
    images, skipped = image_set_input(P, model.input_size, limits)
    image_notes = st.container()
with right:
    st.markdown("##### Attacks")
    chosen = st.multiselect(
        "Attacks",
        list(attacks),
        default=["fgsm", "pgd"],
        format_func=lambda a: attacks[a].title,
        key=f"{P}_attacks",
        label_visibility="collapsed",
    )
    blocks = {a: attack_block(P, attacks[a]) for a in chosen}
    plan: EvaluatePlan | None = None
    try:
        runs = [
            run for a, values in blocks.items() if values is not None for run in ev.make_runs([a], values)
        ]
        plan = plan_evaluate(images, runs, int(batch), match, skipped=skipped, limits=limits)
    except PercvizError as exc:
        st.error(str(exc))

with image_notes:
    used, unused = (plan.images, plan.skipped) if plan is not None else (images, skipped)
    if any(s.reason.startswith(("not read:", "not used:")) for s in unused):
        st.warning(f"Only {len(used)} of the images are used; the others are listed below with the reason.")
    st.caption(f"{len(used)} images ready" + (f"; {len(unused)} skipped" if unused else "") + ".")
    for s in unused:
        st.text(f"Skipped {s.name}: {s.reason}")  # user strings as plain text, never Markdown

ready = plan is not None and plan.images and plan.runs and all(v is not None for v in blocks.values())
go_eval = st.button(
    "Evaluate",
    type="primary",
    icon=":material/table_chart:",
    key=f"{P}_run",
    disabled=not ready or jobs.running(P),
)
if go_eval and plan is not None:
    jobs.submit(
        P,
        evaluate_work(model, plan, seed=int(seed), explain=explain),
        f"{len(plan.runs)} runs × {len(plan.images)} images",
    )
jobs.follow(
    P,
    lambda r, m: (
        st.session_state.__setitem__(f"pv_{P}_result", r)
        or ("Cancelled; the tables show the rows that finished." if r.evaluation.cancelled else None)
    ),
)

transfer_section(P, model, plan.images if plan else [], plan.runs if plan else [], int(seed), int(batch))

stored: EvalOutcome | None = st.session_state.get(f"pv_{P}_result")
if stored is None or not stored.evaluation.rows:
    st.caption(
        "Press **Evaluate**. Rows are computed in batches; cancelling keeps the rows already finished."
    )
    st.stop()
out: EvalOutcome = stored


def fmt(v, pct=False, digits=4):
    if v is None:
        return "—"
    return f"{v:.1%}" if pct else f"{v:.{digits}g}"


sums = out.summaries
label = {id(s): ev.run_label(s["attack"], s["params"]) for s in sums}
t1, t2, t3, t4, t5 = st.tabs(
    [
        "Attack summary",
        "Explainability (Table I)",
        "Matched quality (Tables II–III)",
        "P(D) (Zhang et al. 2020)",
        "Per image",
    ]
)
with t1:
    st.caption(
        "Pochimireddy et al. 2021 §V-A fooling rate; Zhang et al. 2020 Table 1: P_suc (successes over correctly classified images) "
        "and D̄, the mean L2 distortion of the successes ([0,1] units); passes and time per image."
    )
    st.dataframe(
        {
            "run": [label[id(s)] for s in sums],
            "images": [s["images"] for s in sums],
            "fooling rate": [fmt(s["fooling_rate"], True) for s in sums],
            "within bound": [fmt(s.get("within_bound_rate"), True) for s in sums],
            "P_suc": [fmt(s["p_suc"], True) for s in sums],
            "D̄ (L2, [0,1] units)": [fmt(s["mean_distortion"]) for s in sums],
            "mean SSIM": [fmt(s["mean_ssim"]) for s in sums],
            "mean PSNR (dB)": [fmt(s["mean_psnr"]) for s in sums],
            "LPIPS-self": [fmt(s["mean_lpips_self"]) for s in sums],
            "PNG still adversarial": [fmt(s["png_still_adversarial"], True) for s in sums],
            "passes": [fmt(s["mean_passes"]) for s in sums],
            "time/image (s)": [fmt(s["mean_wall_time_s"], digits=3) for s in sums],
        },
        hide_index=True,
        width="stretch",
    )
with t2:
    if not out.evaluation.explain_available:
        st.info("Explainability scores were not computed (switch them on in the sidebar).")
    else:
        st.caption(
            "Pochimireddy et al. 2021 Table I: noise map N = mean(1 − SSIM map) > 0.11 against the GradCAM++ region G > 0.75; "
            "dataset means over the images where each ratio is defined."
        )
        st.dataframe(
            {
                "run": [label[id(s)] for s in sums],
                **{n: [fmt(s.get(f"mean_{n}")) for s in sums] for n in ev.EXPLAIN_COLUMNS},
            },
            hide_index=True,
            width="stretch",
        )
with t3:
    if not out.matched:
        st.info(
            "Switch on “Matched quality” in the sidebar to compare fooling rates at one mean SSIM or PSNR."
        )
    else:
        st.dataframe(
            {
                "attack": [m["attack"] for m in out.matched],
                "strength": [
                    f"{m['param']} = {m['value']:.4g}" if "param" in m else "—" for m in out.matched
                ],
                "achieved": [fmt(m.get("achieved")) for m in out.matched],
                "fooling rate": [fmt(m.get("fooling_rate"), True) for m in out.matched],
                "note": [
                    m.get("note") or ("" if m.get("converged") else "not converged") for m in out.matched
                ],
            },
            hide_index=True,
            width="stretch",
        )
with t4:
    views.show(
        (id(out), "pd"),
        lambda: pv_figures.operating_characteristic_figure(
            [(label[id(s)], s.get("operating_characteristic") or {}) for s in sums]
        ),
    )
with t5:
    cols = [
        "image",
        "attack",
        "class_before",
        "class_after",
        "success",
        "fooled",
        "within_bound",
        "ssim",
        "psnr",
        "l2",
        "linf_255",
        "lpips_self",
        "png_still_adversarial",
        "passes",
        "wall_time_s",
    ]
    st.dataframe([{c: r.get(c) for c in cols} for r in out.evaluation.rows], hide_index=True, width="stretch")


def csv_bytes() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.csv"
        ev.write_csv(path, out.evaluation.rows)
        return path.read_bytes()


def json_bytes() -> str:
    data = {
        "summaries": sums,
        "matched": out.matched,
        "skipped": [s.as_dict() for s in out.skipped],
        "rows": out.evaluation.rows,
    }
    return json.dumps(json_safe(data), indent=2)


d1, d2, _ = st.columns(3)
d1.download_button(
    "Rows CSV",
    data=csv_bytes,
    file_name="percviz-evaluation.csv",
    mime="text/csv",
    on_click="ignore",
    icon=":material/download:",
    key=f"{P}_csv",
)
d2.download_button(
    "Summary JSON",
    data=json_bytes,
    file_name="percviz-evaluation.json",
    mime="application/json",
    on_click="ignore",
    icon=":material/download:",
    key=f"{P}_json",
)
render_done("evaluate")
