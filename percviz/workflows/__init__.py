"""The multi-step workflows of the Compare, Sweep and Evaluate pages, defined once in the core.

Each returns ``work(progress)``, a job body (:mod:`percviz.serving.jobs` runs it in the background
with progress and cancel); results are plain CPU data. Matched quality goes through
:func:`percviz.evaluation.matched_params` and :data:`~percviz.evaluation.MATCH_MAX_EVALS`, the rule
the CLI's ``evaluate --match`` uses too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from percviz import evaluation as ev
from percviz.analysis.metrics import compare_images
from percviz.attacks.base import AttackResult, get_attack, run_attack
from percviz.attacks.caps import check_params
from percviz.figures import FigureRow, row_from_views
from percviz.images import to_tensor
from percviz.limits import Limits, current_limits
from percviz.models import Classifier, Prediction, predict
from percviz.progress import ProgressCallback, part_progress

# ------------------------------------------------------------------ Compare


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


# ------------------------------------------------------------------ Sweep


def check_sweep(
    attack: str, params: Mapping[str, Any], swept: Mapping[str, Sequence[float]], limits: Limits | None = None
) -> None:
    """Every value a sweep sends to ``attack`` passes this server's caps, as a single run would.

    ``swept`` maps each swept parameter to its values (a float such as ``1000.0`` for ``steps``
    counts like the integer); raises :class:`percviz.errors.ParameterError` naming the first
    value above a cap (:func:`percviz.attacks.caps.check_params`, which reads the registry's
    iteration and cost parameters).
    """
    values = {**dict(params), **{name: list(v) for name, v in swept.items()}}
    check_params(get_attack(attack), values, limits or current_limits())


def grid_work(
    model: Classifier,
    pixels: np.ndarray,
    attack: str,
    rows: tuple[str, list[float]],
    cols: tuple[str, list[float]],
    params: Mapping[str, Any],
    seed: int,
) -> Callable[[ProgressCallback], ev.GridSweep]:
    def work(progress: ProgressCallback) -> ev.GridSweep:
        check_sweep(attack, params, dict([rows, cols]))
        total = len(rows[1]) * len(cols[1])
        state = {"done": 0}

        def inner(record: dict[str, Any]) -> bool | None:
            if record.get("stage") == "cell":
                state["done"] = int(record["done"])
            sub = (
                float(record.get("iteration", 0)) / float(record.get("total") or 1)
                if record.get("stage") == "iteration"
                else 0.0
            )
            return progress(
                {
                    **record,
                    "fraction": (state["done"] + sub) / total,
                    "message": f"cell {min(state['done'] + 1, total)} of {total}",
                }
            )

        fixed = {k: v for k, v in params.items() if k not in (rows[0], cols[0])}
        return ev.grid_sweep(
            model, pixels, attack, rows, cols, params=fixed, seed=seed, thumbnail=112, progress=inner
        )

    return work


def curve_work(
    model: Classifier,
    images: list[ev.EvalImage],
    attacks: Sequence[tuple[str, Mapping[str, Any]]],
    param: str,
    values: list[float],
    seed: int,
    batch: int,
) -> Callable[[ProgressCallback], list[ev.CurveSweep]]:
    def work(progress: ProgressCallback) -> list[ev.CurveSweep]:
        out = []
        for attack, params in attacks:
            check_sweep(attack, params, {param: values})
        for i, (attack, params) in enumerate(attacks):
            fixed = {k: v for k, v in params.items() if k != param}
            out.append(
                ev.curve_sweep(
                    model,
                    images,
                    attack,
                    param,
                    values,
                    params=fixed,
                    seed=seed,
                    batch=batch,
                    progress=part_progress(progress, i, len(attacks), attack),
                )
            )
            if out[-1].evaluation.cancelled:
                break
        return out

    return work


# ------------------------------------------------------------------ Evaluate


@dataclass
class EvalOutcome:
    evaluation: ev.Evaluation
    summaries: list[dict[str, Any]]
    matched: list[dict[str, Any]]
    skipped: list[ev.Skipped]


def evaluate_work(
    model: Classifier,
    images: list[ev.EvalImage],
    runs: list[ev.RunSpec],
    seed: int,
    batch: int,
    explain: bool,
    match: tuple[ev.QualityMetric, float] | None,
    skipped: list[ev.Skipped],
) -> Callable[[ProgressCallback], EvalOutcome]:
    if match:
        for run in runs:
            ev.strength_param(run.attack)

    def work(progress: ProgressCallback) -> EvalOutcome:
        parts = 1 + (len(runs) if match else 0)
        evaluation = ev.evaluate(
            model,
            images,
            runs,
            seed=seed,
            batch=batch,
            explain=explain,
            progress=part_progress(progress, 0, parts, "evaluation"),
        )
        matched: list[dict[str, Any]] = []
        if match and not evaluation.cancelled:
            found = ev.match_runs(
                model,
                images,
                runs,
                match[0],
                match[1],
                seed=seed,
                batch=batch,
                progress=lambda i, attack: part_progress(progress, i + 1, parts, f"matching {attack}"),
            )
            matched = [m.as_dict() for m in found]
        return EvalOutcome(evaluation, ev.summarize(evaluation.rows), matched, skipped)

    return work
