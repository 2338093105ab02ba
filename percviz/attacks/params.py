"""Parameter definitions shared by several attacks (the shared parameter names), so each is written once."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from percviz.attacks.schema import Param

EPS_LINF = Param(
    name="eps",
    kind="float",
    default=4 / 255,
    low=0.0,
    high=1.0,
    unit="[0,1] pixel units",
    help="L∞ budget: no pixel value moves by more than eps (4/255 ≈ 0.0157).",
    label="ε (L∞)",
    symbol="ε",
)
EPS_L2 = Param(
    name="eps",
    kind="float",
    default=1.0,
    low=0.0,
    high=100.0,
    unit="L2 over the whole image, [0,1] units",
    help="L2 budget of the whole perturbation in [0,1] pixel units.",
    label="ε (L2)",
    symbol="ε",
)
SUBSET_SCORE = Param(
    name="subset_score",
    kind="choice",
    default="box",
    choices=("box", "abs"),
    help="How subsets are ranked: abs = Σ|∇L| over the subset (the paper's eq. 22); box = the "
    "linearised gain Σ ∇L·(clip(x + ε·sign ∇L) − x), which skips values already at 0 or 1.",
    source="Balda et al. eq. 22",
    label="subset ranking",
)
#: The formulas of the two subset rankings (Balda et al. eq. 22 and its box-aware form).
SUBSET_FORMULAS = {
    "abs": r"s^*=\arg\max_s\sum_{i\in S_s}|\nabla L(x,\tilde\eta)_i|,\quad"
    r"\eta_{S_{s^*}}=\varepsilon\,\mathrm{sign}(\nabla L(x,\tilde\eta)_{S_{s^*}})",
    "box": r"s^*=\arg\max_s\sum_{i\in S_s}\nabla L_i\,\big(\mathrm{clip}_{[0,1]}(x_i+\varepsilon\,"
    r"\mathrm{sign}\,\nabla L_i)-x^{(t)}_i\big),\quad x^{(t+1)}_{S_{s^*}}=\mathrm{clip}_{[0,1]}"
    r"(x+\varepsilon\,\mathrm{sign}\,\nabla L)_{S_{s^*}}",
}
STEPS = Param(name="steps", kind="int", default=10, low=1, high=1000, help="Number of iterations.")
STEP_SIZE = Param(
    name="step_size",
    kind="float",
    default=1 / 255,
    low=0.0,
    high=1.0,
    unit="[0,1] pixel units",
    help="Step length per iteration.",
    label="step size",
)
RANDOM_START = Param(
    name="random_start", kind="bool", default=False, help="Start from a uniform random point in the ball."
)
LOSS = Param(
    name="loss",
    kind="choice",
    default="ce",
    choices=("ce", "cw"),
    help="Objective: cross-entropy (ce) or the Carlini–Wagner margin (cw): the largest other logit minus "
    "the true class's logit, clipped at κ.",
)
KAPPA = Param(
    name="kappa",
    kind="float",
    default=0.0,
    low=0.0,
    high=1000.0,
    help="Confidence κ of the CW margin: the margin objective saturates at κ.",
    label="κ (confidence)",
    symbol="κ",
)
TARGET = Param(
    name="target",
    kind="class",
    default=None,
    help="ImageNet class index to reach (targeted attack); empty = untargeted.",
    label="target class",
)


def with_default(param: Param, default: Any, **changes: Any) -> Param:
    """The same parameter with another default (and optionally other fields)."""
    return replace(param, default=default, **changes)
