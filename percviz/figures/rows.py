"""Rows of the publication figure (one attack on one image each) and how they are computed: from an
attack result (SSIM maps and GradCAM++ are computed here), from one pair's view arrays (nothing is
recomputed), or by running recipes (``percviz figure``). Drawing lives in
:mod:`percviz.figures.publication` and :mod:`percviz.figures.interactive`."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from percviz.analysis.colour import overlay
from percviz.analysis.explain import NOISE_THRESHOLD, explain_scores
from percviz.analysis.metrics import ssim_interior
from percviz.analysis.views import Views, as_hwc, ssim_maps
from percviz.evaluation.plan import run_label
from percviz.figures.style import (
    CAM_ALPHA,
    CAM_COLORSCALE,
    Cell,
    class_name,
    short,
)

if TYPE_CHECKING:
    from percviz.attacks.base import AttackResult
    from percviz.recipes import Recipe


CamOf = Literal["original", "adversarial"]
CAM_HEADS: dict[str, str] = {
    "original": "GradCAM++ of original",
    "adversarial": "GradCAM++, new class",
}


@dataclass(frozen=True)
class FigureRow:
    """One row of the publication figure (one attack on one image).

    ``cam`` is the min–max GradCAM++ map (``H×W`` in [0, 1]) shown in column (e) over the image
    named by ``cam_of``: the original for its class (Pochimireddy et al. 2021 Fig. 3) or the adversarial image
    for its new class (what Compare shows on screen).
    """

    title: str
    adversarial: np.ndarray
    ssim_map: np.ndarray
    cam: np.ndarray
    original: np.ndarray
    subtitle: str = ""
    before: str = ""
    after: str = ""
    success: bool | None = None
    scores: Mapping[str, Any] = field(default_factory=dict)
    cam_of: CamOf = "original"

    @property
    def ssim(self) -> float:
        return float(ssim_interior(self.ssim_map, channels_last=True).mean())

    def channel_ssim(self, c: int) -> float:
        return float(ssim_interior(self.ssim_map, channels_last=True)[..., c].mean())

    def cam_overlay(self, alpha: float = CAM_ALPHA) -> np.ndarray:
        """Column (e): ``cam`` in the jet colour map blended over its image, ``H×W×3`` in [0, 1]."""
        base = self.original if self.cam_of == "original" else self.adversarial
        return overlay(base, self.cam, alpha, CAM_COLORSCALE)


def figure_row(
    result: AttackResult, model: torch.nn.Module, index: int = 0, title: str | None = None
) -> FigureRow:
    """A :class:`FigureRow` from an attack result (computes SSIM maps and the original's CAM)."""
    from percviz.analysis.explain import gradcam_plus_plus
    from percviz.attacks.base import get_attack
    from percviz.models import predict

    x, x_adv = result.x[index : index + 1], result.x_adv[index : index + 1]
    smap = ssim_maps(x, x_adv)
    cam = gradcam_plus_plus(model, x).cam[0]
    p0, p1 = predict(model, x, 1)[0][0], predict(model, x_adv, 1)[0][0]  # type: ignore[arg-type]
    try:
        name = get_attack(result.attack_id).title
    except Exception:
        name = result.attack_id
    return FigureRow(
        title=title or name,
        subtitle=run_label(result.attack_id, result.params, with_attack=False),
        adversarial=as_hwc(x_adv),
        original=as_hwc(x),
        ssim_map=smap,
        cam=cam,
        before=f"{p0.label} ({p0.probability:.2f})",
        after=f"{p1.label} ({p1.probability:.2f})",
        success=bool(result.success[index]),
        scores=explain_scores(smap, cam),
    )


def row_from_views(
    views: Views,
    title: str = "",
    subtitle: str = "",
    labels: Sequence[str] | None = None,
    cam: CamOf = "original",
) -> FigureRow:
    """A :class:`FigureRow` from one pair's view arrays (no recomputation).

    ``cam`` picks column (e): the original's CAM for its class, or the adversarial image's CAM
    for its new class. The §V-B scores always use the original's CAM region (Pochimireddy et al. 2021 §V-B).
    """
    if cam not in CAM_HEADS:
        raise ValueError(f"cam must be one of {', '.join(CAM_HEADS)}; got {cam!r}.")
    c = views.cams
    return FigureRow(
        title=title or "adversarial",
        subtitle=subtitle,
        adversarial=views.adversarial,
        original=views.original,
        ssim_map=views.ssim_map,
        cam=c.original if cam == "original" else c.adversarial,
        before=class_name(c.label, labels),
        after=class_name(c.adv_label, labels),
        success=c.label != c.adv_label,
        scores=views.explain["scores"],
        cam_of=cam,
    )


def figure_cells(row: FigureRow) -> list[Cell]:
    """The five panels of one row, shared by the screen (:func:`rows_figure`) and the static figure:
    adversarial, SSIM maps R/G/B, column (e)'s CAM overlay."""
    return [
        ("image", row.adversarial),
        *[("heat", row.ssim_map[..., c]) for c in range(3)],
        ("image", row.cam_overlay()),
    ]


#: Characters per line of a row caption (the same wrap on screen and in print: narrow, so the
#: panels keep their width on a 1024-px screen).
CAPTION_WRAP = 17


def row_caption(row: FigureRow) -> list[tuple[str, bool]]:
    """The lines beside one row, ``(text, bold)``, the same on screen (:func:`rows_figure`) and in
    print: the attack (bold), its parameters, mean SSIM, the prediction before → after, the
    verdict, and the Pochimireddy et al. 2021 §V-B precision (at the Table I noise threshold) and
    fraction of pixels perturbed."""
    lines = [(part, True) for part in textwrap.wrap(row.title, CAPTION_WRAP) or [""]]
    lines += [(part, False) for part in textwrap.wrap(row.subtitle, CAPTION_WRAP)]
    lines.append((f"SSIM {row.ssim:.3f}", False))
    if row.before or row.after:
        lines.append((short(row.before, CAPTION_WRAP), False))
        lines.append(("→ " + short(row.after, CAPTION_WRAP - 2), False))
    if row.success is not None:
        lines.append(("✓ fooled" if row.success else "✗ not fooled", False))
    if row.scores:
        precision = row.scores.get("precision")
        text = "— (0/0)" if precision is None else f"{precision:.2f}"
        lines.append((f"prec. {text} @ {NOISE_THRESHOLD:g}", False))
        frac = 100 * float(row.scores["fraction_perturbed"])
        digits = 1 if frac >= 1 or frac == 0 else 2
        lines.append((f"perturbed {frac:.{digits}f}%", False))
    return lines


def figure_heads(rows: Sequence[FigureRow]) -> list[str]:
    """Column titles (a)–(e); (e) names whose CAM it shows."""
    kinds = {r.cam_of for r in rows}
    cam = CAM_HEADS[kinds.pop()] if len(kinds) == 1 else "GradCAM++"
    return ["(a) adversarial", "(b) SSIM map, R", "(c) SSIM map, G", "(d) SSIM map, B", f"(e) {cam}"]


def recipe_rows(recipes: Sequence[Recipe], device: str | None = None) -> list[FigureRow]:
    """Run each recipe (image hashes checked) and return one :class:`FigureRow` each (``percviz figure``)."""
    from dataclasses import replace

    from percviz.pipeline import run_recipe

    rows = []
    for recipe in recipes:
        outcome = run_recipe(replace(recipe, device=device) if device else recipe, check_hash=True)
        rows.append(figure_row(outcome.result, outcome.model))
    return rows
