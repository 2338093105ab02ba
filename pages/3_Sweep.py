"""Sweep: the ε1×ε2 grid of Pochimireddy et al. 2021 Fig. 1 and strength-vs-quality curves of Fig. 6–9."""

import json

import streamlit as st

from percviz import evaluation as ev
from percviz import figures as pv_figures
from percviz.attacks.base import AttackSpec, registry
from percviz.errors import PercvizError
from percviz.images import SAMPLES
from percviz.jsonsafe import json_safe
from percviz.limits import current_limits
from percviz.workflows import CurvePlan, GridPlan, curve_work, grid_work, plan_curve, plan_grid
from ui import jobs, results, views
from ui.common import image_input, model_choice, page_setup, render_done, short_sample_name
from ui.image_sets import sample_images
from ui.params import around_default, attack_block, numeric_params, parse_values, run_button

P = "sw"
EPS1_ROWS = "0, 0.002, 0.005, 0.01"  # where the luminance bound S1 still binds (see the caption)
page_setup(
    "Sweep",
    "How prediction and quality change with the budget: a grid over two parameters on one image, "
    "and fooling rate / SSIM / PSNR curves over a set of images.",
)
attacks = registry("classification")
limits = current_limits()

with st.sidebar:
    st.header("Setup")
    model = model_choice(f"{P}_model")
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key=f"{P}_seed")
if model is None:
    st.info("Choose a model in the sidebar.")
    st.stop()


def param_label(spec: AttackSpec, name: str, symbol: bool = False) -> str:
    """A parameter as people read it: ``ε1 (luminance)`` (or its symbol ``ε₁``), with its unit."""
    p = spec.param(name)
    text = (p.display_symbol() if symbol and p.symbol else p.label) or name.replace("_", " ")
    return text if symbol or not p.unit else f"{text} ({p.unit})"


grid_tab, curve_tab = st.tabs(["Two-parameter grid (one image)", "Strength curves (image set)"])

# ------------------------------------------------------------------ grid
with grid_tab:
    two = [a for a, s in attacks.items() if len(numeric_params(s)) >= 2]
    left, right = st.container(), st.container()  # controls above, the grid below at full width
    with left:
        c1, c2, c3 = st.columns(3, gap="medium")
        with c1:
            picked = image_input(model.input_size, f"{P}_gimage")
        with c2:
            attack_id = st.selectbox(
                "Attack",
                two,
                index=two.index("pgap") if "pgap" in two else 0,
                format_func=lambda a: attacks[a].title,
                key=f"{P}_gattack",
            )
            spec = attacks[attack_id]
            names = numeric_params(spec)
            defaults = ("eps1", "eps2") if {"eps1", "eps2"} <= set(names) else (names[0], names[1])
            row_param = st.selectbox(
                "Rows",
                names,
                index=names.index(defaults[0]),
                format_func=lambda n: param_label(spec, n),
                key=f"{P}_grow_{attack_id}",
            )
            row_text = st.text_input(
                "Row values",
                EPS1_ROWS if row_param == "eps1" else around_default(spec.param(row_param)),
                key=f"{P}_growv_{attack_id}_{row_param}",
                help="Comma-separated; fractions such as 4/255 are fine.",
            )
        with c3:
            col_names = [n for n in names if n != row_param]
            col_param = st.selectbox(
                "Columns",
                col_names,
                index=col_names.index(defaults[1]) if defaults[1] in col_names else 0,
                format_func=lambda n: param_label(spec, n),
                key=f"{P}_gcol_{attack_id}",
            )
            col_text = st.text_input(
                "Column values",
                "0.005, 0.01, 0.02, 0.05" if col_param == "eps2" else around_default(spec.param(col_param)),
                key=f"{P}_gcolv_{attack_id}_{col_param}",
            )
        if "eps1" in (row_param, col_param):
            st.caption(
                "ε1 bounds the change of the image's mean brightness (the luminance term S1 ≥ 1 − ε1²). "
                "The best attack direction barely moves the mean, so the bound only binds while ε1 is "
                "small (on the cat photo up to about ε1 = 0.013); above that, rows come out identical. "
                "The default rows stay in that range, and every cell shows 1 − S1."
            )
        values = attack_block(f"{P}g", spec)

        def grid_plan() -> GridPlan:
            rows_p, cols_p = (row_param, parse_values(row_text)), (col_param, parse_values(col_text))
            return plan_grid(attack_id, values or {}, rows_p, cols_p, limits)

        planned_grid = run_button(
            "Run grid",
            f"{P}_grun",
            ":material/grid_on:",
            grid_plan,
            ready=values is not None and picked is not None and not jobs.running(f"{P}_grid"),
        )
    with right:
        if planned_grid is not None and picked is not None:
            g = planned_grid
            jobs.submit(
                f"{P}_grid",
                grid_work(model, picked.pixels, g.attack, g.rows, g.cols, g.fixed, int(seed), limits),
                f"{attack_id} grid on {picked.name}",
            )
        jobs.follow(f"{P}_grid", lambda r, m: st.session_state.__setitem__(f"pv_{P}_grid", r))
        grid: ev.GridSweep | None = st.session_state.get(f"pv_{P}_grid")
        if grid is None or not any(grid.cells):
            st.caption(
                "Each cell runs the attack with that pair of values; the cell shows the adversarial image, "
                "its prediction and SSIM (Pochimireddy et al. 2021 Fig. 1)."
            )
        else:
            shown: ev.GridSweep = grid  # closures below do not see the narrowing
            gspec = attacks[grid.attack]
            st.markdown(
                f"**{gspec.title}** — original prediction **{grid.original_class}**. "
                "✔ = fooled; each cell gives the new class, its probability and the SSIM to the original."
            )
            show_s1 = "eps1" in (grid.row_param, grid.col_param)
            rows_done = [row for row in grid.cells if row]
            col_sym = param_label(gspec, grid.col_param, symbol=True)
            row_sym = param_label(gspec, grid.row_param, symbol=True)
            views.show(
                (id(grid), "grid"),
                lambda: pv_figures.grid_figure(
                    [[("image", c.thumbnail / 255.0) for c in row] for row in rows_done],
                    row_titles=[
                        f"<b>{row_sym}</b><br>{grid.row_param} = {v:.4g}"
                        for v in grid.row_values[: len(rows_done)]
                    ],
                    cell_titles=[
                        [
                            "<br>".join(
                                [f"{col_sym} = {c.col_value:.4g}", *pv_figures.grid_cell_caption(c, show_s1)]
                            )
                            for c in row
                        ]
                        for row in rows_done
                    ],
                ),
            )
            row_name, col_name = param_label(gspec, grid.row_param), param_label(gspec, grid.col_param)
            buttons = st.columns(4)
            results.figure_buttons(
                buttons[:3],
                lambda fmt: pv_figures.export_grid(shown, row_name, col_name, fmt),
                f"percviz-grid-{grid.attack}",
                f"{P}_gfig",
            )
            buttons[3].download_button(
                "Grid JSON",
                data=lambda: json.dumps(json_safe(shown.as_dict()), indent=2),
                file_name=f"percviz-grid-{grid.attack}.json",
                mime="application/json",
                on_click="ignore",
                icon=":material/download:",
                key=f"{P}_gjson",
            )

# ------------------------------------------------------------------ curves
with curve_tab:
    left, right = st.container(), st.container()
    with left:
        c1, c2 = st.columns(2, gap="medium")
        with c1:
            samples = st.multiselect(
                "Images (bundled photos)",
                list(SAMPLES),
                default=["chelsea", "coffee", "rocket"],
                format_func=short_sample_name,
                key=f"{P}_cimages",
            )
            chosen = st.multiselect(
                "Attacks",
                list(attacks),
                default=["fgsm", "pgd"],
                format_func=lambda a: attacks[a].title,
                key=f"{P}_cattacks",
            )
        with c2:
            common = [
                n
                for n in (numeric_params(attacks[chosen[0]]) if chosen else [])
                if all(n in numeric_params(attacks[a]) for a in chosen)
            ]
            param = (
                st.selectbox(
                    "Swept parameter",
                    common,
                    format_func=lambda n: param_label(attacks[chosen[0]], n),
                    key=f"{P}_cparam",
                )
                if common
                else None
            )
            value_text = st.text_input("Values", "1/255, 2/255, 4/255, 8/255", key=f"{P}_cvalues")
            batch = st.number_input("Batch", 1, limits.max_batch, min(8, limits.max_batch), key=f"{P}_cbatch")
        fixed = {}
        block_cols = st.columns(max(1, min(len(chosen), 3)))
        for i, a in enumerate(chosen):
            with block_cols[i % len(block_cols)]:
                fixed[a] = attack_block(f"{P}c", attacks[a])

        def curve_plan() -> CurvePlan:
            if not samples or not chosen or param is None:
                raise PercvizError("Pick images, attacks and a parameter they share.")
            runs = [(a, fixed[a] or {}) for a in chosen]
            return plan_curve(runs, param, parse_values(value_text), int(batch), limits)

        planned_curve = run_button(
            "Run curves",
            f"{P}_crun",
            ":material/show_chart:",
            curve_plan,
            ready=all(v is not None for v in fixed.values()) and not jobs.running(f"{P}_curve"),
        )
    with right:
        if planned_curve is not None:
            c = planned_curve
            images = sample_images(samples, model.input_size)
            jobs.submit(
                f"{P}_curve",
                curve_work(model, images, c.attacks, c.param, c.values, int(seed), c.batch, limits),
                f"{param} sweep over {len(images)} images",
            )
        jobs.follow(f"{P}_curve", lambda r, m: st.session_state.__setitem__(f"pv_{P}_curves", r))
        curves: list[ev.CurveSweep] = st.session_state.get(f"pv_{P}_curves") or []
        if not curves:
            st.caption(
                "Fooling rate, mean SSIM and mean PSNR against the swept parameter, one line per attack "
                "(Pochimireddy et al. 2021 Fig. 6–9)."
            )
        else:
            titles = {a: attacks[a].title for a in attacks}
            x_label = param_label(attacks[curves[0].attack], curves[0].param)
            for metric, _, _ in pv_figures.SWEEP_METRICS:
                views.show(
                    (id(curves), metric),
                    lambda metric=metric: pv_figures.sweep_figure(
                        curves, metric, titles, x_label, height=280
                    ),
                )
            results.figure_buttons(
                st.columns(3),
                lambda fmt: pv_figures.export_sweep(curves, titles, x_label, fmt),
                f"percviz-curves-{curves[0].param}",
                f"{P}_cfig",
            )
            rows = [
                {
                    "attack": titles.get(c.attack, c.attack),
                    x_label: p["value"],
                    "fooling rate": p.get("fooling_rate"),
                    "mean SSIM": p.get("mean_ssim"),
                    "mean PSNR (dB)": p.get("mean_psnr"),
                    "P_suc": p.get("p_suc"),
                    "D̄ (L2, [0,1] units)": p.get("mean_distortion"),
                }
                for c in curves
                for p in c.points
            ]
            st.dataframe(
                rows,
                hide_index=True,
                width="stretch",
                column_config={
                    "fooling rate": st.column_config.NumberColumn(format="percent"),
                    "P_suc": st.column_config.NumberColumn(format="percent"),
                    "mean SSIM": st.column_config.NumberColumn(format="%.4f"),
                    "mean PSNR (dB)": st.column_config.NumberColumn(format="%.2f"),
                    "D̄ (L2, [0,1] units)": st.column_config.NumberColumn(format="%.3f"),
                },
            )
render_done("sweep")
