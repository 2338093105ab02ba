"""Plotly charts (the app): the §V-B scores against the noise threshold (Pochimireddy et al. 2021
Fig. 5), the objective per iteration, sweep curves (Fig. 6–9), the transfer matrix, the operating
characteristic P(D) (Zhang et al. 2020 eq. 21), top-k predictions, and a regression model's outputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from percviz.analysis.explain import NOISE_THRESHOLD
from percviz.figures.style import (
    ACCENT,
    MARKERS,
    OKABE_ITO,
    curve_xy,
    metric_title,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from percviz.models import Prediction


def _chart_layout(title: str, height: int, x_title: str, y_title: str = "") -> dict[str, Any]:
    return {
        "height": height,
        "margin": {"l": 10, "r": 10, "t": 36, "b": 10},
        "title": {"text": title, "x": 0.01, "xanchor": "left", "font": {"size": 13}},
        "template": "plotly_white",
        "xaxis": {"title": {"text": x_title}},
        "yaxis": {"title": {"text": y_title}},
        "legend": {"orientation": "h", "y": -0.3, "font": {"size": 11}},
    }


_CURVE_SCORES = (  # key, name, colour (Okabe–Ito), shown at first
    ("precision", "precision", "#0072B2", True),
    ("recall", "recall", "#E69F00", True),
    ("iou", "IOU", "#009E73", True),
    ("iou_outside", "IOU outside", "#D55E00", True),
    ("fraction_perturbed", "pixels perturbed", "#7f7f7f", False),
)


def curve_figure(
    curve: Mapping[str, Sequence[Any]], threshold: float = NOISE_THRESHOLD, height: int = 300
) -> go.Figure:
    """Pochimireddy et al. 2021 Fig. 5: precision, recall, IOU and IOU-outside against the noise threshold.

    ``curve`` is :func:`percviz.analysis.explain.explain_curve`'s dict (scores in [0, 1]). Undefined
    values (``None``, a 0/0 ratio) are gaps, never zeros. The fraction of pixels perturbed is in
    the legend, hidden until clicked. A dashed line marks ``threshold``, a dotted one Table I's.
    The x axis ends a little after the last threshold that still leaves a pixel in N (beyond it
    every score is 0 or undefined), or after the two marked thresholds if they lie further.
    """
    import plotly.graph_objects as go

    t = [float(v) for v in curve["thresholds"]]
    data = [
        {
            "type": "scatter",
            "x": t,
            "y": [None if v is None else float(v) for v in curve[key]],
            "mode": "lines+markers",
            "marker": {"size": 3},
            "line": {"color": colour, "width": 2},
            "name": name,
            "connectgaps": False,
            "visible": True if shown else "legendonly",
            "hovertemplate": f"{name} %{{y:.3f}} at threshold %{{x:.3g}}<extra></extra>",
        }
        for key, name, colour, shown in _CURVE_SCORES
    ]
    layout = _chart_layout(
        "Scores vs noise threshold (Pochimireddy et al. 2021 Fig. 5)",
        height,
        "noise threshold on 1 − SSIM",
        "score",
    )
    layout["yaxis"]["range"] = [0, 1.02]
    active = [x for x, f in zip(t, curve["fraction_perturbed"], strict=True) if f]
    right = max(active[-1] if active else 0.0, threshold, NOISE_THRESHOLD)
    end = min(t[-1], right * 1.1) if t else 1.0
    layout["xaxis"]["range"] = [0, end]
    marks = [(NOISE_THRESHOLD, "#999", "dot", f"Table I {NOISE_THRESHOLD:g}")]
    if threshold != NOISE_THRESHOLD:
        marks.append((threshold, "#333", "dash", f"{threshold:g}"))
    line = {"type": "line", "xref": "x", "yref": "paper", "y0": 0, "y1": 1}
    layout["shapes"] = [
        {**line, "x0": x, "x1": x, "line": {"color": colour, "dash": dash, "width": 1}}
        for x, colour, dash, _ in marks
    ]
    layout["annotations"] = [
        {
            "text": text,
            "x": x,
            "y": 1.0,
            "xref": "x",
            "yref": "paper",
            "xanchor": "left" if x < end / 2 else "right",  # the label stays inside the axes
            "yanchor": "top",
            "xshift": 3 if x < end / 2 else -3,
            "showarrow": False,
            "font": {"size": 10, "color": colour},
        }
        for x, colour, _, text in marks
    ]
    return go.Figure(data=data, layout=layout)


def history_figure(history: Sequence[Mapping[str, Any]], height: int = 220) -> go.Figure:
    """The attack's objective per iteration, as reported through its progress callback."""
    import plotly.graph_objects as go

    points = [
        (h.get("iteration", i + 1), h["loss"])
        for i, h in enumerate(history)
        if isinstance(h.get("loss"), int | float)
    ]
    trace = {
        "type": "scatter",
        "x": [p[0] for p in points],
        "y": [p[1] for p in points],
        "mode": "lines+markers",
        "line": {"color": ACCENT},
    }
    return go.Figure(data=[trace], layout=_chart_layout("objective per iteration", height, "iteration"))


def transfer_figure(matrix: Mapping[str, Any], titles: Mapping[str, str] | None = None) -> Any:
    """Heat map of a transfer matrix (``TransferMatrix.as_dict()``): source rows × target columns.

    Each cell is the fooling rate on the target of examples made on the source, in percent; the
    diagonal is the white-box rate. Cells not computed are left blank.
    """
    import plotly.graph_objects as go

    names = titles or {}
    sources = [names.get(s, s) for s in matrix["sources"]]
    targets = [names.get(t, t) for t in matrix["targets"]]
    z = [[None if v is None else 100.0 * v for v in row] for row in matrix["fooling_rate"]]
    text = [["" if v is None else f"{v:.0f}%" for v in row] for row in z]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=targets,
            y=sources,
            zmin=0,
            zmax=100,
            colorscale="Reds",
            text=text,
            texttemplate="%{text}",
            hovertemplate="made on %{y}<br>classified by %{x}<br>fooling rate %{z:.1f}%<extra></extra>",
            colorbar={"title": "fooling %"},
        )
    )
    n = len(matrix.get("images", []))
    fig.update_layout(
        title={"text": f"Transfer matrix: {matrix['attack']} on {n} images", "font": {"size": 14}},
        xaxis={"title": "target model (classifies)", "side": "bottom"},
        yaxis={"title": "source model (attacked)", "autorange": "reversed"},
        height=120 + 90 * len(sources),
        margin={"l": 10, "r": 10, "t": 50, "b": 10},
    )
    return fig


def sweep_figure(
    curves: Sequence[Any], metric: str, names: Mapping[str, str], x_label: str, height: int = 300
) -> go.Figure:
    """One metric of :class:`percviz.evaluation.CurveSweep` results against the swept value, one
    line per attack (``names``: attack id → title) in the Okabe–Ito colours with distinct markers
    (Pochimireddy et al. 2021 Fig. 6–9)."""
    import plotly.graph_objects as go

    title, unit = metric_title(metric)
    data = []
    for i, c in enumerate(curves):
        xs, ys = curve_xy(c, metric)
        data.append(
            {
                "type": "scatter",
                "x": xs,
                "y": ys,
                "mode": "lines+markers",
                "name": names.get(c.attack, c.attack),
                "line": {"color": OKABE_ITO[i % len(OKABE_ITO)], "width": 2},
                "marker": {"symbol": MARKERS[i % len(MARKERS)][0], "size": 8},
                "hovertemplate": f"%{{x:.4g}}: %{{y:{'.1%' if unit == '%' else '.4g'}}}<extra>%{{fullData.name}}</extra>",
            }
        )
    y_title = title + (f" ({unit})" if unit and unit != "%" else "")
    layout = _chart_layout(y_title, height, x_label, y_title)
    layout["margin"]["b"] = 60
    layout["legend"]["y"] = -0.35
    if unit == "%":
        layout["yaxis"].update(range=[0, 1.02], tickformat=".0%")
    return go.Figure(data=data, layout=layout)


def operating_characteristic_figure(
    curves: Sequence[tuple[str, Mapping[str, Sequence[float]]]], height: int = 380
) -> go.Figure:
    """P(D), the share of images fooled at L2 distortion ≤ D (Zhang et al. 2020 eq. 21), one step
    line per ``(name, {"d": …, "p": …})`` in the Okabe–Ito colours; empty curves are left out."""
    import plotly.graph_objects as go

    data = [
        {
            "type": "scatter",
            "x": list(oc["d"]),
            "y": list(oc["p"]),
            "mode": "lines",
            "line_shape": "hv",
            "name": name,
        }
        for name, oc in curves
        if oc.get("d")
    ]
    layout = _chart_layout(
        "Operating characteristic (Zhang et al. 2020 eq. 21)", height, "L2 distortion D ([0,1] units)", "P(D)"
    )
    layout["yaxis"]["range"] = [0, 1.02]
    layout["colorway"] = list(OKABE_ITO)
    layout["legend"] = {"font": {"size": 11}}
    return go.Figure(data=data, layout=layout)


def prediction_figure(
    preds: Sequence[Prediction], title: str, color: str = ACCENT, height: int = 250
) -> go.Figure:
    """Top-k probabilities as horizontal bars, the most likely class on top."""
    import plotly.graph_objects as go

    top = list(preds)[::-1]
    fig = go.Figure(
        go.Bar(
            x=[p.probability for p in top],
            y=[f"{p.label} ({p.index})" for p in top],
            orientation="h",
            marker_color=color,
            text=[f"{p.probability:.1%}" for p in top],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2%}<extra></extra>",
        )
    )
    fig.update_layout(
        title={"text": title, "font": {"size": 14}},
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"range": [0, 1], "tickformat": ".0%"},
    )
    return fig


def output_figure(out: np.ndarray, out_adv: np.ndarray, height: int = 300) -> go.Figure:
    """A regression model's vector outputs per coordinate: f(x), f(x+η) and |f(x) − f(x+η)|."""
    import plotly.graph_objects as go

    index = np.arange(out.shape[0])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=index, y=out, name="f(x)", line={"width": 1}))
    fig.add_trace(go.Scatter(x=index, y=out_adv, name="f(x+η)", line={"width": 1}))
    fig.add_trace(go.Bar(x=index, y=np.abs(out_adv - out), name="|f(x) − f(x+η)|", opacity=0.5))
    fig.update_layout(height=height, template="plotly_white", margin={"l": 40, "r": 10, "t": 30, "b": 30})
    return fig
