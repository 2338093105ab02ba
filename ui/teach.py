"""Explore's teaching view and live mode: large images, the verdict, one sentence, the formula, a
prepared lesson stepped with one click, and a wipe between the original and the adversarial image."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import streamlit as st

from percviz.attacks.base import AttackSpec
from ui.views import replay_view

# The lesson: the same cat, from the one-step baseline to perceptually guided steps, then targeted.
LESSON: tuple[tuple[str, str, dict[str, Any], str], ...] = (
    (
        "1 · FGSM",
        "fgsm",
        {"eps": 4 / 255},
        "One signed gradient step of 4/255: every pixel moves, and the noise is visible up close.",
    ),
    (
        "2 · PGD",
        "pgd",
        {"eps": 4 / 255, "steps": 10, "step_size": 1 / 255},
        "Ten smaller steps inside the same 4/255 box: a stronger attack with the same budget.",
    ),
    (
        "3 · FPGAP",
        "fpgap",
        {"eps2": 0.005, "steps": 10},
        "Steps that keep the SSIM structure term close to 1: the change hides where the image is busy.",
    ),
    (
        "4 · cat → toaster",
        "pgd",
        {"eps": 8 / 255, "steps": 20, "step_size": 1 / 255, "target": 859},
        "The same PGD, now aimed at one class: the model sees a toaster in the cat.",
    ),
)

LIVE_ATTACKS = frozenset({"fgsm", "fgm", "gnm", "minnorm"})
LIVE_MAX_STEPS = 10


def live_reason(spec: AttackSpec, values: dict[str, Any] | None) -> str | None:
    """Why live mode is off for this attack and these settings (None: it may run live)."""
    if spec.id in LIVE_ATTACKS:
        return None
    steps = (values or {}).get("steps")
    if isinstance(steps, int) and steps <= LIVE_MAX_STEPS and "search_steps" not in (values or {}):
        return None
    return f"Live mode is for attacks that finish in well under a second (FGSM, FGM, GNM, min-norm, or ≤ {LIVE_MAX_STEPS} steps)."


def lesson_buttons(prefix: str, on_step: Callable[[str, str, dict[str, Any]], None]) -> None:
    """One button per lesson step; a click loads that step's attack and settings and runs them."""
    st.caption("Lesson (one click loads and runs each step, on the chosen photo)")
    cols = st.columns(2)
    for i, (title, attack, params, _) in enumerate(LESSON):
        cols[i % 2].button(
            title,
            key=f"{prefix}_lesson_{i}",
            width="stretch",
            on_click=on_step,
            args=(prefix, attack, params),
        )


def lesson_sentence(attack: str, params: dict[str, Any]) -> str | None:
    for _, a, p, sentence in LESSON:
        if a == attack and all(params.get(k) == v for k, v in p.items()):
            return sentence
    return None


def wipe(original: np.ndarray, adversarial: np.ndarray, position: float) -> np.ndarray:
    """Original left of ``position`` (0–1 of the width), adversarial right of it, a thin white seam."""
    out = adversarial.copy()
    cut = round(position * original.shape[1])
    out[:, :cut] = original[:, :cut]
    if 0 < cut < original.shape[1]:
        out[:, max(cut - 1, 0) : cut + 1] = 1.0
    return out


@st.fragment
def wipe_view(entry: Any, key: str) -> None:
    """A wipe slider (and a flicker switch) between the original and the adversarial image."""
    mode = st.segmented_control(
        "Compare", ["wipe", "flicker"], default="wipe", key=f"{key}_mode", label_visibility="collapsed"
    )
    if mode == "flicker":
        shown = st.toggle("Show the adversarial image", value=True, key=f"{key}_flick")
        image = entry.adversarial if shown else entry.original
        st.image(image, caption="adversarial" if shown else "original", width="stretch")
        return
    position = st.slider(
        "Wipe: original ← → adversarial", 0.0, 1.0, 0.5, 0.01, key=f"{key}_wipe", format="%.2f"
    )
    st.image(
        wipe(entry.original, entry.adversarial, position),
        caption=f"left {position:.0%}: original · right: adversarial",
        width="stretch",
    )


def teaching(entry: Any, spec: AttackSpec, verdict_html: str, ok: bool) -> None:
    """The teaching layout of one result: large images, verdict, one sentence, formula, wipe."""
    st.markdown(
        f'<div class="pv-verdict {"pv-ok" if ok else "pv-no"}" style="font-size:1.35rem">{verdict_html}</div>',
        unsafe_allow_html=True,
    )
    sentence = lesson_sentence(entry.recipe.attack, dict(entry.recipe.params)) or spec.summary
    st.markdown(f"**{spec.title}.** {sentence}")
    formula = spec.formula_for(dict(entry.recipe.params))
    if formula:
        st.latex(formula)
    left, right = st.columns(2, gap="large")
    left.image(entry.original, caption=f"original — {entry.before[0].label}", width="stretch")
    right.image(entry.adversarial, caption=f"adversarial — {entry.after[0].label}", width="stretch")
    m = entry.metrics
    st.caption(
        f"SSIM {m['ssim']:.4f} · PSNR {m['psnr']:.1f} dB · largest change {m['linf'] * 255:.1f}/255 of the 0–255 range"
    )
    _, mid, _ = st.columns([1, 2, 1])
    with mid:
        wipe_view(entry, f"teach_{entry.short}")
    if len(entry.result.frame_iterations) > 2:  # an iterative attack: its walk, step by step
        st.markdown(f"**Watch {spec.title} walk to the decision boundary**, one recorded step at a time:")
        replay_view(entry, f"teach_{entry.short}", height=420)
