"""Cached resources and widgets every page uses; all computation is delegated to percviz."""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st

from percviz.errors import PercvizError
from percviz.images import SAMPLES, LoadedImage, fit_to_model, load_image, load_sample
from percviz.limits import Limits, check_image_size, current_limits
from percviz.models import ZOO_MODELS, Classifier, Prediction, all_model_status, load_model
from percviz.recipes import ImageRef
from percviz.serving.jobs import ComputeQueue
from percviz.serving.memory import start_memory_release

_CSS = """
<style>
.block-container {padding-top: 2.2rem; padding-bottom: 2rem; max-width: 1400px;}
[data-testid="stMetricValue"] {font-size: 1.35rem;}
[data-testid="stMetricLabel"] p {font-size: 0.8rem; color: #5c6370;}
h1 {font-weight: 700; letter-spacing: -0.01em;}
.pv-lead {color: #4a5060; font-size: 1.02rem; margin-top: -0.6rem; margin-bottom: 1rem;}
.pv-verdict {font-size: 1.05rem; padding: 0.55rem 0.9rem; border-radius: 0.5rem; margin: 0.2rem 0 0.8rem 0;}
.pv-ok {background: #fff4e6; border-left: 4px solid #e8590c;}
.pv-no {background: #f1f3f5; border-left: 4px solid #868e96;}
/* nothing is cut off on narrow screens (1024 px wide and up): labels wrap instead of "…" */
.stButton button, .stDownloadButton button, .stFormSubmitButton button {height: auto; min-height: 2.5rem;}
.stButton [data-testid="stMarkdownContainer"], .stDownloadButton [data-testid="stMarkdownContainer"],
.stFormSubmitButton [data-testid="stMarkdownContainer"],
[data-testid="stMetricValue"], [data-testid="stMetricValue"] *, [data-testid="stMetricLabel"],
[data-testid="stMetricLabel"] *, [data-testid="stMetricDelta"] div
{white-space: normal !important; overflow: visible !important; text-overflow: clip !important;}
.stButton p, .stDownloadButton p {white-space: normal; overflow-wrap: normal; line-height: 1.25;}
[data-testid="stMetricValue"] {overflow-wrap: anywhere; line-height: 1.25;}
.katex-display {overflow-x: auto; overflow-y: hidden; padding: 0.15rem 0.3rem;}
[data-testid="stMultiSelectTagsContainer"] span {white-space: normal !important; text-overflow: clip !important;
  height: auto !important; max-width: none !important; line-height: 1.3;}
[data-testid="stMultiSelectTagsContainer"] > span {padding-top: 2px; padding-bottom: 2px;}
[data-testid="stMultiSelectTagsContainer"] {flex-wrap: wrap !important; overflow: visible !important;}
div:has(> [data-testid="stMultiSelectTagsContainer"]) {max-height: none !important;}
</style>
"""


#: The sidebar navigation (Streamlit's automatic one is off in .streamlit/config.toml because it
#: would name the home page after its file, "app").
NAVIGATION = (
    ("app.py", "Home", ":material/home:"),
    ("pages/1_Explore.py", "Explore", ":material/travel_explore:"),
    ("pages/2_Compare.py", "Compare", ":material/view_module:"),
    ("pages/3_Sweep.py", "Sweep", ":material/grid_on:"),
    ("pages/4_Evaluate.py", "Evaluate", ":material/table_chart:"),
    ("pages/5_Learn.py", "Learn", ":material/school:"),
    ("pages/6_Regression.py", "Regression", ":material/image_search:"),
)


def page_setup(title: str, lead: str, icon: str = "🔬") -> None:
    """Page config, shared style, navigation, title and a one-line lead (and the render clock's start)."""
    st.session_state["pv_render_start"] = time.perf_counter()
    _hosted_memory()
    st.set_page_config(page_title=f"{title} · percviz", page_icon=icon, layout="wide")
    st.markdown(_CSS, unsafe_allow_html=True)
    if _runs_as_app():
        with st.sidebar:
            for path, label, nav_icon in NAVIGATION:
                st.page_link(path, label=label, icon=nav_icon)
    st.title(title)
    st.markdown(f'<div class="pv-lead">{lead}</div>', unsafe_allow_html=True)


def _runs_as_app() -> bool:
    """Whether the entry point is app.py (a page run on its own, as tests do, has no other pages)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return ctx is not None and Path(ctx.main_script_path).name == "app.py"


@st.cache_resource(show_spinner=False)
def _hosted_memory() -> bool:
    """Once per process, in hosted mode: fewer malloc arenas, freed memory returned every few seconds."""
    if not current_limits().hosted:
        return False
    start_memory_release()
    return True


def cached_model(model_id: str) -> Classifier:
    """One shared, frozen model per id for all sessions (thread-safe: no hooks, eval only). Zoo
    models stay for the process; own models come from ``load_model``'s bounded LRU (never pinned
    here, so an evicted upload's memory is freed)."""
    if model_id in ZOO_MODELS:
        return _cached_zoo_model(model_id)
    with st.spinner("Loading the model…"):
        return load_model(model_id)


@st.cache_resource(show_spinner="Loading the model…")
def _cached_zoo_model(model_id: str) -> Classifier:
    return load_model(model_id)


@st.cache_resource
def compute_queue() -> ComputeQueue:
    """The one FIFO compute queue shared by all sessions."""
    limits = current_limits()
    return ComputeQueue(slots=limits.compute_slots, per_owner=limits.jobs_per_session)


def session_owner() -> str:
    """A stable id for this browser session (the queue's per-owner cap)."""
    if "pv_owner" not in st.session_state:
        st.session_state["pv_owner"] = uuid.uuid4().hex
    return st.session_state["pv_owner"]


@st.cache_data(show_spinner=False, max_entries=16)
def short_sample_name(name: str) -> str:
    """A bundled photo's chip label in a multiselect: its short name ("Chelsea", "Coffee"), so four
    chips fit a half-width column at 1024 px (the full descriptions are the photo pickers' labels)."""
    return name.capitalize() if name in SAMPLES else name


def cached_sample(name: str) -> np.ndarray:
    return load_sample(name).pixels


def model_picker(key: str = "model") -> str | None:
    """Select box over the zoo; unavailable models are listed with how to enable them."""
    statuses = all_model_status()
    available = [s.spec.id for s in statuses if s.available]
    titles = {s.spec.id: s.spec.title for s in statuses}
    if key in st.session_state and st.session_state[key] not in available:
        st.session_state[key] = available[0] if available else None
    choice = st.selectbox("Model", available, format_func=lambda m: titles[m], key=key)
    missing = [s for s in statuses if not s.available]
    if missing:
        with st.expander(f"{len(missing)} more models need their weights"):
            for s in missing:
                how = "not installed on this server" if current_limits().hosted else s.how_to_enable
                st.markdown(f"**{s.spec.title}** — {how}.")
    return choice


def model_choice(key: str = "model") -> Classifier | None:
    """The model picker plus loading: the shared cached model, or None with the reason shown."""
    model_id = model_picker(key)
    if not model_id:
        return None
    try:
        return cached_model(model_id)
    except PercvizError as exc:
        st.error(str(exc))
        return None


@dataclass(frozen=True)
class PickedImage:
    """The chosen image: a label, the model-size pixels, where it came from, and the crop."""

    name: str
    pixels: np.ndarray
    ref: ImageRef
    crop: float
    loaded: LoadedImage


def image_input(size: int, key: str = "image", preview: bool = False) -> PickedImage | None:
    """Bundled sample or upload, plus the centre-crop control; None (with a message) if unusable."""
    source = st.radio("Image", ["Bundled photo", "Upload"], horizontal=True, key=f"{key}_source")
    loaded: LoadedImage | None = None
    if source == "Bundled photo":
        names = list(SAMPLES)
        if st.session_state.get(f"{key}_sample") not in (None, *names):
            st.session_state[f"{key}_sample"] = names[0]
        current = st.session_state.get(f"{key}_sample") or names[0]
        name = st.selectbox(
            "Photo",
            names,
            index=names.index(current),
            format_func=lambda n: SAMPLES[n][0],
            key=f"{key}_sample",
        )
        try:
            loaded = LoadedImage(cached_sample(name), name, None, ())
        except PercvizError as exc:
            st.error(str(exc))
            return None
        ref = ImageRef(sample=name)
    else:
        limits = current_limits()
        upload = st.file_uploader(
            f"PNG, JPEG, WebP, BMP or TIFF (up to {limits.max_upload_mb} MB)",
            type=UPLOAD_TYPES,
            key=f"{key}_upload",
        )
        if upload is None:
            st.info("Choose a file to upload.")
            return None
        data = upload.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        try:
            loaded, full = _decode_upload(key, data, digest, upload.name, limits)
        except PercvizError as exc:
            st.error(str(exc))
            return None
        ref = ImageRef(path=upload.name, sha256=digest)
        name = upload.name
        for note in loaded.conversions:
            st.caption(f"Converted: {note}.")
    crop_value = float(st.session_state.get(f"{key}_crop", 1.0))  # links and presets set it
    crop = st.slider(
        "Central crop",
        0.5,
        1.0,
        crop_value,  # a re-created browser widget shows this default: the current crop, not 1.0
        step=0.025,
        format="%.3f",
        key=f"{key}_crop",
        help="Fraction of the short side kept before resizing to the model's input.",
    )
    if source == "Bundled photo":
        pixels = _fit(key, ref, lambda: loaded.pixels, size, float(crop))
    else:  # the full-resolution decode is never kept: decoded again only when the crop or size changes
        pixels = _fit(
            key,
            ref,
            lambda: full if full is not None else read_upload(data, name, limits).pixels,
            size,
            float(crop),
        )
    if preview:
        st.image(pixels, caption=f"What the model sees ({pixels.shape[1]}×{pixels.shape[0]})", width=224)
    return PickedImage(loaded.name, pixels, ref, float(crop), loaded)


@dataclass(frozen=True)
class UploadSummary(LoadedImage):
    """What a session keeps of an upload: a small preview (``pixels``) and the decoded size."""

    size: tuple[int, int] = (0, 0)

    @property
    def height(self) -> int:
        return self.size[0]

    @property
    def width(self) -> int:
        return self.size[1]


PREVIEW_SIDE = 256


def _decode_upload(
    key: str, data: bytes, digest: str, name: str, limits: Limits
) -> tuple[UploadSummary, np.ndarray | None]:
    """Check and decode an upload; the session keeps only its summary (never full-resolution
    float32: a 4000×4000 image is 190 MB). Returns the summary and, on a fresh decode, the pixels."""
    slot = f"{key}_decoded"
    cached = st.session_state.get(slot)
    if cached is not None and cached[0] == digest:
        return cached[1], None
    st.session_state.pop(slot, None)
    loaded = read_upload(data, name, limits)
    step = max(1, -(-max(loaded.height, loaded.width) // PREVIEW_SIDE))
    summary = UploadSummary(
        np.ascontiguousarray(loaded.pixels[::step, ::step]),
        loaded.name,
        loaded.format,
        loaded.conversions,
        size=(loaded.height, loaded.width),
    )
    st.session_state[slot] = (digest, summary)
    return summary, loaded.pixels


MB = 1024 * 1024
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff"]


def upload_total_mb(limits: Limits) -> int:
    """The most one session may upload at once (all files together): four files' worth."""
    return 4 * limits.max_upload_mb


def read_upload(data: bytes, name: str, limits: Limits) -> LoadedImage:
    """Every upload's checks, on every page: file size, decoding under the pixel cap, side length.

    Raises :class:`PercvizError` with one sentence naming the file and what is wrong.
    """
    if len(data) > limits.max_upload_mb * MB:
        raise PercvizError(f"{name} is larger than {limits.max_upload_mb} MB.")
    loaded = load_image(data, name=name, max_pixels=limits.max_pixels)
    check_image_size(loaded.height, loaded.width, limits)
    return loaded


def accept_uploads(
    sizes: Sequence[tuple[str, int]], limits: Limits
) -> tuple[list[int], list[tuple[str, str]]]:
    """Which of several uploads (``(name, bytes)`` in order) to read, and why the others are not.

    The first files up to this server's image count and total size are accepted; every other file
    is returned with its reason — none is dropped silently.
    """
    accepted: list[int] = []
    refused: list[tuple[str, str]] = []
    total, budget = 0, upload_total_mb(limits) * MB
    for i, (name, size) in enumerate(sizes):
        if len(accepted) >= limits.max_images:
            refused.append((name, f"at most {limits.max_images} images per evaluation"))
        elif total + size > budget:
            refused.append((name, f"the uploads together may be at most {upload_total_mb(limits)} MB"))
        else:
            accepted.append(i)
            total += size
    return accepted, refused


def _fit(key: str, ref: ImageRef, pixels: Callable[[], np.ndarray], size: int, crop: float) -> np.ndarray:
    """What the model sees, computed once per (image, size, crop) and kept in the session."""
    slot = f"{key}_fitted"
    ident = (ref, size, crop)
    cached = st.session_state.get(slot)
    if cached is not None and cached[0] == ident:
        return cached[1]
    fitted = fit_to_model(pixels(), size, crop)
    st.session_state[slot] = (ident, fitted)
    return fitted


def formula_lines(formula: str) -> str:
    """A long one-line formula as centred lines, one per top-level ``\\quad``-separated part
    (KaTeX ``gathered``), so it fits a narrow column instead of running off its right edge."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(formula):
        ch = formula[i]
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth == 0 and formula.startswith("\\quad", i) and not formula[i + 5 : i + 6].isalpha():
            parts.append(formula[start:i])
            start = i = i + 5
            continue
        i += 1
    parts.append(formula[start:])
    lines = [p.strip().removesuffix(",").strip() for p in parts if p.strip(" ,")]
    if len(lines) < 2:
        return formula
    return "\\begin{gathered}" + " \\\\ ".join(lines) + "\\end{gathered}"


def one_sentence(exc: BaseException) -> str:
    """What the user reads when something fails: one sentence, never a traceback."""
    from percviz.serving.jobs import describe_failure

    return describe_failure(exc)


def cached_predictions(model: Classifier, picked: PickedImage, top: int = 5) -> list[Prediction]:
    """Top-k of the picked image, computed once per (model, image, crop) in this session."""
    from percviz.images import to_tensor
    from percviz.models import predict

    ident = (model.spec.id, picked.ref, picked.crop, top)
    cached = st.session_state.get("pv_preview_preds")
    if cached is not None and cached[0] == ident:
        return cached[1]
    preds = predict(model, to_tensor(picked.pixels, model.device), top=top)[0]
    st.session_state["pv_preview_preds"] = (ident, preds)
    return preds


def render_done(name: str) -> float:
    """Seconds since ``page_setup`` (kept as ``pv_render_s_<name>``: the cached-view benchmark reads it)."""
    elapsed = time.perf_counter() - st.session_state.get("pv_render_start", time.perf_counter())
    st.session_state[f"pv_render_s_{name}"] = elapsed
    return elapsed
