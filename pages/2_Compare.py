"""Compare: several attacks on one image in one grid (Pochimireddy et al. 2021 Fig. 3 layout), at matched strength."""

from typing import Any

import streamlit as st

from percviz import figures as pv_figures
from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.evaluation import QualityMetric
from percviz.figures import SSIM_COLORSCALE, FigureRow
from percviz.models.classifier import imagenet_labels
from percviz.workflows import CompareRow, Comparison, compare_work, plan_compare
from ui import jobs, results, views
from ui.common import image_input, model_choice, page_setup, render_done
from ui.params import attack_block

P = "cmp"
CMAP_KEY = f"{P}_ssim_cmap"  # the figure's SSIM colour map, on screen and in its downloads
page_setup(
    "Compare",
    "Several attacks on one image, side by side: the adversarial image, its SSIM maps per channel and "
    "where the model now looks — optionally at one common SSIM or PSNR.",
)
attacks = registry("classification")

with st.sidebar:
    st.header("Setup")
    model = model_choice(f"{P}_model")
    picked = image_input(model.input_size if model else 224, f"{P}_image") if model else None
    chosen = st.multiselect(
        "Attacks (rows)",
        list(attacks),
        default=["fgsm", "pgd", "fpgap"],
        format_func=lambda a: attacks[a].title,
        key=f"{P}_attacks",
    )
    mode = st.radio(
        "Strength",
        ["As set below", "Match SSIM", "Match PSNR"],
        key=f"{P}_mode",
        help="Matching searches each attack's strength parameter (ε, ε2, LPIPS bound, κ…) until the "
        "adversarial image reaches the target quality (Pochimireddy et al. 2021 Tables II–III), then compares.",
    )
    target: tuple[QualityMetric, float] | None = None
    if mode == "Match SSIM":
        target = ("ssim", st.slider("Target SSIM", 0.80, 0.999, 0.97, 0.001, format="%.3f", key=f"{P}_ssim"))
    elif mode == "Match PSNR":
        target = ("psnr", st.slider("Target PSNR (dB)", 25.0, 55.0, 40.0, 0.5, key=f"{P}_psnr"))
    seed = st.number_input("Seed", 0, 2**31 - 1, 0, key=f"{P}_seed")

if model is None or picked is None:
    st.info("Choose a model and an image in the sidebar.")
    st.stop()
if not chosen:
    st.info("Pick at least one attack in the sidebar.")
    st.stop()

st.markdown("##### Parameters")
cols = st.columns(min(len(chosen), 3))
items = []
for i, attack_id in enumerate(chosen):
    with cols[i % len(cols)]:
        values = attack_block(P, attacks[attack_id])
    if values is not None:
        items.append((attack_id, values))
ready = len(items) == len(chosen)
try:
    items = plan_compare(items)
except PercvizError as exc:
    ready = False
    st.error(str(exc))

if st.button(
    "Compare",
    type="primary",
    icon=":material/compare:",
    disabled=not ready or jobs.running(P),
    key=f"{P}_run",
):
    label = f"{len(items)} attacks on {picked.name}" + (
        f" at {target[0].upper()} {target[1]:g}" if target else ""
    )
    running = Comparison(picked.name, [])
    work = compare_work(model, picked.name, picked.pixels, items, int(seed), target, into=running)
    jobs.submit(P, work, label, comparison=running, total=len(items))


def _stored(result: Comparison, meta: dict) -> str | None:
    st.session_state[f"pv_{P}_result"] = result
    return "Cancelled; showing the attacks that finished." if result.cancelled else None


def draw(comparison: Comparison, rows: list[CompareRow], key: tuple) -> list[FigureRow]:
    """The grid of ``rows`` (each row's GradCAM++ computed when first drawn) and their table."""
    fig_rows = comparison.figure_rows_of(rows, imagenet_labels())  # views are kept with each row
    colormap = st.session_state.get(CMAP_KEY, SSIM_COLORSCALE)
    views.show(
        (*key, "mosaic", colormap),
        lambda: pv_figures.rows_figure(fig_rows, cell_px=170, ssim_colormap=colormap),
    )
    table = {
        "attack": [r.attack for r in rows],
        "method": [attacks[r.attack].title if r.attack in attacks else r.attack for r in rows],
        "prediction": [f"{r.after[0].label} ({r.after[0].probability:.0%})" for r in rows],
        "fooled": [bool(r.result.success[0]) for r in rows],
        "SSIM": [round(r.metrics["ssim"], 4) for r in rows],
        "PSNR (dB)": [round(r.metrics["psnr"], 2) for r in rows],
        "L2 ([0,1] units)": [round(r.metrics["l2"], 3) for r in rows],
        "L∞ (/255)": [round(r.metrics["linf"] * 255, 2) for r in rows],
        "explain IOU": [r.views.explain["scores"].get("iou") for r in rows],
        "passes": [r.result.forward_passes + r.result.backward_passes for r in rows],
        "time (s)": [round(r.result.wall_time, 2) for r in rows],
    }
    if any(r.match for r in rows):
        table["matched strength"] = [
            f"{r.match['param']} = {r.match['value']:.4g}"
            + ("" if r.match["converged"] else " (not reached)")
            if r.match
            else "—"
            for r in rows
        ]
    st.dataframe(table, hide_index=True, width="stretch")
    return fig_rows


def finished_so_far(placeholder: Any, meta: dict) -> None:
    """While the job runs: the rows of the attacks that finished, redrawn when one more ends."""
    comparison: Comparison | None = meta.get("comparison")
    if comparison is None:
        return
    rows = list(comparison.rows)
    if not rows or meta.get("drawn") == len(rows):
        return
    meta["drawn"] = len(rows)
    with placeholder.container():
        st.caption(f"{len(rows)} of {meta['total']} attacks finished; the next rows follow as they end.")
        draw(comparison, rows, (id(comparison), len(rows), "partial"))


jobs.follow(P, _stored, finished_so_far)
comparison: Comparison | None = st.session_state.get(f"pv_{P}_result")
if comparison is None or not comparison.rows:
    st.caption("Press **Compare** to run every selected attack on the image.")
    st.stop()

b0 = comparison.before[0]
st.markdown(f"**{comparison.image_name}** — the model says **{b0.label}** ({b0.probability:.0%}).")
caption, choice = st.columns([2, 1], vertical_alignment="bottom")
caption.caption(
    "Columns: the adversarial image, its local SSIM map per channel (dark = distorted) and GradCAM++ "
    "of the adversarial image for its new class, with the region CAM > 0.75 outlined in white. The "
    "figure downloads below are this figure: the same panels, colours, outline and row captions."
)
choice.selectbox(
    "SSIM colour map",
    list(pv_figures.SSIM_COLORMAPS),
    format_func=lambda name: pv_figures.SSIM_COLORMAPS[name],
    key=CMAP_KEY,
    help="For the figure on screen and its downloads alike: viridis, as every SSIM map of the app, "
    "or grey, as Pochimireddy et al. 2021 Fig. 3.",
)
fig_rows = draw(comparison, list(comparison.rows), (id(comparison),))


def export(fmt: str) -> bytes:
    colormap = st.session_state.get(CMAP_KEY, SSIM_COLORSCALE)
    return pv_figures.export_figure(fig_rows, fmt, dpi=200, ssim_colormap=colormap)


results.figure_buttons(st.columns(3), export, "percviz-compare", f"{P}_fig")
render_done("compare")
