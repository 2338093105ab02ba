"""Compare: several attacks on one image in one grid (seed 000 Fig. 3 layout), at matched strength."""

import streamlit as st

from percviz import figures as pv_figures
from percviz.attacks.base import registry
from percviz.errors import PercvizError
from percviz.evaluate import run_label
from percviz.hosted import check_params, current_limits
from ui import jobs, results, views
from ui.common import image_input, model_choice, page_setup, render_done
from ui.params import attack_block
from ui.runs import Comparison, compare_work

P = "cmp"
page_setup(
    "Compare",
    "Several attacks on one image, side by side: the adversarial image, its SSIM maps per channel and "
    "where the model now looks — optionally at one common SSIM or PSNR.",
)
attacks = registry()

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
        "adversarial image reaches the target quality (seed 000 Tables II–III), then compares.",
    )
    target = None
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
    for _, values in items:
        check_params(values, current_limits())
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
    jobs.submit(P, compare_work(model, picked.name, picked.pixels, items, int(seed), target), label)


def _stored(result: Comparison, meta: dict) -> str | None:
    st.session_state[f"pv_{P}_result"] = result
    return "Cancelled; showing the attacks that finished." if result.cancelled else None


jobs.follow(P, _stored)
comparison: Comparison | None = st.session_state.get(f"pv_{P}_result")
if comparison is None or not comparison.rows:
    st.caption("Press **Compare** to run every selected attack on the image.")
    st.stop()

b0 = comparison.before[0]
st.markdown(f"**{comparison.image_name}** — the model says **{b0.label}** ({b0.probability:.0%}).")
key = id(comparison)
cells, row_titles = [], []
for row in comparison.rows:
    v = row.views
    a0 = row.after[0]
    mark = "✔" if bool(row.result.success[0]) else "✘"
    row_titles.append(
        f"<b>{row.attack}</b><br>{mark} {a0.label[:18]}<br>{a0.probability:.0%} · SSIM {row.metrics['ssim']:.3f}"
    )
    cells.append(
        [
            ("image", v.adversarial),
            *[("heat", v.ssim_map[..., c]) for c in range(3)],
            ("image", v.cam_overlay("adversarial")),
        ]
    )
views.show(
    (key, "mosaic"),
    lambda: pv_figures.grid_figure(
        cells,
        col_titles=["adversarial", "SSIM map R", "SSIM map G", "SSIM map B", "GradCAM++ (new class)"],
        row_titles=row_titles,
        cell_px=170,
        heat=pv_figures.ssim_scale(*(r.views.ssim_map for r in comparison.rows)),
    ),
)
table = {
    "attack": [r.attack for r in comparison.rows],
    "prediction": [f"{r.after[0].label} ({r.after[0].probability:.0%})" for r in comparison.rows],
    "fooled": [bool(r.result.success[0]) for r in comparison.rows],
    "SSIM": [round(r.metrics["ssim"], 4) for r in comparison.rows],
    "PSNR (dB)": [round(r.metrics["psnr"], 2) for r in comparison.rows],
    "L2": [round(r.metrics["l2"], 3) for r in comparison.rows],
    "L∞ (/255)": [round(r.metrics["linf"] * 255, 2) for r in comparison.rows],
    "explain IOU": [r.views.explain["scores"].get("iou") for r in comparison.rows],
    "passes": [r.result.forward_passes + r.result.backward_passes for r in comparison.rows],
    "time (s)": [round(r.result.wall_time, 2) for r in comparison.rows],
}
if any(r.match for r in comparison.rows):
    table["matched strength"] = [
        f"{r.match['param']} = {r.match['value']:.4g}" + ("" if r.match["converged"] else " (not reached)")
        if r.match
        else "—"
        for r in comparison.rows
    ]
st.dataframe(table, hide_index=True, width="stretch")
export = views.figure_exporter(
    [
        (r.views, attacks[r.attack].title, run_label(r.attack, r.params, with_attack=False))
        for r in comparison.rows
    ]
)
results.figure_buttons(st.columns(6)[:3], export, "percviz-compare", f"{P}_fig")
render_done("compare")
