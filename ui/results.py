"""Finished runs kept in the session (CPU arrays) keyed by their recipe, plus their downloads.

A result is computed once (:mod:`percviz.workflows.explore`); every later rerun (switching a view,
a tab, a gain slider) reads it from ``st.session_state`` and never touches the attack again. Its
views are computed the first time they are shown or downloaded, and kept with it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import streamlit as st

from percviz import figures
from percviz.analysis.metrics import l0_shares
from percviz.attacks.base import AttackSpec
from percviz.evaluation import run_label
from percviz.figures.style import ADVERSARIAL
from percviz.images import encode_png
from percviz.models import Classifier
from percviz.pipeline import PreparedImage
from percviz.progress import ProgressCallback
from percviz.recipes import Recipe
from percviz.workflows.explore import ExploreResult, explore_work
from ui.common import (
    PickedImage,
    cached_predictions,
    one_sentence,
    render_done,
)

MAX_RESULTS = 6
Entry = ExploreResult  # one finished run as the page keeps it


def attack_work(
    model: Classifier, picked: PickedImage, recipe: Recipe, key: str
) -> Callable[[ProgressCallback], Entry]:
    """The Explore job of the core (:func:`percviz.workflows.explore.explore_work`) for a picked image."""
    return explore_work(model, PreparedImage(picked.loaded, picked.pixels), picked.name, recipe, key)


def store(prefix: str, entry: Entry) -> None:
    """Keep ``entry`` (most recent last, at most MAX_RESULTS) and make it the current one."""
    results: dict[str, Entry] = st.session_state.setdefault(f"pv_results_{prefix}", {})
    results.pop(entry.key, None)
    results[entry.key] = entry
    while len(results) > MAX_RESULTS:
        results.pop(next(iter(results)))
    st.session_state[f"pv_current_{prefix}"] = entry.key


def stored(prefix: str) -> dict[str, Entry]:
    return st.session_state.get(f"pv_results_{prefix}", {})


def current_key(prefix: str) -> str | None:
    """The key of the result on screen (None before the first)."""
    return st.session_state.get(f"pv_current_{prefix}")


def current(prefix: str) -> Entry | None:
    return stored(prefix).get(current_key(prefix) or "")


def select(prefix: str, key: str) -> bool:
    if key in stored(prefix):
        st.session_state[f"pv_current_{prefix}"] = key
        return True
    return False


def npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array, dtype=np.float32))
    return buf.getvalue()


def stem(entry: Entry) -> str:
    return f"percviz-{entry.image_name.rsplit('.', 1)[0]}-{entry.recipe.attack}-seed{entry.recipe.seed}"


def download_row(entry: Entry, figure: Callable[[str], bytes] | None, why_no_figure: str = "") -> None:
    """Lossless PNG, float NPY, JSON result+recipe and the figure as PDF/SVG/PNG (``figure=None``:
    the figure's place says ``why_no_figure``)."""
    name = stem(entry)
    cols = [*st.columns(4), *st.columns(4)[:3]]  # two rows: labels stay whole at 1024 px
    cols[0].download_button(
        "Adversarial PNG",
        data=lambda: encode_png(entry.adversarial),
        file_name=f"{name}-adversarial.png",
        mime="image/png",
        on_click="ignore",
        icon=":material/image:",
        help="Lossless 8-bit PNG at the model's input size.",
        key=f"dl_png_{entry.short}",
    )
    cols[1].download_button(
        "Float NPY",
        data=lambda: npy_bytes(entry.adversarial),
        file_name=f"{name}-adversarial.npy",
        mime="application/octet-stream",
        on_click="ignore",
        icon=":material/data_array:",
        help="float32 H×W×3 in [0, 1]: exactly what the model saw.",
        key=f"dl_npy_{entry.short}",
    )
    cols[2].download_button(
        "Result JSON",
        data=lambda: json.dumps(entry.report, indent=2),
        file_name=f"{name}-result.json",
        mime="application/json",
        on_click="ignore",
        icon=":material/description:",
        help="Predictions, metrics, passes, timing and the full recipe (replay with `percviz attack --recipe`).",
        key=f"dl_json_{entry.short}",
    )
    cols[3].download_button(
        "Recipe JSON",
        data=lambda: entry.recipe.to_json(),
        file_name=f"{name}-recipe.json",
        mime="application/json",
        on_click="ignore",
        icon=":material/receipt_long:",
        help="Only the recipe: model, image, attack, parameters, seed.",
        key=f"dl_recipe_{entry.short}",
    )
    if figure is None:
        cols[4].caption(f"No figure download: {why_no_figure}")
    else:
        figure_buttons(cols[4:], figure, f"{name}-figure", f"dl_fig_{entry.short}")


def figure_buttons(cols: Sequence[Any], figure: Callable[[str], bytes], file_stem: str, key: str) -> None:
    """PDF, SVG and PNG download buttons of a static figure (``figure(fmt) -> bytes``), one per column."""
    for col, fmt, mime in zip(
        cols, ("pdf", "svg", "png"), ("application/pdf", "image/svg+xml", "image/png"), strict=True
    ):
        col.download_button(
            f"Figure {fmt.upper()}",
            data=lambda fmt=fmt: figure(fmt),
            file_name=f"{file_stem}.{fmt}",
            mime=mime,
            on_click="ignore",
            icon=":material/insert_chart:",
            key=f"{key}_{fmt}",
        )


# ------------------------------------------------------------------ what Explore shows of a result


def keep_widgets(prefix: str, keys: list[str]) -> None:
    """Restore widget values Streamlit dropped while another page was shown (see ui.params.remember)."""
    pinned = st.session_state.get(f"pv_pinned_{prefix}", {})
    for key in keys:
        if key not in st.session_state and key in pinned:
            st.session_state[key] = pinned[key]


def request_run(prefix: str, *_: Any) -> None:
    """Ask the page to run the form's settings on this rerun (a preset click, a shared link)."""
    st.session_state[f"pv_run_request_{prefix}"] = True


def take_run_request(prefix: str) -> bool:
    return bool(st.session_state.pop(f"pv_run_request_{prefix}", False))


def entry_label(entry: Entry) -> str:
    """One line per history entry: attack, strength, image, seed, outcome (and "cancelled")."""
    r = entry.recipe
    text = run_label(r.attack, r.params)
    crop = f", crop {r.crop_fraction:g}" if r.crop_fraction != 1.0 else ""
    tail = (
        f"cancelled at iteration {len(entry.result.history)}"
        if entry.result.cancelled
        else entry.after[0].label
    )
    return f"{text} on {entry.image_name}{crop}, seed {r.seed} — {tail}"


def preview(model: Classifier, picked: PickedImage, spec: AttackSpec, prefix: str) -> None:
    """Before any run: what the model sees, its top-5, and what the chosen attack does."""
    left, right = st.columns([1, 1.3], gap="large")
    left.image(picked.pixels, caption=f"{picked.name}: what the model sees", width="stretch")
    with right:
        st.plotly_chart(
            figures.prediction_figure(cached_predictions(model, picked), f"{model.spec.title}: top-5"),
            key=f"{prefix}_preview_chart",
        )
        st.markdown(f"**{spec.title}** — {spec.summary}")
        st.markdown("Set the parameters in the sidebar and press **Run attack**.")


def verdict_text(entry: Entry) -> tuple[str, bool]:
    """The headline sentence (HTML, labels escaped) and whether the attack succeeded."""
    import html

    res = entry.result
    ok = bool(res.success[0])
    b0, a0 = entry.before[0], entry.after[0]
    before = f"{html.escape(b0.label)} ({b0.probability:.0%})"
    after = f"{html.escape(a0.label)} ({a0.probability:.0%})"
    within = getattr(res, "within_bound", None)
    fooled = bool(res.fooled[0]) if getattr(res, "fooled", None) is not None else ok
    if ok:
        text = f"<b>Fooled.</b> {before} → <b>{after}</b>"
    elif fooled and within is not None and not bool(within[0]):
        text = f"<b>Fooled, but outside the bound</b> (not a success): {before} → {after}"
    else:
        text = f"<b>Not fooled.</b> The model still says {after}"
    if "rho_2" in res.constraints:  # Balda et al. Theorem 1: linearised distance to the boundary
        text += f" · robustness ρ₂ = {res.constraints['rho_2'][0]:.4g}"
    if res.cancelled:
        text = f"<b>Cancelled</b> at iteration {len(res.history)} — last iterate: " + text
    return text, ok


def headline(entry: Entry, title: str) -> None:
    """Verdict, the three images, both top-5 charts and the metric cards."""
    res = entry.result
    text, ok = verdict_text(entry)
    st.markdown(
        f'<div class="pv-verdict {"pv-ok" if ok else "pv-no"}">{text} · {title}, '
        f"{_count(len(res.history), 'iteration')}, {res.forward_passes} forward / {res.backward_passes} backward "
        f"passes, {res.wall_time:.2f} s on {res.device}</div>",
        unsafe_allow_html=True,
    )
    if ok and not entry.png_ok:
        st.warning(
            "8-bit quantisation undoes this attack: the saved PNG is classified as the original class "
            "again (use the float .npy to keep it adversarial)."
        )
    from ui import views

    arrays = entry.views
    b0, a0 = entry.before[0], entry.after[0]
    c1, c2, c3 = st.columns(3, gap="medium")
    c1.image(entry.original, caption=f"original — {b0.label}", width="stretch")
    c2.image(entry.adversarial, caption=f"adversarial — {a0.label}", width="stretch")
    c3.image(
        arrays.perturbation,
        caption=f"perturbation × {arrays.perturbation_gain:g} (grey = 0)",
        width="stretch",
    )
    c1, c2 = st.columns(2, gap="large")
    with c1:
        views.show(
            (entry.short, "before"),
            lambda: figures.prediction_figure(entry.before, "original: top-5", height=220),
        )
    with c2:
        views.show(
            (entry.short, "after"),
            lambda: figures.prediction_figure(
                entry.after, "adversarial: top-5", color=ADVERSARIAL, height=220
            ),
        )
    metric_cards(entry)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def metric_cards(entry: Entry) -> None:
    """The headline numbers with their units, in two rows of four (readable at 1024 px)."""
    m = entry.metrics
    h, w = entry.original.shape[:2]
    shares = l0_shares(m, h, w)
    cards: list[tuple[str, str, str]] = [
        (
            "SSIM",
            f"{m['ssim']:.4f}",
            "Mean SSIM over R, G, B (Gaussian window, σ 1.5, data range 1); 1 = identical.",
        ),
        ("PSNR", f"{m['psnr']:.1f} dB", "Peak signal-to-noise ratio for data range 1."),
        (
            "L∞",
            f"{m['linf'] * 255:.2f}/255",
            f"Largest change of one value: {m['linf']:.5f} in [0, 1] units.",
        ),
        (
            "L2",
            f"{m['l2']:.3f} ([0,1] units)",
            f"Euclidean norm of the whole perturbation: {m['l2'] * 255:.1f} in 0–255 units.",
        ),
        (
            "L0",
            f"{shares['pixels']:.1%} of pixels",
            f"{int(m['l0']):,} of {h * w:,} pixel locations changed in at least one channel.",
        ),
        (
            "L0 (values)",
            f"{shares['values']:.1%} of values",
            f"{int(m['l0_values']):,} of {3 * h * w:,} channel values changed.",
        ),
        ("S1 / S2", f"{m['s1']:.3f} / {m['s2']:.3f}", "Global luminance (S1) and structure (S2) similarity."),
    ]
    for name, values in entry.result.constraints.items():
        if name.startswith("lpips"):
            net = name.split("_", 1)[1] if "_" in name else "self"
            cards.insert(
                1,
                (
                    f"LPIPS ({net})",
                    f"{values[0]:.4f}",
                    "The attack's own perceptual distance |φ(x̃) − φ(x)|₂.",
                ),
            )
    cards.append(
        (
            "8-bit PNG",
            "adversarial" if entry.png_ok else "not adversarial",
            "Whether the saved 8-bit PNG still fools the model.",
        )
    )
    for row in range(0, len(cards), 4):
        cols = st.columns(4)
        for col, (label, value, help_text) in zip(cols, cards[row : row + 4], strict=False):
            col.metric(label, value, help=help_text)


def details(entry: Entry) -> None:
    """Every metric, constraint and the loss curve, in an expander."""
    from ui import views

    res, m = entry.result, entry.metrics
    with st.expander("All metrics, constraints and diagnostics"):
        t1, t2 = st.columns(2)
        t1.dataframe({"metric": list(m), "value": [f"{v:.6g}" for v in m.values()]}, hide_index=True)
        t2.dataframe(
            {
                "constraint": list(res.constraints),
                "value": [f"{v[0]:.6g}" for v in res.constraints.values()],
            },
            hide_index=True,
        )
        if any(isinstance(h.get("loss"), int | float) for h in res.history):
            views.show((entry.short, "loss"), lambda: figures.history_figure(res.history))
        if res.info:
            st.json(entry.report.get("info", {}), expanded=False)


def downloads(entry: Entry, title: str) -> None:
    """The download row; a download that fails must never take the page down."""
    from ui import views

    missing = entry.views.unavailable("cams")  # the figure's last column is GradCAM++
    subtitle = run_label(entry.recipe.attack, entry.recipe.params, with_attack=False)
    try:
        download_row(
            entry,
            None if missing else views.figure_exporter([(entry.views, title, subtitle)]),
            missing or "",
        )
    except Exception as exc:
        st.error(one_sentence(exc))


def done() -> None:
    render_done("explore")
