"""Compare's figure on screen and its PDF are one rendering: the PDF, rasterised, paints each SSIM
value in the colour the screen's colour scale gives it; the CAM region is outlined in both; the row
captions are the same lines."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from percviz.analysis.views import compute_views
from percviz.attacks import run_attack
from percviz.figures import SSIM_COLORMAPS, export_figure, rows_figure, static_figure
from percviz.figures.rows import row_caption, row_from_views

pdfium = pytest.importorskip("pypdfium2")
SCALE = 4.0  # PDF points → pixels when rasterising (288 dpi)


def _rows(tiny, photos32):  # type: ignore[no-untyped-def]
    result = run_attack("fgsm", tiny, photos32[:2], {"eps": 0.1})
    views = [compute_views(result, tiny, i, magnification=False) for i in range(2)]
    return [row_from_views(v, f"FGSM #{i}", "ε = 0.1", cam="adversarial") for i, v in enumerate(views)]


def _screen_colour(figure, value: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The colour the screen's heat map gives ``value``: its plotly scale, linearly interpolated."""
    heat = next(t for t in figure.data if t.type == "heatmap")
    t = (value - heat.zmin) / (heat.zmax - heat.zmin)
    stops = [(float(p), [int(v) for v in re.findall(r"\d+", c)]) for p, c in heat.colorscale]
    positions = [p for p, _ in stops]
    return np.array([np.interp(t, positions, [c[k] for _, c in stops]) for k in range(3)])


def _pdf_pixels(pdf: bytes) -> np.ndarray:
    page = pdfium.PdfDocument(io.BytesIO(pdf))[0]
    return np.asarray(page.render(scale=SCALE).to_pil().convert("RGB"), dtype=np.float64)


@pytest.mark.parametrize("colormap", list(SSIM_COLORMAPS))
def test_the_pdf_paints_ssim_values_in_the_screens_colours(tiny, photos32, colormap: str) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(tiny, photos32)
    screen = rows_figure(rows, ssim_colormap=colormap)
    pdf = export_figure(rows, "pdf", dpi=72, ssim_colormap=colormap)
    pixels = _pdf_pixels(pdf)
    layout = static_figure(rows, dpi=72, ssim_colormap=colormap)  # the geometry the PDF was drawn with
    height, width = pixels.shape[:2]
    other = next(c for c in SSIM_COLORMAPS if c != colormap)
    worst, worst_other = 0.0, 0.0
    for r, row in enumerate(rows):
        for c in range(3):
            box = layout.axes[5 * r + 1 + c].get_position()
            ssim = row.ssim_map[..., c]
            n = ssim.shape[0]
            for i in range(2, n - 2, 3):  # block centres, away from the frame
                for j in range(2, n - 2, 3):
                    if i > 0.7 * n and j < 0.5 * n:  # the channel's mean SSIM is printed there
                        continue
                    x = (box.x0 + (j + 0.5) / n * box.width) * width
                    y = (1 - box.y1 + (i + 0.5) / n * box.height) * height
                    got = pixels[int(y), int(x)]
                    worst = max(worst, float(np.abs(got - _screen_colour(screen, float(ssim[i, j]))).max()))
                    wrong = rows_figure(rows, ssim_colormap=other)
                    worst_other = max(
                        worst_other, float(np.abs(got - _screen_colour(wrong, float(ssim[i, j]))).max())
                    )
    assert worst <= 8.0, f"PDF colour differs from the screen's by {worst:.0f}/255"
    assert worst_other > 40.0  # the check can fail: the other colour map is far off


def test_outline_and_captions_are_the_same_on_screen_and_in_print(tiny, photos32) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(tiny, photos32)
    screen = rows_figure(rows)
    printed = static_figure(rows, dpi=40)
    contours = [t for t in screen.data if t.type == "contour"]
    assert len(contours) == len(rows)
    for trace, row in zip(contours, rows, strict=True):
        assert trace.contours.start == trace.contours.end == 0.75 and trace.line.color == "white"
        np.testing.assert_allclose(np.asarray(trace.z), row.cam, atol=1e-6)
    for r in range(len(rows)):
        assert printed.axes[5 * r + 4].collections, "the print outlines the CAM region too"
    notes = [a.text for a in screen.layout.annotations]
    texts = [t.get_text() for t in printed.texts]
    for row in rows:
        lines = row_caption(row)
        assert "<br>".join(f"<b>{t}</b>" if bold else t for t, bold in lines) in notes
        assert all(text in texts for text, _ in lines)
        assert any(text.startswith("prec.") for text, _ in lines)
