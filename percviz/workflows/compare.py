"""The Compare page's job: several attacks on one image, optionally each at a matched SSIM/PSNR
(Pochimireddy et al. 2021 §V-C, Tables II–III), one publication-figure row per attack."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from percviz import evaluation as ev
from percviz.analysis.metrics import compare_images
from percviz.attacks.base import AttackResult, get_attack, run_attack
from percviz.figures import FigureRow, row_from_views
from percviz.images import to_tensor
from percviz.limits import Limits
from percviz.models import Classifier, Prediction, predict
from percviz.progress import ProgressCallback, part_progress
from percviz.workflows.explore import plan_attack


@dataclass
class CompareRow:
    attack: str
    params: dict[str, Any]
    result: AttackResult
    after: list[Prediction]
    metrics: dict[str, float]
    views: Any
    match: dict[str, Any] | None = None


@dataclass
class Comparison:
    image_name: str
    before: list[Prediction]
    rows: list[CompareRow] = field(default_factory=list)
    cancelled: bool = False

    def figure_rows(self, labels: Sequence[str] | None = None) -> list[FigureRow]:
        """One publication-figure row per attack, column (e) the adversarial image's CAM for its
        new class: the screen's grid and the PDF/SVG/PNG export are both drawn from these."""
        return self.figure_rows_of(self.rows, labels)

    @staticmethod
    def figure_rows_of(rows: Sequence[CompareRow], labels: Sequence[str] | None = None) -> list[FigureRow]:
        """:meth:`figure_rows` of some of the rows (those finished so far)."""
        return [
            row_from_views(
                r.views,
                title=get_attack(r.attack).title,
                subtitle=ev.run_label(r.attack, r.params, with_attack=False),
                labels=labels,
                cam="adversarial",
            )
            for r in rows
        ]


def plan_compare(
    items: Sequence[tuple[str, Mapping[str, Any]]], limits: Limits | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Each attack's parameters checked (:func:`percviz.workflows.explore.plan_attack`) before the
    comparison is queued; raises :class:`percviz.errors.ParameterError` for the first refusal."""
    return [(attack, plan_attack(attack, params, limits)) for attack, params in items]


def compare_work(
    model: Classifier,
    name: str,
    pixels: np.ndarray,
    items: Sequence[tuple[str, Mapping[str, Any]]],
    seed: int,
    match: tuple[ev.QualityMetric, float] | None,
    into: Comparison | None = None,
) -> Callable[[ProgressCallback], Comparison]:
    """Several attacks on one image; with ``match=(metric, target)`` each attack's strength is first
    searched (percviz.evaluation.match_quality) so all reach the same SSIM/PSNR.

    Each row is appended to the comparison as soon as its attack ends (``into``, when given, is that
    comparison: a page can show the finished rows while the next attack runs). A row holds what the
    attack measured (predictions from its final logits, metrics on its SSIM maps); its views,
    GradCAM++ included, are computed when the row is first drawn.
    """
    x = to_tensor(pixels, model.device)
    image = ev.EvalImage.from_pixels(name, pixels)
    out = into if into is not None else Comparison(name, [])

    def work(progress: ProgressCallback) -> Comparison:
        out.before = predict(model, x, 5)[0]
        for i, (attack, params) in enumerate(items):
            inner = part_progress(progress, i, len(items), attack)
            values = dict(params)
            info = None
            if match is not None:
                m = ev.match_quality(
                    model,
                    [image],
                    attack,
                    metric=match[0],
                    target=match[1],
                    params=ev.matched_params(attack, values),
                    seed=seed,
                    progress=inner,
                )
                if m.note == "cancelled":
                    out.cancelled = True
                    break
                values = get_attack(attack).validate(m.rows[0]["params"]) if m.rows else values
                info = {
                    "param": m.param,
                    "value": m.value,
                    "achieved": m.achieved,
                    "converged": m.converged,
                    "note": m.note,
                    "probes": len(m.probes),
                }
            res = run_attack(attack, model, x, values, seed=seed, progress=inner)
            if res.cancelled:
                out.cancelled = True
                break
            out.rows.append(_compare_row(model, attack, res, info))
        return out

    return work


def _compare_row(
    model: Classifier, attack: str, res: AttackResult, match: dict[str, Any] | None
) -> CompareRow:
    """A finished attack as a Compare row, from what the attack computed; views on demand."""
    from percviz.analysis.views import LazyViews
    from percviz.pipeline import first_image_predictions, first_image_ssim_maps

    maps = first_image_ssim_maps(res)
    return CompareRow(
        attack,
        res.params,
        res,
        first_image_predictions(model, res)[1],
        compare_images(res.x[:1], res.x_adv[:1], ssim_maps=maps)[0],
        LazyViews(res, model, 0, ssim=maps[0].permute(1, 2, 0).numpy().astype(np.float32)),
        match,
    )
