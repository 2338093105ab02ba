"""View arrays (reference: scikit-image), the ``--maps`` files, plotly views and static figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import structural_similarity

from percviz.analysis.colour import REGION_COLOURS, colourize, overlay, region_colours
from percviz.analysis.explain import explain_curve, explain_scores, gradcam_plus_plus
from percviz.analysis.metrics import ssim
from percviz.analysis.views import (
    abs_diff,
    as_hwc,
    compute_views,
    nice_gain,
    perturbation_view,
    save_maps,
    ssim_maps,
)
from percviz.attacks import run_attack
from percviz.figures import (
    CAM_ALPHA,
    FigureRow,
    cam_figure,
    curve_figure,
    diff_figure,
    export_figure,
    figure_row,
    grid_figure,
    history_figure,
    magnification_figure,
    perturbation_figure,
    regions_figure,
    render_figure,
    render_recipes,
    row_from_views,
    rows_figure,
    ssim_figure,
    ssim_floor,
    ssim_scale,
    static_figure,
)

MAGIC = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF-"}


@pytest.fixture(scope="module")
def pair32(photos32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    x = photos32[:1]
    noise = (torch.rand(x.shape, generator=gen) - 0.5) * 0.2
    noise[..., :16, :] *= 0.1  # perturb the bottom half much more than the top half
    return x, (x + noise).clamp(0, 1)


@pytest.fixture(scope="module")
def tiny_result(tiny, photos32):
    return run_attack("fgsm", tiny, photos32[:2], {"eps": 0.06})


def test_ssim_maps_equal_scikit_image_per_channel(photos224):
    x = photos224[1:2]
    gen = torch.Generator().manual_seed(0)
    y = (x + 0.05 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    ours = ssim_maps(x, y)
    a, b = as_hwc(x).astype(np.float64), as_hwc(y).astype(np.float64)
    for c in range(3):
        _, ref = structural_similarity(
            a[..., c],
            b[..., c],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
            full=True,
        )
        np.testing.assert_allclose(ours[..., c], ref, atol=1e-4)
    assert ours.shape == (224, 224, 3) and ours.dtype == np.float32
    assert float(ours[5:-5, 5:-5].mean()) == pytest.approx(float(ssim(x, y)), abs=1e-5)


def test_perturbation_diff_and_colours(pair32):
    x, y = pair32
    delta = as_hwc(y).astype(np.float64) - as_hwc(x).astype(np.float64)
    view, gain = perturbation_view(x, y)
    assert gain == nice_gain(float(np.abs(delta).max()))
    assert gain * np.abs(delta).max() <= 0.5 + 1e-9  # the stated gain clips nothing
    np.testing.assert_allclose(view, 0.5 + gain * delta, atol=1e-6)
    view10, g10 = perturbation_view(x, y, gain=10.0)
    assert g10 == 10.0 and view10.min() >= 0 and view10.max() <= 1
    grey, _ = perturbation_view(x, x)
    assert np.all(grey == 0.5)
    with pytest.raises(ValueError, match="gain"):
        perturbation_view(x, y, gain=-1.0)
    assert nice_gain(0.03) == 10.0 and nice_gain(0.004) == 100.0 and nice_gain(0.0) == 1.0
    np.testing.assert_allclose(abs_diff(x, y), np.abs(delta), atol=1e-7)
    n = np.array([[1, 1], [0, 0]], bool)
    g = np.array([[1, 0], [1, 0]], bool)
    colours = region_colours(n, g)
    for (i, j), key in {(0, 0): "tp", (0, 1): "fp", (1, 0): "fn", (1, 1): "tn"}.items():
        np.testing.assert_allclose(colours[i, j], REGION_COLOURS[key])
    blend = overlay(np.zeros((2, 2, 3)), np.zeros((2, 2)), alpha=0.5)
    np.testing.assert_allclose(blend, 0.5 * np.array([0.0, 0.0, 0.5]) * np.ones((2, 2, 3)), atol=1e-6)


def test_save_maps_files_and_explain_json_recomputed(tiny, tiny_result, tmp_path):
    paths = save_maps(tiny_result, tiny, tmp_path, index=1)
    for name, shape in {
        "ssim_map.npy": (32, 32, 3),
        "diff.npy": (32, 32, 3),
        "magnified_original.npy": (32, 32, 3),
        "magnified_adversarial.npy": (32, 32, 3),
        "gradcam_original.npy": (32, 32),
        "gradcam_adversarial.npy": (32, 32),
    }.items():
        arr = np.load(tmp_path / name)
        assert arr.shape == shape and arr.dtype == np.float32, name
        assert np.isfinite(arr).all(), name
    assert set(paths) >= {"explain.json", "maps.json", "ssim_map.npy"}
    x, x_adv = tiny_result.x[1:2], tiny_result.x_adv[1:2]
    smap = np.load(tmp_path / "ssim_map.npy")
    cam = np.load(tmp_path / "gradcam_original.npy")
    np.testing.assert_array_equal(smap, ssim_maps(x, x_adv))
    np.testing.assert_array_equal(np.load(tmp_path / "diff.npy"), abs_diff(x, x_adv))
    label, adv = int(tiny_result.labels[1]), int(tiny_result.adv_labels[1])
    np.testing.assert_allclose(cam, gradcam_plus_plus(tiny, x, label).cam[0], atol=1e-5)
    np.testing.assert_allclose(
        np.load(tmp_path / "gradcam_adversarial.npy"), gradcam_plus_plus(tiny, x_adv, adv).cam[0], atol=1e-5
    )
    report = json.loads((tmp_path / "explain.json").read_text())
    assert report["noise_threshold"] == 0.11 and report["cam_threshold"] == 0.75
    assert report["scores"] == explain_scores(smap, cam, 0.11)  # recomputed from the saved maps
    assert report["curve"] == explain_curve(smap, cam)
    assert report["scores"]["tp"] + report["scores"]["fp"] > 0  # the attack perturbed something
    assert report["original_class"]["index"] == label and report["adversarial_class"]["index"] == adv
    meta = json.loads((tmp_path / "maps.json").read_text())
    low, high = meta["magnification_shared_scale"]
    mags = [np.load(tmp_path / f"magnified_{k}.npy") for k in ("original", "adversarial")]
    assert low == pytest.approx(min(m.min() for m in mags)) and high == pytest.approx(
        max(m.max() for m in mags)
    )


def test_undefined_precision_is_null_in_explain_json(tiny, photos32, tmp_path):
    x = photos32[2:3]
    save_maps((x, x.clone()), tiny, tmp_path)  # no perturbation: N is empty, precision is 0/0
    report = json.loads((tmp_path / "explain.json").read_text())
    assert report["scores"]["precision"] is None
    assert report["scores"]["fraction_perturbed"] == 0.0
    assert '"precision": null' in (tmp_path / "explain.json").read_text()


def _titles(fig) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def _pixels(trace: object) -> np.ndarray:
    """The 8-bit RGB pixels a plotly image trace shows (its PNG data URI, decoded)."""
    import base64
    import io

    source = str(trace.source)  # type: ignore[attr-defined]
    head, data = source.split(",", 1)
    assert head == "data:image/png;base64", head
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))


def _uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def test_plotly_view_figures(tiny, tiny_result):
    views = compute_views(tiny_result, tiny, 0)
    labels = [f"c{i}" for i in range(10)]
    figs = {
        "perturbation": perturbation_figure(views),
        "perturbation_x10": perturbation_figure(views, 10.0),
        "ssim": ssim_figure(views),
        "diff": diff_figure(views),
        "magnification": magnification_figure(views),
        "cam": cam_figure(views, labels=labels),
        "cam_shared": cam_figure(views, shared=True, labels=labels),
        "regions": regions_figure(views),
        "curve": curve_figure(views.explain["curve"]),
        "history": history_figure(tiny_result.history),
    }
    for name, fig in figs.items():
        assert fig.to_json(), name
        assert fig.data, name
    np.testing.assert_allclose(np.asarray(figs["ssim"].data[1].z), views.ssim_map[..., 1])
    assert {(t.zmin, t.zmax) for t in figs["ssim"].data} == {(ssim_floor(views.ssim_map), 1.0)}
    assert sum(bool(t.showscale) for t in figs["ssim"].data) == 1  # one colour bar for the three maps
    assert f"× {views.perturbation_gain:g}" in " ".join(_titles(figs["perturbation"]))
    assert "× 10 " in " ".join(_titles(figs["perturbation_x10"]))
    np.testing.assert_array_equal(
        _pixels(figs["perturbation_x10"].data[1]),
        _uint8(perturbation_view(views.original, views.adversarial, 10.0)[0]),
    )
    assert views.ssim == pytest.approx(float(ssim(tiny_result.x[:1], tiny_result.x_adv[:1])), abs=1e-5)
    row = row_from_views(views, "FGSM", labels=labels)
    np.testing.assert_array_equal(row.cam, views.cams.original)
    assert row.after == f"c{views.cams.adv_label}" and row.scores == views.explain["scores"]
    assert export_figure(views, "pdf", dpi=72).startswith(MAGIC[".pdf"])
    assert export_figure([row, row], ".png", dpi=72).startswith(MAGIC[".png"])


def test_cam_figure_min_max_and_shared_scale(tiny, tiny_result):
    views = compute_views(tiny_result, tiny, 0, magnification=False)
    c = views.cams
    own = cam_figure(views, alpha=1.0)  # alpha 1: the panels are the colour-mapped CAMs themselves
    for i, cam in enumerate((c.original, c.adversarial, c.adversarial_original_class)):
        np.testing.assert_array_equal(_pixels(own.data[i]), _uint8(colourize(cam)))
    shared = cam_figure(views, alpha=1.0, shared=True)
    raw = (c.raw_original, c.raw_adversarial, c.raw_adversarial_original_class)
    top = max(float(m.max()) for m in raw)
    for i, m in enumerate(raw):
        np.testing.assert_array_equal(_pixels(shared.data[i]), _uint8(colourize(m / top)))
        assert f"peak {float(m.max()) / top:.2f}" in _titles(shared)[i]
    bars = [t.marker.colorbar.title.text for f in (own, shared) for t in f.data if t.type == "scatter"]
    assert bars == ["GradCAM++ (min–max)", "GradCAM++ ÷ common max"]
    with pytest.raises(ValueError, match="which"):
        views.cam_overlay("nowhere")


def test_regions_and_curve_follow_the_threshold(tiny, tiny_result, photos32):
    views = compute_views(tiny_result, tiny, 0, magnification=False)
    for t in (0.0, 0.02, 0.11):
        fig = regions_figure(views, t)
        noise = (1.0 - views.ssim_map.astype(np.float64)).mean(-1) > t
        np.testing.assert_array_equal(_pixels(fig.data[0]), _uint8(region_colours(noise, views.region)))
        scores = explain_scores(views.ssim_map, views.cams.original, t)
        for key, entry in zip(("tp", "fp", "fn", "tn"), fig.data[1:], strict=True):
            assert f"({scores[key]} px, " in entry.name, (t, key)
    still = compute_views((photos32[:1], photos32[:1].clone()), tiny, magnification=False)
    curve = curve_figure(still.explain["curve"], threshold=0.05)
    precision = next(d for d in curve.data if d.name == "precision")
    assert len(precision.y) == len(still.explain["curve"]["thresholds"])
    assert all(v is None for v in precision.y)  # 0/0 everywhere: gaps, never zeros
    perturbed = next(d for d in curve.data if d.name == "pixels perturbed")
    assert list(perturbed.y) == [0.0] * len(perturbed.y)  # defined values stay numbers
    assert [s.x0 for s in curve.layout.shapes] == [0.11, 0.05]  # Table I's threshold and the chosen one


def test_ssim_floor():
    assert ssim_floor(np.array([0.95, 1.0])) == 0.9
    assert ssim_floor(np.array([0.42]), np.array([0.97])) == 0.4
    assert ssim_floor(np.array([-3.0])) == -1.0
    assert ssim_scale(np.array([0.61])).zmin == 0.6


def _rows(tiny, result) -> list[FigureRow]:
    return [figure_row(result, tiny, i, title=f"FGSM #{i}") for i in range(2)]


@pytest.mark.parametrize("suffix", [".png", ".svg", ".pdf"])
def test_static_figure_files_are_valid(tiny, tiny_result, tmp_path, suffix):
    out = render_figure(_rows(tiny, tiny_result), tmp_path / f"fig{suffix}")
    data = out.read_bytes()
    if suffix == ".svg":
        head = data[:400].decode("utf-8")
        assert head.startswith("<?xml") and "<svg" in head
        assert data.rstrip().endswith(b"</svg>")
    else:
        assert data.startswith(MAGIC[suffix])
    if suffix == ".pdf":
        assert data.rstrip().endswith(b"%%EOF")
    if suffix == ".png":
        with Image.open(out) as img:
            assert img.info["dpi"][0] == pytest.approx(300, abs=0.5)
            assert img.width > 2000


def test_figure_refuses_bad_requests(tiny, tiny_result, tmp_path):
    with pytest.raises(ValueError, match=r"\.png, \.svg or \.pdf"):
        render_figure(_rows(tiny, tiny_result), tmp_path / "fig.jpg")
    with pytest.raises(ValueError, match="at least one row"):
        render_figure([], tmp_path / "fig.png")
    rows = _rows(tiny, tiny_result)
    cells = [
        [
            ("image", r.adversarial),
            *[("heat", r.ssim_map[..., c]) for c in range(3)],
            ("image", overlay(r.original, r.cam)),
        ]
        for r in rows
    ]
    fig = grid_figure(cells, row_titles=[r.title for r in rows], heat=ssim_scale(*(r.ssim_map for r in rows)))
    assert len(fig.data) == 2 * 5
    heat = [t for t in fig.data if t.type == "heatmap"]
    assert {(t.zmin, t.zmax) for t in heat} == {(ssim_floor(*(r.ssim_map for r in rows)), 1.0)}
    assert sum(bool(t.showscale) for t in heat) == 1
    with pytest.raises(ValueError, match="at least one row"):
        grid_figure([])
    with pytest.raises(ValueError, match="HeatScale"):
        grid_figure(cells)


def test_render_recipes_runs_each_recipe(tiny, tiny_result, tmp_path, monkeypatch):
    from types import SimpleNamespace

    import percviz.pipeline
    from percviz.recipes import ImageRef, Recipe

    seen = []

    def fake_run(recipe, progress=None, *, check_hash=False):
        seen.append((recipe.attack, recipe.device, check_hash))
        return SimpleNamespace(result=tiny_result, model=tiny)

    monkeypatch.setattr(percviz.pipeline, "run_recipe", fake_run)
    recipes = [Recipe(model="tiny", image=ImageRef(sample="chelsea"), attack=a) for a in ("fgsm", "pgd")]
    out = render_recipes(recipes, tmp_path / "fig.svg", device="cpu")
    assert out.read_bytes().lstrip().startswith(b"<?xml")
    assert seen == [("fgsm", "cpu", True), ("pgd", "cpu", True)]


def _panel_arrays(fig) -> list[np.ndarray]:
    """The image arrays a static figure draws, in axes order (5 per row, colour bars skipped)."""
    return [np.asarray(ax.images[0].get_array()) for ax in fig.axes if ax.images]


def test_exported_figure_shows_what_the_screen_shows(tiny, photos32):
    """Compare's grid and its PDF/SVG/PNG export: the same five panels per row, column (e) the
    adversarial image's CAM for its new class (not the original's)."""
    result = run_attack("fgsm", tiny, photos32, {"eps": 0.1})
    views = [compute_views(result, tiny, i, magnification=False) for i in range(3)]
    rows = [row_from_views(v, f"#{i}", cam="adversarial") for i, v in enumerate(views)]
    screen = rows_figure(rows)
    printed = static_figure(rows, dpi=40)
    shown = [t for t in screen.data if t.type == "image"]  # per row: adversarial, CAM overlay
    panels = _panel_arrays(printed)
    assert len(shown) == 2 * len(rows) and len(panels) == 5 * len(rows)
    differs = False
    for i, v in enumerate(views):
        expected = overlay(v.adversarial, v.cams.adversarial, CAM_ALPHA)
        np.testing.assert_array_equal(_pixels(shown[2 * i + 1]), _uint8(expected))
        np.testing.assert_allclose(panels[5 * i + 4], expected, atol=1e-6)
        np.testing.assert_allclose(panels[5 * i], v.adversarial, atol=1e-6)
        for c in range(3):
            np.testing.assert_allclose(panels[5 * i + 1 + c], v.ssim_map[..., c], atol=1e-6)
            heat = [t for t in screen.data if t.type == "heatmap"][3 * i + c]
            np.testing.assert_allclose(np.asarray(heat.z), v.ssim_map[..., c], atol=1e-6)
        differs |= not np.allclose(expected, overlay(v.original, v.cams.original, CAM_ALPHA), atol=1e-3)
    assert differs  # the adversarial CAM column is not the original's in disguise
    heads = [ax.get_title() for ax in printed.axes if ax.get_title()]
    assert heads[-1] == "(e) GradCAM++, new class"
    assert "new class" in " ".join(_titles(screen))
    paper = static_figure([row_from_views(views[0], "#0")], dpi=40)
    np.testing.assert_allclose(
        _panel_arrays(paper)[4], overlay(views[0].original, views[0].cams.original, CAM_ALPHA), atol=1e-6
    )
    with pytest.raises(ValueError, match="cam must be one of"):
        row_from_views(views[0], cam="both")


# KaTeX functions the registry's formulas may use (a misspelt or run-together command such as
# ``\quadr`` renders as a red KaTeX error on the Learn page; the browser test checks the page too).
KATEX_COMMANDS = set(
    r"""\Big \big \Bigg \bigg \Delta \Pi \Sigma \alpha \arg \beta \begin \cap \cdot \delta \end
    \epsilon \eta \frac \gamma \hat \in \infty \kappa \lambda \le \leq \ge \geq \leftarrow \mathbf
    \mathcal \mathrm \max \min \mu \nabla \neq \odot \overline \phi \quad \qquad \rho \sigma \sqrt
    \sum \tanh \text \tfrac \tilde \top \varepsilon \sim \pm \mp \times \log \exp \operatorname
    \left \right \langle \rangle \lfloor \rfloor \lVert \rVert \vert \circ \bar \vec \partial
    \theta \tau \omega \pi \nu \xi \ell \mathbb \sup \inf \lim \to \mapsto \cup \subset \approx""".split()  # noqa: SIM905
)


def _commands(tex: str) -> set[str]:
    import re

    return set(re.findall(r"\\[A-Za-z]+", tex))


def test_every_formula_uses_known_katex_commands():
    from percviz.attacks.base import registry
    from ui.common import formula_lines

    for attack_id, spec in registry().items():
        for tex in (spec.formula, formula_lines(spec.formula)):
            unknown = _commands(tex) - KATEX_COMMANDS
            assert not unknown, f"{attack_id}: unknown LaTeX commands {sorted(unknown)} in {tex!r}"
            depth = 0
            for ch in tex.replace(r"\{", "").replace(r"\}", ""):
                depth += {"{": 1, "}": -1}.get(ch, 0)
                assert depth >= 0, f"{attack_id}: unbalanced braces"
            assert depth == 0, f"{attack_id}: unbalanced braces"
            assert tex.count(r"\begin{gathered}") == tex.count(r"\end{gathered}") <= 1


def test_formula_lines_splits_at_top_level_quads():
    from ui.common import formula_lines

    assert formula_lines(r"a = 1,\quad b_{\quad} = 2,\quad c") == (
        r"\begin{gathered}a = 1 \\ b_{\quad} = 2 \\ c\end{gathered}"
    )
    assert formula_lines(r"x = \frac{1}{2}") == r"x = \frac{1}{2}"
    assert formula_lines(r"a\qquad b") == r"a\qquad b"  # \qquad is not a separator
