"""The Evaluate page's plan and job, which ``percviz evaluate`` runs too: attacks (× swept values)
over an image set, optionally followed by matched quality (Pochimireddy et al. 2021 Tables II–III).

:func:`plan_evaluate` checks the request against this server's limits once: the batch, every run's
parameter caps, the number of images (those past the cap are listed as skipped, with the reason),
and that each attack has a strength to match.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from percviz import evaluation as ev
from percviz.attacks.base import get_attack
from percviz.attacks.caps import check_params
from percviz.limits import Limits, check_batch, current_limits
from percviz.models import Classifier
from percviz.progress import ProgressCallback, part_progress


@dataclass(frozen=True)
class EvaluatePlan:
    """A checked evaluation: ``images`` within the cap (the rest in ``skipped``, with the reason),
    ``runs`` within their caps. With ``match`` = (metric, target) each attack's strength is then
    searched so its mean SSIM/PSNR reaches the target; ``baseline`` says whether the runs at the
    given parameters are evaluated first (the page shows both; ``percviz evaluate --match`` only the
    matched rows)."""

    images: list[ev.EvalImage]
    runs: list[ev.RunSpec]
    batch: int
    match: tuple[ev.QualityMetric, float] | None = None
    baseline: bool = True
    skipped: list[ev.Skipped] = field(default_factory=list)


def plan_evaluate(
    images: Sequence[ev.EvalImage],
    runs: Sequence[ev.RunSpec],
    batch: int,
    match: tuple[ev.QualityMetric, float] | None = None,
    *,
    baseline: bool = True,
    skipped: Sequence[ev.Skipped] = (),
    limits: Limits | None = None,
) -> EvaluatePlan:
    """Check an evaluation against this server's limits once, before anything runs: the batch,
    every run's parameter caps, at most ``limits.max_images`` images (the others are skipped with
    the reason, never silently dropped) and, when matching, that every attack has a strength
    (:class:`percviz.errors.ParameterError` names the first refusal)."""
    limits = limits or current_limits()
    check_batch(batch, limits)
    for run in runs:
        check_params(get_attack(run.attack), run.params, limits)
        if match is not None:
            ev.strength_param(run.attack)
    kept, dropped = list(images[: limits.max_images]), list(images[limits.max_images :])
    reason = f"not used: at most {limits.max_images} images per evaluation"
    return EvaluatePlan(
        kept,
        list(runs),
        int(batch),
        match,
        baseline or match is None,
        [*skipped, *(ev.Skipped(im.name, reason) for im in dropped)],
    )


@dataclass
class EvalOutcome:
    """The evaluation at the given parameters (empty when the plan had no baseline), its summary
    groups, the matched-quality results (``matched`` as dictionaries, ``matched_rows`` their rows)
    and the images skipped."""

    evaluation: ev.Evaluation
    summaries: list[dict[str, Any]]
    matched: list[dict[str, Any]]
    skipped: list[ev.Skipped]
    matched_rows: list[dict[str, Any]] = field(default_factory=list)
    computed: int = 0
    reused: int = 0

    @property
    def cancelled(self) -> bool:
        return self.evaluation.cancelled or any(m.get("note") == "cancelled" for m in self.matched)


def evaluate_work(
    model: Classifier,
    plan: EvaluatePlan,
    *,
    seed: int = 0,
    explain: bool = True,
    store: ev.RowStore | None = None,
) -> Callable[[ProgressCallback], EvalOutcome]:
    """The job body of a checked evaluation (:func:`plan_evaluate`); ``store`` makes it resumable
    (rows already in it are reused, new ones appended)."""

    def work(progress: ProgressCallback) -> EvalOutcome:
        parts = int(plan.baseline) + (len(plan.runs) if plan.match else 0)
        evaluation = ev.Evaluation([])
        if plan.baseline:
            evaluation = ev.evaluate(
                model,
                plan.images,
                plan.runs,
                seed=seed,
                batch=plan.batch,
                store=store,
                explain=explain,
                progress=part_progress(progress, 0, parts, "evaluation"),
            )
        outcome = EvalOutcome(
            evaluation, [], [], plan.skipped, computed=evaluation.computed, reused=evaluation.reused
        )
        if plan.match and not evaluation.cancelled:
            first = int(plan.baseline)
            found = ev.match_runs(
                model,
                plan.images,
                plan.runs,
                plan.match[0],
                plan.match[1],
                # Matched rows carry GradCAM++ scores only where they are the evaluation's rows (no
                # baseline); beside a baseline the page reports their fooling rates and quality.
                explain=explain and not plan.baseline,
                seed=seed,
                batch=plan.batch,
                store=store,
                progress=lambda i, attack: part_progress(progress, first + i, parts, f"matching {attack}"),
            )
            outcome.matched = [m.as_dict() for m in found]
            outcome.matched_rows = [r for m in found for r in m.rows]
            outcome.computed += sum(m.computed for m in found)
            outcome.reused += sum(m.reused for m in found)
        outcome.summaries = ev.summarize(evaluation.rows)
        return outcome

    return work
