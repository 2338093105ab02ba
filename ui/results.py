"""Finished runs kept in the session (CPU arrays) keyed by their recipe, plus their downloads.

A result is computed once; every later rerun (switching a view, a tab, a gain slider) reads it
from ``st.session_state`` and never touches the attack again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import streamlit as st

from percviz.attacks.base import AttackResult, run_attack
from percviz.images import encode_png, to_numpy
from percviz.metrics import compare_images
from percviz.models import Classifier, Prediction, predict
from percviz.pipeline import PreparedImage, RunOutcome, build_report, png_still_adversarial
from percviz.recipes import Recipe
from ui.common import PickedImage

MAX_RESULTS = 6


def recipe_key(recipe: Recipe) -> str:
    """The cache key: the recipe without versions/device (what decides the numbers here)."""
    data = recipe.as_dict()
    data.pop("versions", None)
    data.pop("device", None)
    return json.dumps(data, sort_keys=True)


@dataclass
class Entry:
    """One finished attack and everything the page shows about it (all on CPU)."""

    key: str
    recipe: Recipe
    image_name: str
    result: AttackResult
    before: list[Prediction]
    after: list[Prediction]
    metrics: dict[str, float]
    png_ok: bool
    report: dict[str, Any]
    views: dict[str, Any] = field(default_factory=dict)

    @property
    def short(self) -> str:
        return hashlib.sha1(self.key.encode()).hexdigest()[:10]

    @property
    def original(self) -> np.ndarray:
        return to_numpy(self.result.x)[0]

    @property
    def adversarial(self) -> np.ndarray:
        return to_numpy(self.result.x_adv)[0]


def attack_work(model: Classifier, picked: PickedImage, recipe: Recipe, key: str) -> Callable[..., Entry]:
    """The job body: run the attack, then everything the page needs, in the worker thread."""
    x = PreparedImage(picked.loaded, picked.pixels).tensor(model.device)

    def work(progress: Callable[[dict[str, Any]], bool]) -> Entry:
        result = run_attack(recipe.attack, model, x, recipe.params, seed=recipe.seed, progress=progress)
        return finish(model, picked, recipe, key, result)

    return work


def finish(model: Classifier, picked: PickedImage, recipe: Recipe, key: str, result: AttackResult) -> Entry:
    outcome = RunOutcome(recipe, model, PreparedImage(picked.loaded, picked.pixels), result)
    report = build_report(outcome)
    entry = Entry(
        key=key,
        recipe=recipe,
        image_name=picked.name,
        result=result,
        before=predict(model, result.x, 5)[0],
        after=predict(model, result.x_adv, 5)[0],
        metrics=compare_images(result.x, result.x_adv)[0],
        png_ok=png_still_adversarial(model, result)[0],
        report=report,
    )
    from ui.views import precompute

    entry.views = precompute(model, entry)
    return entry


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


def current(prefix: str) -> Entry | None:
    return stored(prefix).get(st.session_state.get(f"pv_current_{prefix}", ""))


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


def download_row(entry: Entry, figure: Callable[[str], bytes]) -> None:
    """Lossless PNG, float NPY, JSON result+recipe and the figure as PDF/SVG/PNG."""
    name = stem(entry)
    cols = st.columns(7)
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
