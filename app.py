"""percviz home page: what the tool is, and the offline model classifying a bundled photo."""

import streamlit as st

from percviz.images import to_tensor
from percviz.models import predict
from ui.common import cached_model, image_picker, model_picker, prediction_chart

st.set_page_config(page_title="percviz", page_icon="🔬", layout="wide")

st.title("percviz")
st.markdown(
    "An explorer for **perceptually guided adversarial examples**: pick an image and an attack, tune "
    "its perceptual budget (SSIM ε₁/ε₂, LPIPS bound, smoothing α…), and compare the adversarial "
    "example, its perturbation, SSIM maps and GradCAM++ heat maps. Methods follow four papers: "
    "SSIM-guided PGAP/FPGAP, LPIPS-bounded PPGD/LPA, smooth adversarial examples, and the "
    "perturbation analysis of Balda et al."
)

left, right = st.columns([1, 1.3], gap="large")
with left:
    model_id = model_picker()
    model = cached_model(model_id) if model_id else None
    picked = image_picker(model.input_size if model else 224, key="home")
if model is not None and picked is not None:
    name, pixels = picked
    preds = predict(model, to_tensor(pixels, model.device), top=5)[0]
    with right:
        st.image(
            pixels, caption=f"{name}, as the model sees it ({pixels.shape[1]}×{pixels.shape[0]})", width=320
        )
        st.plotly_chart(prediction_chart(preds, f"{model.spec.title}: top-5"), width="stretch")
st.caption("Use the pages in the sidebar to attack, compare, sweep and evaluate.")
