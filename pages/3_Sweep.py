"""Sweep: the ε1×ε2 grid of seed 000 Fig. 1 and strength-vs-quality curves of Fig. 6–9 (SPEC §6)."""

import json

import plotly.graph_objects as go
import streamlit as st

from percviz import evaluate as ev
from percviz import figures as pv_figures
from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.hosted import check_params, current_limits
from percviz.images import SAMPLES, fit_to_model
from ui import jobs, views
from ui.common import cached_sample, image_input, model_choice, page_setup, render_done
from ui.params import around_default, attack_block, check_sweep_size, numeric_params, parse_values, run_button
from ui.runs import curve_work, grid_work

P = "sw"
page_setup(
    "Sweep",
    "How prediction and quality change with the budget: a grid over two parameters on one image, "
    "and fooling rate / SSIM / PSNR curves over a set of images.",
)
attacks = registry()
limits = current_limits()

with st.sidebar:
    st.header("Setup")
    model = model_choice(f"{P}_model")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key=f"{P}_seed")
if model is None:
    st.info("Choose a model in the sidebar.")
    st.stop()

grid_tab, curve_tab = st.tabs(["ε1 × ε2 grid (one image)", "Strength curves (image set)"])

# ------------------------------------------------------------------ grid
with grid_tab:
    two = [a for a, s in attacks.items() if len(numeric_params(s)) >= 2]
    left, right = st.columns([1, 2.2], gap="large")
    with left:
        picked = image_input(model.input_size, f"{P}_gimage")
        attack_id = st.selectbox(
            "Attack",
            two,
            index=two.index("fpgap") if "fpgap" in two else 0,
            format_func=lambda a: attacks[a].title,
            key=f"{P}_gattack",
        )
        spec = attacks[attack_id]
        names = numeric_params(spec)
        defaults = ("eps1", "eps2") if {"eps1", "eps2"} <= set(names) else (names[0], names[1])
        row_param = st.selectbox("Rows", names, index=names.index(defaults[0]), key=f"{P}_grow_{attack_id}")
        row_text = st.text_input(
            "Row values",
            "0, 0.01, 0.02, 0.05" if row_param == "eps1" else around_default(spec.param(row_param)),
            key=f"{P}_growv_{attack_id}_{row_param}",
        )
        col_names = [n for n in names if n != row_param]
        col_param = st.selectbox(
            "Columns",
            col_names,
            index=col_names.index(defaults[1]) if defaults[1] in col_names else 0,
            key=f"{P}_gcol_{attack_id}",
        )
        col_text = st.text_input(
            "Column values",
            "0.005, 0.01, 0.02, 0.05" if col_param == "eps2" else around_default(spec.param(col_param)),
            key=f"{P}_gcolv_{attack_id}_{col_param}",
        )
        values = attack_block(f"{P}g", spec)

        def grid_plan() -> tuple[list[float], list[float]]:
            rows_v, cols_v = parse_values(row_text), parse_values(col_text)
            check_sweep_size(len(rows_v) * len(cols_v), limits, "cells")
            for rv in rows_v:
                for cv in cols_v:
                    spec.validate({**(values or {}), row_param: rv, col_param: cv})
            check_params(values or {}, limits)
            return rows_v, cols_v

        planned_grid = run_button(
            "Run grid",
            f"{P}_grun",
            ":material/grid_on:",
            grid_plan,
            ready=values is not None and picked is not None and not jobs.running(f"{P}_grid"),
        )
    with right:
        if planned_grid is not None:
            rows_v, cols_v = planned_grid
            jobs.submit(
                f"{P}_grid",
                grid_work(
                    model,
                    picked.pixels,
                    attack_id,
                    (row_param, rows_v),
                    (col_param, cols_v),
                    values,
                    int(seed),
                ),
                f"{attack_id} grid on {picked.name}",
            )
        jobs.follow(f"{P}_grid", lambda r, m: st.session_state.__setitem__(f"pv_{P}_grid", r))
        grid = st.session_state.get(f"pv_{P}_grid")
        if grid is None or not any(grid.cells):
            st.caption(
                "Each cell runs the attack with that pair of values; the cell shows the adversarial image, "
                "its prediction and SSIM (seed 000 Fig. 1)."
            )
        else:
            st.markdown(f"**{grid.attack}** — original prediction **{grid.original_class}**.")
            cells = [[("image", c.thumbnail / 255.0) for c in row] for row in grid.cells if row]
            titles = [
                [
                    f"{grid.col_param}={c.col_value:.4g}<br>{'✔ ' if c.success else ''}{c.class_name[:16]} {c.probability:.0%}"
                    f"<br>SSIM {c.ssim:.3f}"
                    for c in row
                ]
                for row in grid.cells
                if row
            ]
            views.show(
                (id(grid), "grid"),
                lambda: pv_figures.grid_figure(
                    cells,
                    row_titles=[f"{grid.row_param} = {v:.4g}" for v in grid.row_values[: len(cells)]],
                    cell_titles=titles,
                ),
            )
            st.download_button(
                "Grid JSON",
                data=lambda: json.dumps(ev.strict_json(grid.as_dict()), indent=2),
                file_name=f"percviz-grid-{grid.attack}.json",
                mime="application/json",
                on_click="ignore",
                key=f"{P}_gjson",
            )

# ------------------------------------------------------------------ curves
with curve_tab:
    left, right = st.columns([1, 2.2], gap="large")
    with left:
        samples = st.multiselect(
            "Images (bundled photos)",
            list(SAMPLES),
            default=["chelsea", "coffee", "rocket"],
            format_func=lambda n: SAMPLES[n][0].split(" (")[0],
            key=f"{P}_cimages",
        )
        chosen = st.multiselect(
            "Attacks",
            list(attacks),
            default=["fgsm", "pgd"],
            format_func=lambda a: attacks[a].title,
            key=f"{P}_cattacks",
        )
        common = [
            n
            for n in (numeric_params(attacks[chosen[0]]) if chosen else [])
            if all(n in numeric_params(attacks[a]) for a in chosen)
        ]
        param = st.selectbox("Swept parameter", common, key=f"{P}_cparam") if common else None
        value_text = st.text_input("Values", "1/255, 2/255, 4/255, 8/255", key=f"{P}_cvalues")
        batch = st.number_input("Batch", 1, limits.max_batch, min(8, limits.max_batch), key=f"{P}_cbatch")
        fixed = {}
        for a in chosen:
            fixed[a] = attack_block(f"{P}c", attacks[a])

        def curve_plan() -> list[float]:
            if not samples or not chosen or param is None:
                raise PercvizError("Pick images, attacks and a parameter they share.")
            cvalues = parse_values(value_text)
            check_sweep_size(len(cvalues) * len(chosen), limits, "runs")
            for a in chosen:
                for v in cvalues:
                    attacks[a].validate({**(fixed[a] or {}), param: v})
                check_params(fixed[a] or {}, limits)
            return cvalues

        cvalues = run_button(
            "Run curves",
            f"{P}_crun",
            ":material/show_chart:",
            curve_plan,
            ready=all(v is not None for v in fixed.values()) and not jobs.running(f"{P}_curve"),
        )
    with right:
        if cvalues is not None:
            images = [
                ev.EvalImage.from_pixels(n, fit_to_model(cached_sample(n), model.input_size)) for n in samples
            ]
            jobs.submit(
                f"{P}_curve",
                curve_work(
                    model, images, [(a, fixed[a]) for a in chosen], param, cvalues, int(seed), int(batch)
                ),
                f"{param} sweep over {len(images)} images",
            )
        jobs.follow(f"{P}_curve", lambda r, m: st.session_state.__setitem__(f"pv_{P}_curves", r))
        curves = st.session_state.get(f"pv_{P}_curves")
        if not curves:
            st.caption(
                "Fooling rate, mean SSIM and mean PSNR against the swept parameter, one line per attack "
                "(seed 000 Fig. 6–9)."
            )
        else:

            def curve_fig(metric: str, title: str) -> go.Figure:
                fig = go.Figure()
                for c in curves:
                    pts = [(float(p["value"]), p.get(metric)) for p in c.points if p.get(metric) is not None]
                    fig.add_trace(
                        go.Scatter(
                            x=[x for x, _ in pts], y=[y for _, y in pts], mode="lines+markers", name=c.attack
                        )
                    )
                fig.update_layout(
                    height=300,
                    margin={"l": 10, "r": 10, "t": 40, "b": 10},
                    title={"text": title, "font": {"size": 14}},
                    xaxis_title=curves[0].param,
                    legend={"orientation": "h", "y": -0.25},
                )
                if metric == "fooling_rate":
                    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
                return fig

            c1, c2, c3 = st.columns(3)
            with c1:
                views.show((id(curves), "fr"), lambda: curve_fig("fooling_rate", "fooling rate"))
            with c2:
                views.show((id(curves), "ssim"), lambda: curve_fig("mean_ssim", "mean SSIM"))
            with c3:
                views.show((id(curves), "psnr"), lambda: curve_fig("mean_psnr", "mean PSNR (dB)"))
            rows = [
                {
                    "attack": c.attack,
                    c.param: p["value"],
                    "fooling rate": p.get("fooling_rate"),
                    "mean SSIM": p.get("mean_ssim"),
                    "mean PSNR": p.get("mean_psnr"),
                    "P_suc": p.get("p_suc"),
                    "D̄ (L2)": p.get("mean_distortion"),
                }
                for c in curves
                for p in c.points
            ]
            st.dataframe(rows, hide_index=True, width="stretch")
render_done("sweep")
