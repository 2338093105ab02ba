"""Regression: attacks on image-to-image and embedding models, and the output-PSNR curve (Fig. 4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

from percviz import regression_eval as rev
from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.figures import image_figure, output_figure
from percviz.images import SAMPLES
from percviz.models.regression import Regressor, load_regressor, regressor_ids, regressor_spec
from percviz.regression_eval import DEFAULT_EPS
from percviz.workflows.regression import RegressionCurve, RegressionRun, curve_work, regression_work
from ui import jobs
from ui.common import formula_lines, image_input, one_sentence, page_setup
from ui.params import param_widgets, parse_values
from ui.presets import preset_buttons

page_setup(
    "Regression",
    "Attacks on regression models: find η with ‖η‖_p ≤ ε that maximises the output change "
    "‖f(x+η) − f(x)‖² of an autoencoder or a classifier's embedding (Balda, Behboodi, Mathar, "
    "“Perturbation Analysis of Learning Algorithms”, §III–IV and §VI-B).",
    icon="📉",
)

P = "reg"
ATTACKS = registry("regression")
NORMS = {"2": "L2 (whole image)", "inf": "L∞ (per value)", "1": "L1 (one value)"}


@st.cache_resource(show_spinner="Loading the model (the autoencoder trains once, in seconds)…")
def cached_regressor(model_id: str) -> Regressor:
    return load_regressor(model_id)


def describe(info: dict[str, Any]) -> str:
    """The attack's own diagnostics in a sentence (top singular vector, greedy blocks, columns)."""
    if "solver" in info:
        state = "converged" if info["converged"] else "not converged"
        name = "Lanczos" if info["solver"] == "lanczos" else "Power iteration (eq. 13)"
        return (
            f"{name}: {info['iterations']} iterations, σ₁² ≈ {info['rayleigh'][0]:.4g}, residual "
            f"‖JᵀJv − λv‖/λ = {info['residual'][0]:.2g} ({state} to {info['tolerance']:.0e})."
        )
    if "greedy_blocks" in info:
        return f"Sign rule: {info['method']}."
    if "ranking" in info:
        return (
            f"L1 rule {info['l1_rule']}, among {info['ranking']}: value {info['coordinate'][0]} "
            f"(room {info['room'][0]:.3g})."
        )
    return ""


models = regressor_ids()
c_model, c_attack = st.columns([1, 1])
with c_model:
    model_id = st.selectbox("Model", models, format_func=lambda m: regressor_spec(m).title, key="reg_model")
    try:
        model = cached_regressor(model_id)
    except PercvizError as exc:
        st.error(one_sentence(exc))
        st.stop()
    picked = image_input(model.input_size, key="reg_image")
with c_attack, st.container(border=True):
    attack = st.selectbox("Attack", list(ATTACKS), format_func=lambda a: ATTACKS[a].title, key="reg_attack")
    spec = ATTACKS[attack]
    raw = param_widgets(P, spec, only_used=True)  # a choice (the norm p) reruns: unused ones hide
    seed = int(st.number_input("Seed", 0, 10_000, 0, key="reg_seed"))
    st.latex(formula_lines(spec.formula_for(raw)))
    st.caption(f"{spec.summary} ({spec.source})")
    run_clicked = st.button(
        "Run", type="primary", icon=":material/play_arrow:", disabled=jobs.running(P), key="reg_run"
    )
with c_model:
    preset_buttons(P, spec)  # under the image picker, beside the form (not page-wide buttons)

if run_clicked and picked is not None:
    try:
        work = regression_work(model, picked.pixels, attack, spec.validate(raw), seed)
    except PercvizError as exc:
        st.error(one_sentence(exc))
    else:
        jobs.submit(P, work, f"{spec.title} on {picked.name}")


def _stored_run(run: RegressionRun, meta: dict) -> str | None:
    st.session_state["reg_last_run"] = run
    return "Cancelled: showing the last iterate." if run.cancelled else None


jobs.follow(P, _stored_run)
run: RegressionRun | None = st.session_state.get("reg_last_run")
if run is not None and run.model_id == model_id and picked is not None:
    m = run.metrics
    cols = st.columns(4)
    cols[0].metric("output PSNR", f"{m['output_psnr']:.2f} dB")
    cols[1].metric("output MSE", f"{m['output_mse']:.3g}")
    cols[2].metric("input PSNR", f"{m['psnr']:.2f} dB")
    cols[3].metric("input SSIM", f"{m.get('ssim', float('nan')):.4f}")
    cols5 = st.columns(5)
    cols5[0].metric("‖η‖₂", f"{m['l2']:.4g}")
    cols5[1].metric("‖η‖∞", f"{m['linf'] * 255:.2f}/255")
    cols5[2].metric(
        "budget used",
        f"{m['eta_norm_ratio']:.1%}",
        help="The realised ‖η‖_p over ε, in the attack's own norm, after clipping to [0, 1].",
    )
    cols5[3].metric("within bound", "yes" if run.within else "NO")
    cols5[4].metric("time", f"{run.wall:.2f} s")
    if model.spec.output == "image":
        diff = np.abs(run.out_adv - run.out)
        gain = float(min(50.0, 1.0 / max(float(diff.max()), 1e-6)))
        st.plotly_chart(
            image_figure(
                [
                    picked.pixels,
                    run.x_adv,
                    np.clip(run.out, 0, 1),
                    np.clip(run.out_adv, 0, 1),
                    np.clip(diff * gain, 0, 1),
                ],
                ["x", "x + η", "f(x)", "f(x + η)", f"|f(x) − f(x + η)| × {gain:.3g}"],
                height=300,
            ),
            width="stretch",
        )
    else:
        st.plotly_chart(image_figure([picked.pixels, run.x_adv], ["x", "x + η"], 300), width="stretch")
        st.plotly_chart(output_figure(run.out, run.out_adv), width="stretch")
    fwd, bwd = run.passes
    used = [q for q in ATTACKS[run.attack].params if q.used(run.params)]  # as the form showed them
    settings = ", ".join(
        f"{q.name} = {run.params[q.name]:g}"
        if isinstance(run.params[q.name], float)
        else f"{q.name} = {run.params[q.name]}"
        for q in used
    )
    st.caption(
        f"{ATTACKS[run.attack].title}, {settings}: {fwd} forward and {bwd} backward passes (JVPs count "
        f"as forward), {run.wall:.2f} s. {describe(run.info)}"
    )

st.subheader("Output PSNR against ε (Fig. 4)")
st.caption(
    "Mean output PSNR of f(x+η) against f(x) over the chosen photos, for quadratic-ℓp, linear-ℓp-10 and "
    "random-ℓp noise of the same budget (dashed) — the layout of Balda et al.'s Fig. 4."
)
CURVE = f"{P}_curve"
with st.form("reg_curve_form"):
    c1, c2, c3 = st.columns([2, 1, 2])
    names = c1.multiselect(
        "Photos", list(SAMPLES), default=["chelsea", "coffee", "rocket"], key="reg_curve_images"
    )
    curve_p = c2.radio("Norm", ["2", "inf"], format_func=NORMS.get, key="reg_curve_p")
    eps_text = c3.text_input("ε values (comma-separated; empty = default grid)", "", key="reg_curve_eps")
    go_curve = st.form_submit_button(
        "Compute the curve", icon=":material/show_chart:", disabled=jobs.running(CURVE)
    )
if go_curve:
    try:
        values = parse_values(eps_text) if eps_text.strip() else list(DEFAULT_EPS[curve_p])
        work_curve = curve_work(model, names, curve_p, values)
    except PercvizError as exc:
        st.error(one_sentence(exc))
    else:
        jobs.submit(CURVE, work_curve, f"Fig. 4 curve ({len(values)} ε values, {len(names)} photos)")


def _stored_curve(curve: RegressionCurve, meta: dict) -> str | None:
    if curve.rows:
        st.session_state["reg_curve"] = curve
        st.session_state.pop("reg_files", None)
    return f"Cancelled after {len(curve.rows)} points; showing those." if curve.cancelled else None


jobs.follow(CURVE, _stored_curve)
stored: RegressionCurve | None = st.session_state.get("reg_curve")
if stored is not None:
    against = st.radio(
        "Horizontal axis",
        list(rev.AGAINST),
        format_func=lambda a: {"realised": "realised ‖η‖_p", "nominal": "nominal ε (as Fig. 4)"}[a],
        horizontal=True,
        key="reg_fig4_against",
        help="Clipping to [0, 1] leaves some attacks below their budget ε (on the bundled photos "
        "quadratic-ℓ2 keeps 90 % of ε = 4, linear-ℓ2-10 94 %, random noise 99 %); against the "
        "realised norm the curves compare at equal perturbation.",
    )
    fig = rev.fig4_figure(
        stored.rows,
        title=f"Output PSNR against ε — {regressor_spec(stored.model_id).title}",
        against=against,
    )
    st.plotly_chart(fig, width="stretch", key="reg_fig4")
    if st.button("Prepare PDF and SVG", key="reg_export"):
        with st.spinner("Rendering…"):
            files = {fmt: rev.export_fig4(fig, fmt) for fmt in ("pdf", "svg")}
            st.session_state["reg_files"] = {**files, "against": against}
    prepared = st.session_state.get("reg_files")
    if prepared and prepared["against"] == against:  # the downloads are the chart on screen
        d1, d2 = st.columns(2)
        d1.download_button("Download PDF", prepared["pdf"], "fig4.pdf", "application/pdf", key="reg_pdf")
        d2.download_button("Download SVG", prepared["svg"], "fig4.svg", "image/svg+xml", key="reg_svg")
