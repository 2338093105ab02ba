"""Parameter schemas of the perceptual attacks (Laidlaw et al. 2021 App. A, D): the bound and its distance
network, projection, step, Lagrange multiplier and search settings, shared by PPGD, LPA and Fast-LPA.
"""

from __future__ import annotations

from percviz.attacks.params import KAPPA, LOSS, RANDOM_START, TARGET, with_default
from percviz.attacks.perceptual_distance import DISTANCE_NETS, SELF_BOUNDS
from percviz.attacks.schema import Param

BOUND = Param(
    name="bound",
    kind="float",
    default=SELF_BOUNDS["medium"],
    low=1e-4,
    high=10.0,
    unit="perceptual distance |φ(x̃) − φ(x)|₂",
    help="Perceptual bound ε on d(x̃, x). Table 4: small/medium/large = 0.25/0.5/1.0 with AlexNet; "
    "about half that self-bounded (0.125/0.25/0.5).",
    source="Laidlaw et al. 2021 eq. 3, App. D Table 4",
    label="ε (perceptual)",
)
DISTANCE_NET = Param(
    name="distance_net",
    kind="choice",
    default="self",
    choices=DISTANCE_NETS,
    help="Network whose normalised activations define d: 'self' = the attacked classifier "
    "(self-bounded, offline); alexnet/vgg16/resnet50 need their ImageNet weights on this machine.",
    source="Laidlaw et al. 2021 §4, App. H.1",
    label="distance network",
)
PROJECTION = Param(
    name="projection",
    kind="choice",
    default="bisection",
    choices=("bisection", "newton"),
    help="Projection onto the bound: bisection along x→x̃ (Alg. 5) or Newton's method (Alg. 4).",
    source="Laidlaw et al. 2021 App. A.4",
)
BISECT_ITERS = Param(
    name="bisect_iters",
    kind="int",
    default=10,
    low=1,
    high=50,
    help="Bisection iterations n of the projection (also Newton's fallback).",
    source="Laidlaw et al. 2021 App. A.4 Alg. 5",
    label="bisection iterations",
)
OVERSHOOT = Param(
    name="overshoot",
    kind="float",
    default=0.01,
    low=0.0,
    high=1.0,
    unit="perceptual distance",
    help="Newton projection overshoot s (only with projection=newton).",
    source="Laidlaw et al. 2021 App. A.4 Alg. 4",
)
CG_ITERS = Param(
    name="cg_iters",
    kind="int",
    default=5,
    low=1,
    high=50,
    help="Conjugate-gradient iterations K per PPGD step.",
    source="Laidlaw et al. 2021 App. A.1",
    label="CG iterations",
)
CG_STOP = Param(
    name="cg_stop",
    kind="choice",
    default="fixed",
    choices=("fixed", "residual"),
    help="fixed: every step runs all K CG iterations (Algorithm 1, and the pass counts of App. A.1). "
    "residual: a step's CG stops once every image's squared residual ‖r‖² < 0.1, as the authors' "
    "released code (perceptual-advex) does: fewer passes, a rougher direction.",
    source="Laidlaw et al. 2021 App. A.1; perceptual-advex's FirstOrderStepPerceptualAttack",
    label="CG stopping rule",
)
CG_RESIDUAL_SQ = 0.1  # perceptual-advex: stop when (r ** 2).sum() < 1e-1 for every image
PPGD_STEP = Param(
    name="step_size",
    kind="float",
    default=0.0,
    low=0.0,
    high=10.0,
    unit="perceptual distance",
    help="PPGD step η in perceptual distance; 0 = 2·bound/steps.",
    source="Laidlaw et al. 2021 App. A.1",
    label="step η",
)
LAM = Param(
    name="lam",
    kind="float",
    default=0.01,
    low=1e-6,
    high=1e6,
    log=True,
    help="Initial λ of the Lagrangian; ×10 after each round ending outside the bound.",
    source="Laidlaw et al. 2021 App. A.2",
    label="initial λ",
    symbol="λ",
)
SEARCH_STEPS = Param(
    name="search_steps",
    kind="int",
    default=5,
    low=1,
    high=20,
    help="Rounds S of the λ search.",
    source="Laidlaw et al. 2021 App. A.2",
    label="λ rounds",
)
INIT = with_default(
    RANDOM_START,
    True,
    help="Start from x + 0.01·N(0, 1) as the paper does (off: start at x). Self-bounded on "
    "EfficientNet-Lite0 that noise alone is at d ≈ 0.5–1, above the small and medium bounds.",
    source="Laidlaw et al. 2021 App. A, Algorithms 1–3 line 2",
)
MARGIN_LOSS = with_default(LOSS, "cw")
KAPPA_1 = with_default(KAPPA, 1.0)
KAPPA_FAST = with_default(
    KAPPA,
    float("inf"),
    high=None,
    allow_inf=True,
    help="Confidence κ of the margin loss; inf (unclipped) as the authors' code runs Fast-LPA "
    "(PPGD and LPA use κ = 1).",
    source="Laidlaw et al. 2021, App. A.3 and their released code",
)
COMMON = (BOUND, DISTANCE_NET, INIT)
BOUND_TEXT = "d(x̃, x) = |φ(x̃) − φ(x)|₂ ≤ bound"
OBJECTIVE = (MARGIN_LOSS, KAPPA_1, TARGET)
