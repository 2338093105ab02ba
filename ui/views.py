"""Every view of one result, as Streamlit tabs (figures from ``percviz.figures``, arrays from ``percviz.analysis.views``).

Only the open tab runs: its arrays are computed the first time it opens (a result's
:class:`~percviz.analysis.views.LazyViews` keeps them) and its figures are cached, so switching back
to a tab or moving a view control never recomputes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from percviz import figures as pv_figures
from percviz.analysis.explain import NOISE_THRESHOLD, explain_curve, explain_report
from percviz.models.classifier import imagenet_labels

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def cached_figure(key: tuple[Any, ...], build: Any) -> go.Figure:
    """Figures are built once per (result, view, setting) and kept in the session."""
    figs: dict[tuple[Any, ...], go.Figure] = st.session_state.setdefault("pv_figures", {})
    if key not in figs:
        while len(figs) >= 48:
            figs.pop(next(iter(figs)))
        figs[key] = build()
    return figs[key]


def show(key: tuple[Any, ...], build: Any) -> None:
    """A cached figure; a figure that cannot be drawn becomes one sentence, never a traceback."""
    try:
        fig = cached_figure(key, build)
    except Exception as exc:
        from ui.common import one_sentence

        st.error(f"This chart could not be drawn: {one_sentence(exc)}")
        return
    st.plotly_chart(fig, config=PLOT_CONFIG, key="_".join(str(k) for k in key))


VIEWS = {
    "perturbation": "Perturbation",
    "ssim": "SSIM maps",
    "difference": "Difference",
    "magnification": "Magnification",
    "gradcam": "GradCAM++",
    "noise": "Noise vs CAM",
    "replay": "Replay",
}
"""The view tabs: the id a link's ``view=`` carries → the tab's label."""
VIEW_TABS = tuple(VIEWS.values())
VIEW_NEEDS = {"gradcam": "cams", "noise": "explain"}  # views that need a part a model may not give
VIEW_PARAM = "view"
FIRST_VIEW = next(iter(VIEWS))


def view_id(value: str) -> str | None:
    """The view a link names, by id (``gradcam``) or by its tab label (``GradCAM++``); None if none."""
    text = value.strip().lower()
    return next((vid for vid, label in VIEWS.items() if text in (vid, label.lower())), None)


def _chosen_key(prefix: str) -> str:
    return f"pv_view_{prefix}"


def _tabs_key(prefix: str) -> str:
    return f"{prefix}_view"


def choose(prefix: str, view: str) -> None:
    """Open ``view`` (an id of :data:`VIEWS`) the next time the views are drawn (a link's ``view=``)."""
    st.session_state[_chosen_key(prefix)] = view
    st.session_state.pop(_tabs_key(prefix), None)


def chosen(prefix: str) -> str | None:
    """The open view's id for the URL (None for the first view, which a link need not name)."""
    view = st.session_state.get(_chosen_key(prefix))
    return view if view in VIEWS and view != FIRST_VIEW else None


def render(entry: Any, prefix: str) -> None:
    """The views as tabs; only the open tab is computed and drawn (each view's arrays are computed
    the first time it opens, then kept with the result). The tabs live in a fragment, so a switch
    reruns only them, and the URL's ``view=`` follows the open tab (a copied link opens it)."""
    _views(entry, prefix)


@st.fragment
def _views(entry: Any, prefix: str) -> None:
    wanted = st.session_state.get(_chosen_key(prefix), FIRST_VIEW)
    if _tabs_key(prefix) not in st.session_state:  # first drawing, or after a page without the tabs
        st.session_state[_tabs_key(prefix)] = VIEWS.get(wanted, VIEW_TABS[0])
    tabs = st.tabs(list(VIEW_TABS), key=_tabs_key(prefix), on_change="rerun")
    opened = next((vid for vid, tab in zip(VIEWS, tabs, strict=True) if tab.open), FIRST_VIEW)
    if opened != wanted:
        st.session_state[_chosen_key(prefix)] = opened
    _follow_in_url(opened)
    k = entry.short
    for vid, tab in zip(VIEWS, tabs, strict=True):
        if not (tab.open or _computed(entry, vid)):
            continue
        with tab:
            missing = entry.views.unavailable(VIEW_NEEDS.get(vid, ""))
            if missing:
                st.info(f"{VIEWS[vid]} is not available for this result. {missing}")
            elif vid == "perturbation":
                _perturbation(entry.views, k, prefix)
            elif vid == "ssim":
                _ssim(entry.views, k)
            elif vid == "difference":
                _difference(entry.views, k)
            elif vid == "magnification":
                _magnification(entry.views, k)
            elif vid == "gradcam":
                _cams(_ready(entry.views, "cams", "Computing GradCAM++ of both images…"), k, prefix)
            elif vid == "noise":
                _regions(_ready(entry.views, "explain", "Computing GradCAM++ and the noise map…"), k, prefix)
            else:
                replay_view(entry, k)


VIEW_PARTS_OF = {
    "ssim": "ssim_map",
    "difference": "diff",
    "magnification": "magnification",
    "gradcam": "cams",
    "noise": "explain",
}
"""The :class:`~percviz.analysis.views.LazyViews` part each view draws (the perturbation is always there)."""


def _computed(entry: Any, vid: str) -> bool:
    """Whether view ``vid`` of ``entry`` has nothing left to compute: such a view is drawn in its tab
    even while closed, so opening it again shows at once, in the browser (no round trip). The
    replay is drawn only while open: its figure carries every recorded step (megabytes), which
    every view switch would otherwise send again."""
    if vid == "replay":
        return False
    return vid == "perturbation" or bool(entry.views.ready(VIEW_PARTS_OF[vid]))


def replay_view(entry: Any, k: str, height: int = 360) -> None:
    """The run's recorded iterates with a step slider and ▶ play (scrubbing happens in the browser:
    every step is in the figure, nothing reruns)."""
    if entry.result.frames is None:
        st.info("This run kept no iterates to replay (runs of this version keep up to 40).")
        return
    with st.spinner("Classifying each recorded step…"):
        replay = entry.replay()
    if replay is None:
        st.info("This run kept no iterates to replay.")
        return
    show((k, "replay", height), lambda: pv_figures.replay_figure(replay, height))
    kept = entry.result.frames.numel() * entry.result.frames.element_size() / 2**20
    st.caption(
        f"{len(replay.iterations)} recorded images of the run's {replay.total} steps, evenly spaced "
        f"(step 0 is the clean image, the last the returned one), kept as float16 ({kept:.1f} MB); "
        "drag the slider or press ▶ play — nothing is recomputed."
    )


def _follow_in_url(view: str) -> None:
    """The URL's ``view=`` names the open view (absent for the first)."""
    if view == FIRST_VIEW:
        if VIEW_PARAM in st.query_params:
            del st.query_params[VIEW_PARAM]
    elif st.query_params.get(VIEW_PARAM) != view:
        st.query_params[VIEW_PARAM] = view


def _ready(arrays: Any, part: str, text: str) -> Any:
    """``arrays`` with ``part`` (cams, explain, magnification) computed, behind this view's own
    spinner the first time."""
    if hasattr(arrays, "ready") and not arrays.ready(part):
        with st.spinner(text):
            arrays.compute(part)
    return arrays


def _ssim(arrays: Any, k: str) -> None:
    st.caption("Per-channel SSIM map (Gaussian σ 1.5, data range 1): 1 = unchanged, low = structural change.")
    show((k, "ssim"), lambda: pv_figures.ssim_figure(arrays))


def _difference(arrays: Any, k: str) -> None:
    diff = arrays.diff
    top = float(diff.max())
    st.caption(
        f"Per-channel |adversarial − original| in [0, 1] units (max {top:.4f} ≈ {top * 255:.1f}/255); "
        "black = unchanged."
    )
    show((k, "diff"), lambda: pv_figures.diff_figure(arrays))


@st.fragment
def _perturbation(arrays: Any, k: str, prefix: str) -> None:
    auto = float(arrays.perturbation_gain)
    options = sorted({1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, auto})
    gain = st.select_slider(
        "Gain",
        options=options,
        value=auto,
        key=f"{prefix}_gain_{k}",
        format_func=lambda g: f"×{g:g}" + (" (auto)" if g == auto else ""),
        help="The perturbation is shown as 0.5 + gain·(adversarial − original): grey = no change.",
    )
    show((k, "pert", gain), lambda: pv_figures.perturbation_figure(arrays, gain))


@st.fragment
def _magnification(arrays: Any, k: str) -> None:
    _ready(arrays, "magnification", "Bilateral filtering both images…")
    scale = arrays.magnification_scale
    st.caption(
        "Adversarial magnification (Zhang et al. 2020, Smooth adversarial examples, Appendix 1): what a "
        "joint-bilateral filter removes, amplified; both images on one shared display scale "
        f"[{scale[0]:.3g}, {scale[1]:.3g}] (dimensionless: local deviations in units of local std)."
    )
    show((k, "mag"), lambda: pv_figures.magnification_figure(arrays))


CAM_SCALES = ("each map min–max", "shared with the original")


@st.fragment
def _cams(arrays: Any, k: str, prefix: str) -> None:
    left, right = st.columns([1.2, 1], gap="medium")
    alpha = left.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key=f"{prefix}_alpha_{k}")
    scale = right.radio(
        "Scale",
        CAM_SCALES,
        key=f"{prefix}_camscale_{k}",
        horizontal=True,
        help="Min–max shows where each map looks; the shared scale keeps the raw CAM magnitudes, "
        "so a response the attack weakens or strengthens shows as such.",
    )
    shared = scale == CAM_SCALES[1]
    show(
        (k, "cam", alpha, shared),
        lambda: pv_figures.cam_figure(arrays, alpha=alpha, shared=shared, labels=_labels(arrays)),
    )
    if shared:
        st.caption(
            "GradCAM++ at the model's CAM layer (jet colour map). Shared scale: the three raw maps "
            "(before min–max) divided by their common maximum, so 1 is the strongest response in any "
            "of them; each title gives its map's peak on that scale."
        )
    else:
        st.caption(
            "GradCAM++ at the model's CAM layer (jet colour map), each map min–max normalised on its "
            "own: where the model looks, not how strongly (switch to the shared scale for magnitudes)."
        )


SCORE_COLUMNS = {
    "precision": "precision",
    "recall": "recall",
    "iou": "IOU",
    "iou_outside": "IOU outside",
    "fraction_perturbed": "perturbed",
}


NOISE_STEP = 0.005
NOISE_GRID = tuple(round(NOISE_STEP * i, 3) for i in range(101))  # the slider's values, 0 … 0.5


@st.fragment
def _regions(arrays: Any, k: str, prefix: str) -> None:
    cam_threshold = arrays.explain["cam_threshold"]
    threshold = st.slider(
        "Noise threshold on 1 − SSIM",
        NOISE_GRID[0],
        NOISE_GRID[-1],
        NOISE_THRESHOLD,
        NOISE_STEP,
        format="%.3f",
        key=f"{prefix}_noise_{k}",
        help=f"N = mean over channels of (1 − SSIM map) > threshold; Pochimireddy et al. (Table I) use "
        f"{NOISE_THRESHOLD:g}.",
    )
    left, right = st.columns([1.1, 1], gap="medium")
    with left:
        show((k, "regions", threshold), lambda: pv_figures.regions_figure(arrays, threshold, height=460))
    with right:
        report = explain_report(arrays.ssim_map, arrays.cams.original, threshold, cam_threshold)
        st.caption(
            "Pochimireddy, Siripuram, Channappayya, “Can Perceptual Guidance Lead to Semantically "
            f"Explainable Adversarial Perturbations?”, §V-B: N = mean(1 − SSIM map) > {threshold:g}, "
            "G = GradCAM++(original) > "
            f"{cam_threshold:g}. — = undefined (0/0)."
        )
        rows = {"mean": report["scores"], **{c.upper(): v for c, v in report["per_channel"].items()}}
        table: dict[str, list[str]] = {"N from": list(rows)}
        for key, name in SCORE_COLUMNS.items():
            pct = key == "fraction_perturbed"
            table[name] = [_score(r[key], pct) for r in rows.values()]
        st.dataframe(table, hide_index=True, width="stretch")
        show(
            (k, "curve", threshold),
            lambda: pv_figures.curve_figure(
                explain_curve(arrays.ssim_map, arrays.cams.original, NOISE_GRID, cam_threshold),
                threshold,
                height=280,
            ),
        )


def _labels(arrays: Any) -> list[str]:
    """The class names of the result's own model (ImageNet's when the arrays do not carry them)."""
    return getattr(arrays, "labels", None) or imagenet_labels()


def _score(value: Any, pct: bool = False) -> str:
    if value is None:
        return "—"
    return f"{100 * float(value):.3g}%" if pct else f"{float(value):.3f}"


def figure_exporter(rows: list[tuple[Any, str, str]]) -> Callable[[str], bytes]:
    """``fmt -> bytes`` of the static Fig. 3-style figure of Pochimireddy et al. (percviz.figures) for
    ``rows = [(ViewArrays, title, subtitle), …]``."""

    def run(fmt: str) -> bytes:
        fig_rows = [pv_figures.row_from_views(v, title=t, subtitle=s, labels=_labels(v)) for v, t, s in rows]
        return pv_figures.export_figure(fig_rows, fmt, dpi=200)

    return run
