"""Every view of one result as interactive plotly figures (arrays come from ``percviz.views``).

``precompute`` runs once per result in the worker thread (GradCAM++ needs the model); the
renderers only arrange cached arrays into figures, so switching a tab or moving a view slider
never reruns anything expensive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from percviz import figures as pv_figures
from percviz import views as pv_views
from percviz.models import Classifier
from percviz.models.classifier import imagenet_labels

PLOT_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
CHANNEL_NAMES = ("R", "G", "B")
HIDDEN_AXIS = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": "", "showline": False}


def precompute(model: Classifier, entry: Any) -> dict[str, Any]:
    """The view arrays of a finished result."""
    return {"arrays": pv_views.compute_views(entry.result, model, 0)}


def _grid_layout(
    n: int, titles: list[str], height: int, gap: float = 0.02
) -> tuple[dict[str, Any], list[str]]:
    """A lean 1×n layout (plain dicts: make_subplots is ~10× slower to build)."""
    w = (1 - gap * (n - 1)) / n
    layout: dict[str, Any] = {
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 28, "b": 0},
        "plot_bgcolor": "white",
        "annotations": [],
    }
    suffixes = []
    for i in range(n):
        ax = "" if i == 0 else str(i + 1)
        suffixes.append(ax)
        d0 = i * (w + gap)
        layout[f"xaxis{ax}"] = {**HIDDEN_AXIS, "domain": _dom(d0, d0 + w), "constrain": "domain"}
        layout[f"yaxis{ax}"] = {
            **HIDDEN_AXIS,
            "anchor": f"x{ax}",
            "scaleanchor": f"x{ax}",
            "constrain": "domain",
        }
        layout["annotations"].append(_title(titles[i], d0 + w / 2, 1.0, 13))
    return layout, suffixes


def _title(text: str, x: float, y: float, size: int) -> dict[str, Any]:
    """A title centred above the point ``(x, y)`` in paper coordinates."""
    return {
        "text": text,
        "x": x,
        "y": y,
        "xref": "paper",
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": size},
    }


def image_fig(images: list[np.ndarray], titles: list[str], height: int = 300) -> go.Figure:
    """Images side by side (RGB values on hover)."""
    layout, axes = _grid_layout(len(images), titles, height)
    data = [
        {
            "type": "image",
            "z": (np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255).round().astype(np.uint8),
            "xaxis": f"x{ax}",
            "yaxis": f"y{ax}",
            "hovertemplate": "x %{x}, y %{y}<br>RGB %{z}<extra></extra>",
        }
        for img, ax in zip(images, axes, strict=True)
    ]
    return go.Figure(data=data, layout=layout)


def heat_fig(
    maps: list[np.ndarray],
    titles: list[str],
    zmin: float,
    zmax: float,
    colorscale: str,
    label: str,
    height: int = 300,
) -> go.Figure:
    """Heat maps side by side on one colour scale (value on hover)."""
    layout, axes = _grid_layout(len(maps), titles, height)
    for ax in axes:
        layout[f"yaxis{ax}"]["autorange"] = "reversed"
    data = [
        {
            "type": "heatmap",
            "z": np.asarray(m, dtype=np.float32),
            "zmin": zmin,
            "zmax": zmax,
            "colorscale": colorscale,
            "showscale": i == len(maps) - 1,
            "colorbar": {"title": {"text": label, "side": "right"}, "thickness": 12, "len": 0.9},
            "xaxis": f"x{ax}",
            "yaxis": f"y{ax}",
            "hovertemplate": f"x %{{x}}, y %{{y}}<br>{label} %{{z:.4f}}<extra></extra>",
        }
        for i, (m, ax) in enumerate(zip(maps, axes, strict=True))
    ]
    return go.Figure(data=data, layout=layout)


def cached_figure(key: tuple[Any, ...], build: Any) -> go.Figure:
    """Figures are built once per (result, view, setting) and kept in the session."""
    figs: dict[tuple[Any, ...], go.Figure] = st.session_state.setdefault("pv_figures", {})
    if key not in figs:
        while len(figs) >= 48:
            figs.pop(next(iter(figs)))
        figs[key] = build()
    return figs[key]


def ssim_floor(low: float) -> float:
    """Bottom of a shared SSIM colour scale: a tenth at or below the lowest value, at most 0.9."""
    return float(max(-1.0, min(0.9, math.floor(low * 10.0) / 10.0)))


def _dom(a: float, b: float) -> list[float]:
    return [min(max(a, 0.0), 1.0), min(max(b, 0.0), 1.0)]


def show(key: tuple[Any, ...], build: Any) -> None:
    """A cached figure; a figure that cannot be drawn becomes one sentence, never a traceback."""
    try:
        fig = cached_figure(key, build)
    except Exception as exc:
        from ui.common import one_sentence

        st.error(f"This chart could not be drawn: {one_sentence(exc)}")
        return
    st.plotly_chart(fig, config=PLOT_CONFIG, key="_".join(str(k) for k in key))


VIEW_TABS = ("Perturbation", "SSIM maps", "Difference", "Magnification", "GradCAM++", "Noise vs CAM")


def render(entry: Any, prefix: str) -> None:
    """All views as lazy tabs: only the open tab is built, from cached arrays and figures."""
    arrays = entry.views["arrays"]
    tabs = st.tabs(list(VIEW_TABS), key=f"{prefix}_view", on_change="rerun")
    k = entry.short
    if tabs[0].open:
        with tabs[0]:
            _perturbation(arrays, k, prefix)
    if tabs[1].open:
        with tabs[1]:
            st.caption(
                "Per-channel SSIM map (Gaussian σ 1.5, data range 1): 1 = unchanged, low = structural change."
            )
            show(
                (k, "ssim"),
                lambda: heat_fig(
                    [arrays.ssim_map[..., c] for c in range(3)],
                    [
                        f"SSIM {n} (mean {arrays.ssim_map[5:-5, 5:-5, c].mean():.4f})"
                        for c, n in enumerate(CHANNEL_NAMES)
                    ],
                    ssim_floor(float(arrays.ssim_map.min())),
                    1.0,
                    "Viridis",
                    "SSIM",
                ),
            )
    if tabs[2].open:
        with tabs[2]:
            top = float(arrays.diff.max()) or 1.0
            st.caption(
                f"Per-channel |adversarial − original| in [0, 1] units (max {top:.4f} ≈ {top * 255:.1f}/255)."
            )
            show(
                (k, "diff"),
                lambda: heat_fig(
                    [arrays.diff[..., c] for c in range(3)],
                    [f"|Δ| {n}" for n in CHANNEL_NAMES],
                    0.0,
                    top,
                    "Magma",
                    "|Δ|",
                ),
            )
    if tabs[3].open:
        with tabs[3]:
            _magnification(arrays, k)
    if tabs[4].open:
        with tabs[4]:
            _cams(arrays, entry, k, prefix)
    if tabs[5].open:
        with tabs[5]:
            _regions(arrays, k)


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

    def build() -> go.Figure:
        view = (
            arrays.perturbation
            if gain == auto
            else pv_views.perturbation_view(arrays.original, arrays.adversarial, gain)[0]
        )
        return image_fig(
            [arrays.original, view, arrays.adversarial],
            ["original", f"perturbation × {gain:g} (grey = 0)", "adversarial"],
            height=320,
        )

    show((k, "pert", gain), build)


def _magnification(arrays: Any, k: str) -> None:
    if arrays.magnified_original is None:
        st.info("Magnification was not computed for this result.")
        return
    scale = arrays.magnification_scale
    st.caption(
        "Adversarial magnification (seed 002 App. 1): what a joint-bilateral filter removes, amplified; "
        f"both images on one shared display scale [{scale[0]:.3g}, {scale[1]:.3g}]."
    )
    show(
        (k, "mag"),
        lambda: image_fig(
            [
                pv_views.to_unit(arrays.magnified_original, scale),
                pv_views.to_unit(arrays.magnified_adversarial, scale),
            ],
            ["original, magnified", "adversarial, magnified"],
            height=340,
        ),
    )


def _cams(arrays: Any, entry: Any, k: str, prefix: str) -> None:
    alpha = st.slider("Overlay opacity", 0.0, 1.0, 0.45, 0.05, key=f"{prefix}_alpha_{k}")
    before = entry.before[0].label
    after = entry.after[0].label
    show(
        (k, "cam", alpha),
        lambda: image_fig(
            [
                arrays.cam_overlay("original", alpha),
                arrays.cam_overlay("adversarial", alpha),
                arrays.cam_overlay("adversarial_original_class", alpha),
            ],
            [f"original → {before}", f"adversarial → {after}", f"adversarial, for {before}"],
            height=320,
        ),
    )
    st.caption("GradCAM++ at the model's CAM layer, each map min–max normalised (jet colour map).")


def _regions(arrays: Any, k: str) -> None:
    left, right = st.columns([1.2, 1], gap="medium")
    with left:
        show(
            (k, "regions"), lambda: image_fig([arrays.regions()], ["noise map N vs CAM region G"], height=340)
        )
        legend = " ".join(
            f'<span style="display:inline-block;width:0.8em;height:0.8em;background:rgb'
            f"{tuple(int(255 * c) for c in pv_views.REGION_COLOURS[key])};margin:0 0.3em 0 0.8em;"
            f'border:1px solid #999"></span>{pv_views.REGION_LABELS[key]}'
            for key in ("tp", "fp", "fn", "tn")
        )
        st.markdown(f'<div style="font-size:0.82rem">{legend}</div>', unsafe_allow_html=True)
    with right:
        report = arrays.explain
        st.caption(
            f"Seed 000 §V-B: N = mean(1 − SSIM map) > {report['noise_threshold']:g}, "
            f"G = GradCAM++(original) > {report['cam_threshold']:g}."
        )
        rows = {"mean": report["scores"], **{c.upper(): v for c, v in report["per_channel"].items()}}
        names = ("precision", "recall", "iou", "iou_outside", "fraction_perturbed")
        st.dataframe(
            {"channel": list(rows), **{n: [_score(r.get(n)) for r in rows.values()] for n in names}},
            hide_index=True,
        )


def _score(value: Any) -> str:
    return "—" if value is None else f"{float(value):.3f}"


def figure_exporter(rows: list[tuple[Any, str, str]]) -> Callable[[str], bytes]:
    """``fmt -> bytes`` of the static seed 000 Fig. 3 figure (percviz.figures) for
    ``rows = [(ViewArrays, title, subtitle), …]``."""

    def run(fmt: str) -> bytes:
        labels = imagenet_labels()
        fig_rows = [pv_figures.row_from_views(v, title=t, subtitle=s, labels=labels) for v, t, s in rows]
        return pv_figures.export_figure(fig_rows, fmt, dpi=200)

    return run


def mosaic_fig(
    cells: list[list[tuple[str, np.ndarray]]],
    col_titles: list[str],
    row_titles: list[str],
    cell_px: int = 150,
    heat: tuple[float, float, str, str] = (0.0, 1.0, "Viridis", "SSIM"),
    cell_titles: list[list[str]] | None = None,
) -> go.Figure:
    """A rows × cols grid (seed 000 Fig. 3 layout): each cell ``("image", HxWx3)`` or ``("heat", HxW)``.

    Heat cells share one colour scale ``heat = (zmin, zmax, colorscale, label)``.
    """
    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    left, gap_x, top = 0.13, 0.008, 0.04
    gap_y = 0.02 if cell_titles is None else 0.28 / max(n_rows, 1)
    w = (1 - left - gap_x * (n_cols - 1)) / n_cols
    h = (1 - top - gap_y * (n_rows - 1)) / n_rows
    layout: dict[str, Any] = {
        "height": int(n_rows * cell_px * (1.05 if cell_titles is None else 1.3) + 60),
        "margin": {"l": 0, "r": 0, "t": 34 if cell_titles is None else 8, "b": 0},
        "plot_bgcolor": "white",
        "annotations": [],
    }
    data: list[dict[str, Any]] = []
    zmin, zmax, cscale, label = heat
    shown_scale = False
    for r, row in enumerate(cells):
        y1 = 1 - top - r * (h + gap_y)
        layout["annotations"].append(
            {
                "text": row_titles[r],
                "x": left - 0.01,
                "y": y1 - h / 2,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "right",
                "yanchor": "middle",
                "showarrow": False,
                "font": {"size": 12},
                "align": "right",
            }
        )
        for c, (kind, arr) in enumerate(row):
            i = r * n_cols + c
            ax = "" if i == 0 else str(i + 1)
            x0 = left + c * (w + gap_x)
            layout[f"xaxis{ax}"] = {
                **HIDDEN_AXIS,
                "domain": _dom(x0, x0 + w),
                "anchor": f"y{ax}",
                "constrain": "domain",
            }
            layout[f"yaxis{ax}"] = {
                **HIDDEN_AXIS,
                "domain": _dom(y1 - h, y1),
                "anchor": f"x{ax}",
                "scaleanchor": f"x{ax}",
                "constrain": "domain",
            }
            if kind == "image":
                data.append(
                    {
                        "type": "image",
                        "z": (np.clip(arr, 0, 1) * 255).round().astype(np.uint8),
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "hovertemplate": "RGB %{z}<extra></extra>",
                    }
                )
            else:
                layout[f"yaxis{ax}"]["autorange"] = "reversed"
                data.append(
                    {
                        "type": "heatmap",
                        "z": np.asarray(arr, dtype=np.float32),
                        "zmin": zmin,
                        "zmax": zmax,
                        "colorscale": cscale,
                        "showscale": not shown_scale,
                        "xaxis": f"x{ax}",
                        "yaxis": f"y{ax}",
                        "colorbar": {
                            "title": {"text": label},
                            "thickness": 10,
                            "len": 0.5,
                            "y": 1,
                            "yanchor": "top",
                        },
                        "hovertemplate": f"{label} %{{z:.4f}}<extra></extra>",
                    }
                )
                shown_scale = True
            if cell_titles is not None:
                layout["annotations"].append(_title(cell_titles[r][c], x0 + w / 2, y1, 11))
            if r == 0 and cell_titles is None:
                layout["annotations"].append(_title(col_titles[c], x0 + w / 2, 1.0, 13))
    return go.Figure(data=data, layout=layout)


def history_fig(history: list[dict[str, Any]]) -> go.Figure:
    """The attack's objective per iteration (as reported through its progress callback)."""
    points = [
        (h.get("iteration", i + 1), h["loss"])
        for i, h in enumerate(history)
        if isinstance(h.get("loss"), int | float)
    ]
    fig = go.Figure(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="lines+markers",
            line={"color": "#3b5bdb"},
        )
    )
    fig.update_layout(
        height=220,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        title={"text": "objective per iteration", "font": {"size": 13}},
        xaxis_title="iteration",
    )
    return fig
