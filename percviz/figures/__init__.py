"""Figures for the screen (plotly) and for papers (matplotlib), drawn from data computed elsewhere.

- :mod:`~percviz.figures.style`: colour maps, the shared SSIM scale, the Okabe–Ito palette, captions.
- :mod:`~percviz.figures.rows`: the rows of the publication figure and how they are computed.
- :mod:`~percviz.figures.interactive`: plotly panels, grids and the views of one pair.
- :mod:`~percviz.figures.charts`: plotly charts (scores, sweeps, transfer, P(D), predictions).
- :mod:`~percviz.figures.publication`: the Pochimireddy et al. 2021 Fig. 3 figure and the sweep/grid
  exports as PDF / SVG / PNG (matplotlib object API).
- :mod:`~percviz.figures.report`: the PNG plots ``percviz evaluate`` writes.

Every public name is re-exported here (``from percviz import figures``).
"""

from __future__ import annotations

from percviz.figures.charts import (
    curve_figure,
    history_figure,
    operating_characteristic_figure,
    output_figure,
    prediction_figure,
    sweep_figure,
    transfer_figure,
)
from percviz.figures.interactive import (
    cam_figure,
    diff_figure,
    grid_figure,
    heatmap_figure,
    image_figure,
    magnification_figure,
    perturbation_figure,
    regions_figure,
    rows_figure,
    ssim_figure,
)
from percviz.figures.publication import (
    export_figure,
    export_grid,
    export_sweep,
    render_figure,
    render_recipes,
    static_figure,
)
from percviz.figures.replay import replay_figure
from percviz.figures.report import (
    plot_report,
)
from percviz.figures.rows import (
    CAM_HEADS,
    CamOf,
    FigureRow,
    figure_cells,
    figure_heads,
    figure_row,
    recipe_rows,
    row_from_views,
)
from percviz.figures.style import (
    CAM_ALPHA,
    CAM_COLORSCALE,
    CHANNEL_NAMES,
    DIFF_COLORSCALE,
    FIGURE_FORMATS,
    MARKERS,
    OKABE_ITO,
    SSIM_COLORMAPS,
    SSIM_COLORSCALE,
    SWEEP_METRICS,
    Cell,
    HeatScale,
    class_name,
    curve_xy,
    grid_cell_caption,
    metric_title,
    short,
    ssim_floor,
    ssim_scale,
)

__all__ = [
    "CAM_ALPHA",
    "CAM_COLORSCALE",
    "CAM_HEADS",
    "CHANNEL_NAMES",
    "DIFF_COLORSCALE",
    "FIGURE_FORMATS",
    "MARKERS",
    "OKABE_ITO",
    "SSIM_COLORMAPS",
    "SSIM_COLORSCALE",
    "SWEEP_METRICS",
    "CamOf",
    "Cell",
    "FigureRow",
    "HeatScale",
    "cam_figure",
    "class_name",
    "curve_figure",
    "curve_xy",
    "diff_figure",
    "export_figure",
    "export_grid",
    "export_sweep",
    "figure_cells",
    "figure_heads",
    "figure_row",
    "grid_cell_caption",
    "grid_figure",
    "heatmap_figure",
    "history_figure",
    "image_figure",
    "magnification_figure",
    "metric_title",
    "operating_characteristic_figure",
    "output_figure",
    "perturbation_figure",
    "plot_report",
    "prediction_figure",
    "recipe_rows",
    "regions_figure",
    "render_figure",
    "render_recipes",
    "replay_figure",
    "row_from_views",
    "rows_figure",
    "short",
    "ssim_figure",
    "ssim_floor",
    "ssim_scale",
    "static_figure",
    "sweep_figure",
    "transfer_figure",
]
