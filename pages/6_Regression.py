"""Regression: attacks on image-to-image and embedding models, and the output-PSNR curve (Fig. 4)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
import torch

from percviz import regression_eval as rev
from percviz.attacks.base import registry
from percviz.attacks.regression_run import run_regression_attack
from percviz.cli_regression import DEFAULT_EPS
from percviz.errors import PercvizError
from percviz.figures import image_figure, output_figure
from percviz.images import SAMPLES, fit_to_model, load_sample, to_tensor
from percviz.models.regression import Regressor, load_regressor, regressor_ids, regressor_spec
from ui.common import image_input, one_sentence, page_setup

page_setup(
    "Regression",
    "Attacks on regression models: find η with ‖η‖_p ≤ ε that maximises the output change "
    "‖f(x+η) − f(x)‖² of an autoencoder or a classifier's embedding (Balda, Behboodi, Mathar, "
    "“Perturbation Analysis of Learning Algorithms”, §III–IV and §VI-B).",
    icon="📉",
)

ATTACKS = list(registry("regression"))
NORMS = {"2": "L2 (whole image)", "inf": "L∞ (per value)", "1": "L1 (one value)"}


@st.cache_resource(show_spinner="Loading the model (the autoencoder trains once, in seconds)…")
def cached_regressor(model_id: str) -> Regressor:
    return load_regressor(model_id)


@st.cache_data(show_spinner=False, max_entries=32)
def attack_once(
    model_id: str, pixels: np.ndarray, attack: str, params: dict[str, Any], seed: int
) -> dict[str, Any]:
    """One run on one image, as CPU arrays and plain numbers (cached per inputs)."""
    model = cached_regressor(model_id)
    result = run_regression_attack(attack, model, to_tensor(pixels, model.device), params, seed=seed)
    return {
        "x_adv": result.x_adv[0].permute(1, 2, 0).numpy(),
        "out": rev.output_array(result.output),
        "out_adv": rev.output_array(result.output_adv),
        "metrics": result.metrics[0],
        "within": bool(result.within_bound[0]),
        "info": {k: v for k, v in result.info.items() if not isinstance(v, list) or len(v) <= 3},
        "passes": (result.forward_passes, result.backward_passes),
        "wall": result.wall_time,
    }


@st.cache_data(show_spinner=False, max_entries=8)
def curve_rows(
    model_id: str, names: tuple[str, ...], p: str, eps: tuple[float, ...], seed: int
) -> list[dict[str, Any]]:
    model = cached_regressor(model_id)
    size = model.input_size
    x = torch.cat([to_tensor(fit_to_model(load_sample(n).pixels, size), model.device) for n in names])
    return rev.output_psnr_curve(model, x, rev.default_runs(p), list(eps), seed=seed)


def describe(info: dict[str, Any]) -> str:
    """The attack's own diagnostics in a sentence (power iteration, greedy blocks, columns)."""
    if "power_iterations" in info:
        state = "converged" if info["converged"] else "not yet converged"
        return (
            f"Power iteration: {info['power_iterations']} steps, Rayleigh quotient σ² = {info['rayleigh'][0]:.4g}, "
            f"residual {info['residual'][0]:.2g} ({state} to {info['tolerance']:g})."
        )
    if "greedy_blocks" in info:
        return f"Greedy sign rule in {info['greedy_blocks']} blocks" + (
            " (exactly eq. 19)." if info["exact_eq19"] else "."
        )
    if "ranking" in info:
        return f"Largest Jacobian column among {info['ranking']}: value {info['coordinate'][0]}."
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
with c_attack, st.form("reg_form"):
    attack = st.selectbox("Attack", ATTACKS, format_func=lambda a: registry()[a].title, key="reg_attack")
    spec = registry()[attack]
    p = st.radio("Norm p", list(NORMS), format_func=NORMS.get, horizontal=True, key="reg_p")
    grid = [
        float(v) for v in np.unique(np.concatenate([DEFAULT_EPS[p], np.linspace(0, max(DEFAULT_EPS[p]), 17)]))
    ]
    eps = st.select_slider(
        "ε (budget)",
        grid,
        value=1.0 if p != "inf" else 4 / 255,
        format_func=lambda v: f"{v:.4g}",
        key=f"reg_eps_{p}",
    )
    params: dict[str, Any] = {"eps": float(eps)}
    if "p" in spec.param_names():
        params["p"] = p
    if "steps" in spec.param_names():
        params["steps"] = int(
            st.number_input("Steps T", 1, 200, 10 if attack == "reg_linear" else 30, key="reg_steps")
        )
    if "dither" in spec.param_names():
        params["dither"] = float(
            st.number_input(
                "Dithering radius ε̃ (0 = none: the attack stays at η = 0)",
                0.0,
                100.0,
                0.1 if p == "2" else 1 / 255,
                format="%.4f",
                key=f"reg_dither_{p}",
            )
        )
    if "subsets" in spec.param_names():
        params["subsets"] = int(
            st.number_input(
                "Pixels T (random: 0 = all)",
                0 if attack == "reg_random" else 1,
                5000,
                100 if attack == "reg_subset" else 0,
                key=f"reg_subsets_{attack}",
            )
        )
    if attack == "reg_subset":
        params = {k: v for k, v in params.items() if k != "p"}
        params["eps"] = min(1.0, params["eps"])
    seed = int(st.number_input("Seed", 0, 10_000, 0, key="reg_seed"))
    submitted = st.form_submit_button("Run", type="primary", icon=":material/play_arrow:")
    st.caption(spec.summary)

if picked is not None and (submitted or st.session_state.get("reg_last") is not None):
    if submitted:
        st.session_state["reg_last"] = (model_id, attack, params, seed)
    last_model, last_attack, last_params, last_seed = st.session_state["reg_last"]
    if last_model == model_id:
        try:
            with st.spinner("Attacking…"):
                run = attack_once(model_id, picked.pixels, last_attack, last_params, last_seed)
        except PercvizError as exc:
            st.error(one_sentence(exc))
            run = None
        if run is not None:
            m = run["metrics"]
            cols = st.columns(7)
            cols[0].metric("output PSNR", f"{m['output_psnr']:.2f} dB")
            cols[1].metric("output MSE", f"{m['output_mse']:.3g}")
            cols[2].metric("input PSNR", f"{m['psnr']:.2f} dB")
            cols[3].metric("input SSIM", f"{m.get('ssim', float('nan')):.4f}")
            cols[4].metric("‖η‖₂", f"{m['l2']:.4g}")
            cols[5].metric("‖η‖∞", f"{m['linf'] * 255:.2f}/255")
            cols[6].metric("within bound", "yes" if run["within"] else "NO")
            if model.spec.output == "image":
                diff = np.abs(run["out_adv"] - run["out"])
                gain = float(min(50.0, 1.0 / max(float(diff.max()), 1e-6)))
                st.plotly_chart(
                    image_figure(
                        [
                            picked.pixels,
                            run["x_adv"],
                            np.clip(run["out"], 0, 1),
                            np.clip(run["out_adv"], 0, 1),
                            np.clip(diff * gain, 0, 1),
                        ],
                        ["x", "x + η", "f(x)", "f(x + η)", f"|f(x) − f(x + η)| × {gain:.3g}"],
                        height=300,
                    ),
                    use_container_width=True,
                )
            else:
                st.plotly_chart(
                    image_figure([picked.pixels, run["x_adv"]], ["x", "x + η"], 300), use_container_width=True
                )
                st.plotly_chart(output_figure(run["out"], run["out_adv"]), use_container_width=True)
            fwd, bwd = run["passes"]
            st.caption(
                f"{fwd} forward and {bwd} backward passes (JVPs count as forward), {run['wall']:.2f} s. {describe(run['info'])}"
            )

st.subheader("Output PSNR against ε (Fig. 4)")
st.caption(
    "Mean output PSNR of f(x+η) against f(x) over the chosen photos, for quadratic-ℓp, linear-ℓp-10 and "
    "random-ℓp noise of the same budget (dashed) — the layout of Balda et al.'s Fig. 4."
)
with st.form("reg_curve_form"):
    c1, c2, c3 = st.columns([2, 1, 2])
    names = c1.multiselect(
        "Photos", list(SAMPLES), default=["chelsea", "coffee", "rocket"], key="reg_curve_images"
    )
    curve_p = c2.radio("Norm", ["2", "inf"], format_func=NORMS.get, key="reg_curve_p")
    eps_text = c3.text_input("ε values (comma-separated; empty = default grid)", "", key="reg_curve_eps")
    go_curve = st.form_submit_button("Compute the curve", icon=":material/show_chart:")
if go_curve:
    try:
        values = tuple(float(v) for v in eps_text.split(",") if v.strip()) or tuple(DEFAULT_EPS[curve_p])
        if not names:
            raise PercvizError("Choose at least one photo.")
        with st.spinner("Running every attack at every ε…"):
            st.session_state["reg_curve"] = (model_id, curve_rows(model_id, tuple(names), curve_p, values, 0))
    except (PercvizError, ValueError) as exc:
        st.error(one_sentence(exc))
stored = st.session_state.get("reg_curve")
if stored is not None:
    curve_model, rows = stored
    fig = rev.fig4_figure(rows, title=f"Output PSNR against ε — {regressor_spec(curve_model).title}")
    st.plotly_chart(fig, use_container_width=True, key="reg_fig4")
    if st.button("Prepare PDF and SVG", key="reg_export"):
        with st.spinner("Rendering…"):
            st.session_state["reg_files"] = {fmt: rev.export_fig4(fig, fmt) for fmt in ("pdf", "svg")}
    files = st.session_state.get("reg_files")
    if files:
        d1, d2 = st.columns(2)
        d1.download_button("Download PDF", files["pdf"], "fig4.pdf", "application/pdf", key="reg_pdf")
        d2.download_button("Download SVG", files["svg"], "fig4.svg", "image/svg+xml", key="reg_svg")
