"""percviz home page: what the tool is, and the offline model classifying a bundled photo."""

import streamlit as st

from percviz.figures import prediction_figure
from ui.common import (
    cached_predictions,
    image_input,
    model_choice,
    page_setup,
)

page_setup(
    "percviz",
    "An explorer for <b>perceptually guided adversarial examples</b>: pick an image and an attack, tune its "
    "perceptual budget (SSIM ε₁/ε₂, LPIPS bound, smoothing α…), and compare the adversarial example, its "
    "perturbation, SSIM maps and GradCAM++ heat maps.",
)

left, right = st.columns([1, 1.3], gap="large")
with left:
    model = model_choice()
    picked = image_input(model.input_size if model else 224, key="home") if model else None
if model is not None and picked is not None:
    with right:
        st.image(
            picked.pixels,
            caption=f"{picked.name}, as the model sees it ({picked.pixels.shape[1]}×{picked.pixels.shape[0]})",
            width=320,
        )
        st.plotly_chart(prediction_figure(cached_predictions(model, picked), f"{model.spec.title}: top-5"))

st.divider()
cards = [
    (
        "pages/1_Explore.py",
        "Explore",
        ":material/search:",
        "One image, one attack, every view: perturbation, SSIM maps, "
        "magnification, GradCAM++, downloads and a shareable URL.",
    ),
    (
        "pages/2_Compare.py",
        "Compare",
        ":material/compare:",
        "Several attacks in one grid (Pochimireddy et al. 2021 Fig. 3), optionally at one common SSIM or PSNR.",
    ),
    (
        "pages/3_Sweep.py",
        "Sweep",
        ":material/grid_on:",
        "The ε₁×ε₂ grid of Pochimireddy et al. 2021 Fig. 1 and fooling-rate / SSIM / PSNR curves.",
    ),
    (
        "pages/4_Evaluate.py",
        "Evaluate",
        ":material/table_chart:",
        "An image set → fooling rate, P_suc, D̄, explainability, matched quality and P(D), as CSV/JSON.",
    ),
    (
        "pages/5_Learn.py",
        "Learn",
        ":material/school:",
        "Each method in a paragraph, its formula and its paper; “Try it” opens Explore.",
    ),
    (
        "pages/6_Regression.py",
        "Regression",
        ":material/image_search:",
        "Balda et al. 2019 on an image-to-image model: x, x + η, f(x), f(x + η) and the output error "
        "against ε.",
    ),
]
for start in range(0, len(cards), 3):  # two rows of three: each card keeps its text readable at 1024 px
    cols = st.columns(3)
    for col, (page, title, icon, text) in zip(cols, cards[start : start + 3], strict=True):
        with col.container(border=True, height="stretch"):
            st.page_link(page, label=title, icon=icon)
            st.caption(text)
st.caption(
    "Methods: SSIM-guided PGAP/FPGAP (Pochimireddy et al.), LPIPS-bounded PPGD/LPA/Fast-LPA (Laidlaw et al.), "
    "smooth adversarial examples (Zhang et al.), the perturbation analysis of Balda et al., and the usual "
    "baselines (FGSM, PGD, DeepFool, C&W)."
)
