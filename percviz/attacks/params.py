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
