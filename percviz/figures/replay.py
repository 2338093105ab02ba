"""The replay view: a run's recorded iterates scrubbed in the browser (plotly frames with a step
slider and ▶ play), built on :func:`~percviz.figures.interactive.grid_figure`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from percviz.figures.interactive import _uint8, grid_figure, png_source
from percviz.figures.style import INK

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from percviz.analysis.replay import Replay

REPLAY_PX = 160  # frames are drawn at most this many pixels wide (the replay holds up to 40 × 2 images)


def _display(img: np.ndarray) -> str:
    """``img`` as a PNG data URI, downsampled (area) to at most :data:`REPLAY_PX` pixels wide."""
    from PIL import Image

    h, w = img.shape[:2]
    if max(h, w) <= REPLAY_PX:
        return png_source(img)
    scale = REPLAY_PX / max(h, w)
    small = Image.fromarray(_uint8(img), mode="RGB").resize(
        (max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX
    )
    return png_source(np.asarray(small, dtype=np.float32) / 255.0)


def replay_figure(replay: Replay, height: int = 360) -> go.Figure:
    """The recorded iterates with a step slider and ▶ play, scrubbed in the browser: the iterate,
    its perturbation (one gain for all steps) and, as the title, the step, top-1 class and
    probability, loss and distances (:meth:`~percviz.analysis.replay.Replay.caption`)."""
    import plotly.graph_objects as go

    fig = grid_figure(
        [[("image", replay.frames[0]), ("image", replay.perturbations[0])]],
        col_titles=["iterate", f"perturbation × {replay.gain:g} (grey = 0)"],
        height=height,
    )
    sources = [(_display(f), _display(p)) for f, p in zip(replay.frames, replay.perturbations, strict=True)]
    for trace, source in zip(fig.data, sources[0], strict=True):
        trace.source = source
    names = [str(k) for k in range(len(sources))]
    fig.frames = [
        go.Frame(
            name=name,
            data=[{"type": "image", "source": a}, {"type": "image", "source": b}],
            traces=[0, 1],
            layout={"title": {"text": replay.caption(k)}},
        )
        for k, (name, (a, b)) in enumerate(zip(names, sources, strict=True))
    ]
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    fig.update_layout(
        title={"text": replay.caption(0), "x": 0.0, "font": {"size": 14, "color": INK}},
        margin={"l": 0, "r": 0, "t": 70, "b": 90},
        height=height + 110,
        sliders=[
            {
                "active": 0,
                "x": 0.16,
                "len": 0.84,
                "y": 0,
                "xanchor": "left",
                "yanchor": "top",
                "currentvalue": {"prefix": "step ", "font": {"size": 13, "color": INK}},
                "pad": {"t": 40, "b": 10},
                "steps": [
                    {"label": str(it), "method": "animate", "args": [[name], still]}
                    for name, it in zip(names, replay.iterations, strict=True)
                ],
            }
        ],
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.15,
                "y": 0,
                "xanchor": "right",
                "yanchor": "top",
                "pad": {"t": 75, "r": 6},
                "buttons": [
                    {
                        "label": "▶ play",
                        "method": "animate",
                        "args": [
                            None,
                            {**still, "frame": {"duration": 250, "redraw": True}, "fromcurrent": True},
                        ],
                    },
                    {"label": "❚❚ pause", "method": "animate", "args": [[None], still]},
                ],
            }
        ],
    )
    return fig
