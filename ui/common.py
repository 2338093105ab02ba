"""Cached resources and widgets every page uses; all computation is delegated to percviz."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from percviz.errors import PercvizError
from percviz.images import SAMPLES, LoadedImage, fit_to_model, load_image, load_sample
from percviz.models import Classifier, Prediction, all_model_status, load_model


@st.cache_resource(show_spinner="Loading the model…")
def cached_model(model_id: str) -> Classifier:
    """One shared, frozen model per id for all sessions (thread-safe: no hooks, eval only)."""
    return load_model(model_id)


@st.cache_data(show_spinner=False, max_entries=16)
def cached_sample(name: str) -> np.ndarray:
    return load_sample(name).pixels


def model_picker(key: str = "model") -> str | None:
    """Select box over the zoo; unavailable models are listed with how to enable them."""
    statuses = all_model_status()
    available = [s.spec.id for s in statuses if s.available]
    titles = {s.spec.id: s.spec.title for s in statuses}
    choice = st.selectbox("Model", available, format_func=lambda m: titles[m], key=key)
    missing = [s for s in statuses if not s.available]
    if missing:
        with st.expander(f"{len(missing)} more models need their weights"):
            for s in missing:
                st.markdown(f"**{s.spec.title}** — {s.how_to_enable}.")
    return choice


def image_picker(size: int, key: str = "image") -> tuple[str, np.ndarray] | None:
    """Bundled sample or upload; returns ``(name, model-size pixels)`` or None with a message shown."""
    source = st.radio("Image", ["Bundled photo", "Upload"], horizontal=True, key=f"{key}_source")
    loaded: LoadedImage | None = None
    if source == "Bundled photo":
        name = st.selectbox("Photo", list(SAMPLES), format_func=lambda n: SAMPLES[n][0], key=f"{key}_sample")
        loaded = LoadedImage(cached_sample(name), name, None, ())
    else:
        upload = st.file_uploader(
            "PNG, JPEG, WebP, BMP or TIFF",
            type=["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"],
            key=f"{key}_upload",
        )
        if upload is None:
            st.info("Choose a file to upload.")
            return None
        try:
            loaded = load_image(upload.getvalue(), name=upload.name)
        except PercvizError as exc:
            st.error(str(exc))
            return None
        for note in loaded.conversions:
            st.caption(f"Converted: {note}.")
    crop = st.slider(
        "Central crop",
        0.5,
        1.0,
        1.0,
        0.025,
        key=f"{key}_crop",
        help="Fraction of the short side kept before resizing to the model's input.",
    )
    return loaded.name, fit_to_model(loaded.pixels, size, crop)


def prediction_chart(preds: list[Prediction], title: str) -> go.Figure:
    """Horizontal bar chart of top-k probabilities."""
    fig = go.Figure(
        go.Bar(
            x=[p.probability for p in preds][::-1],
            y=[f"{p.label} ({p.index})" for p in preds][::-1],
            orientation="h",
            marker_color="#3b5bdb",
            text=[f"{p.probability:.1%}" for p in preds][::-1],
            textposition="auto",
        )
    )
    fig.update_layout(
        title=title,
        height=260,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"range": [0, 1], "tickformat": ".0%"},
    )
    return fig
