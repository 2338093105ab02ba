"""Matched quality (Pochimireddy et al. 2021 Tables II–III): the strength at which an attack's mean
SSIM or PSNR reaches a target, and the fooling rate there."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from percviz.attacks.base import get_attack
from percviz.errors import ParameterError
from percviz.evaluation.data import EvalImage
from percviz.evaluation.engine import evaluate
from percviz.evaluation.plan import RunSpec, make_runs, strength_param
from percviz.evaluation.stats import summarize_rows
from percviz.evaluation.store import RowStore
from percviz.models import Classifier
from percviz.progress import ProgressCallback

QualityMetric = Literal["ssim", "psnr"]


@dataclass
class MatchResult:
    """Outcome of :func:`match_quality` for one attack.

    ``value`` is the strength whose mean ``metric`` came closest to ``target``; ``achieved`` that
    mean; ``summary`` the dataset numbers there; ``probes`` every strength tried with its mean metric
    and fooling rate; ``converged`` whether ``|achieved − target| ≤ tol``.
    """

    attack: str
    param: str
    metric: str
    target: float
    value: float
    achieved: float
    converged: bool
    summary: dict[str, Any]
    probes: list[dict[str, float]]
    rows: list[dict[str, Any]]
    note: str = ""
    computed: int = 0
    reused: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "attack": self.attack,
            "param": self.param,
            "metric": self.metric,
            "target": self.target,
            "value": self.value,
            "achieved": self.achieved,
            "converged": self.converged,
            "fooling_rate": self.summary.get("fooling_rate"),
            "summary": self.summary,
            "probes": self.probes,
            "note": self.note,
            "rows_computed": self.computed,
            "rows_reused": self.reused,
        }


def parse_match(text: str) -> tuple[QualityMetric, float]:
    """``"ssim=0.95"`` / ``"psnr=40"`` → ``("ssim", 0.95)``."""
    name, sep, value = text.partition("=")
    name = name.strip().lower()
    if not sep or name not in ("ssim", "psnr"):
        raise ParameterError(f"--match takes ssim=VALUE or psnr=VALUE; got '{text}'.")
    try:
        target = float(value)
    except ValueError:
        raise ParameterError(f"--match value must be a number; got '{value}'.") from None
    if (
        not math.isfinite(target)
        or (name == "ssim" and not 0.0 < target < 1.0)
        or (name == "psnr" and target <= 0)
    ):
        raise ParameterError(f"--match {name} target out of range: {target}.")
    return name, target  # type: ignore[return-value]


MATCH_MAX_EVALS = 12
"""Probes one matched-quality search may spend, in the CLI and in the app alike."""


def matched_params(attack: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The fixed parameters a matched-quality search of ``attack`` starts from, one rule everywhere.

    ``params`` are validated against the registry; the strength is removed (the search starts
    from its default), and so is ``step_size`` while it is at its default, so that
    :func:`match_quality` ties it to the budget (``2.5·ε/steps``). A step size the user moved is kept.
    """
    spec = get_attack(attack)
    values = spec.validate(dict(params))
    values.pop(strength_param(attack), None)
    if "step_size" in values and values["step_size"] == spec.param("step_size").default:
        del values["step_size"]
    return values


def match_runs(
    model: Classifier,
    images: Sequence[EvalImage],
    runs: Sequence[RunSpec],
    metric: QualityMetric,
    target: float,
    *,
    seed: int = 0,
    batch: int = 8,
    explain: bool = False,
    store: RowStore | str | Path | None = None,
    progress: Callable[[int, str], ProgressCallback | None] | None = None,
) -> list[MatchResult]:
    """One :func:`match_quality` per run (a :class:`RunSpec`), from :func:`matched_params`, with
    :data:`MATCH_MAX_EVALS` probes: the CLI's ``evaluate --match`` and the Evaluate page both call
    this, so one request gives one set of numbers. ``progress(i, attack)`` gives run ``i``'s
    callback. Stops after a cancelled search (its partial result is the last item)."""
    out: list[MatchResult] = []
    for i, run in enumerate(runs):
        found = match_quality(
            model,
            images,
            run.attack,
            metric=metric,
            target=target,
            params=matched_params(run.attack, run.params),
            max_evals=MATCH_MAX_EVALS,
            seed=seed,
            batch=batch,
            store=store,
            explain=explain,
            progress=progress(i, run.attack) if progress is not None else None,
        )
        out.append(found)
        if found.note == "cancelled":
            break
    return out


def match_quality(
    model: Classifier,
    images: Sequence[EvalImage],
    attack: str,
    *,
    metric: QualityMetric = "ssim",
    target: float = 0.95,
    params: Mapping[str, Any] | None = None,
    param: str | None = None,
    tol: float | None = None,
    max_evals: int = MATCH_MAX_EVALS,
    seed: int = 0,
    batch: int = 8,
    store: RowStore | str | Path | None = None,
    explain: bool = False,
    tie_step: bool = True,
    progress: ProgressCallback | None = None,
) -> MatchResult:
    """Find the strength at which ``attack``'s mean ``metric`` over ``images`` equals ``target``.

    Pochimireddy et al. 2021 Tables II–III compare fooling rates at a fixed average SSIM / PSNR. The strength
    parameter (``param``, default the attack's declared strength) is searched in log space from its
    default, assuming quality falls as strength grows: outside a bracket, an extrapolation with
    ``1 − SSIM ∝ strength²`` (or RMS error ∝ strength for PSNR; the slope is re-estimated from the
    last two probes, jumps capped at ×16); inside, a safeguarded secant (regula falsi kept within
    10–90 % of the bracket). One probe usually lands close; three or four reach the tolerance.
    Each probe is a full (batched, resumable) evaluation. With ``tie_step`` (default) an iterative
    attack whose strength is ``eps`` and whose ``step_size`` is not given gets Madry et al.'s
    ``step_size = 2.5·eps/steps``, so the step follows the budget. ``tol`` defaults to
    ``max(2e-4, 0.05·(1 − target))`` for SSIM and 0.25 dB for PSNR.
    """
    name = param or strength_param(attack)
    spec = get_attack(attack)
    p = spec.param(name)
    if p.kind not in ("float", "int"):
        raise ParameterError(f"Strength parameter '{name}' of '{attack}' is not numeric.")
    if tol is None:
        tol = max(2e-4, 0.05 * (1.0 - target)) if metric == "ssim" else 0.25
    rowstore = RowStore(store) if isinstance(store, str | Path) else store
    base = dict(params or {})
    high = p.high if p.high is not None and math.isfinite(p.high) else 1e6
    low = max(p.low if p.low is not None else 0.0, high * 1e-7, 1e-9 if p.kind == "float" else 1.0)
    default = float(base.get(name, p.default if isinstance(p.default, int | float) else high / 10))
    probes: list[dict[str, Any]] = []
    cache: dict[float, tuple[float, list[dict[str, Any]]]] = {}
    cancelled = False
    counts = [0, 0]

    def probe(value: float) -> float | None:
        nonlocal cancelled
        value = float(round(value)) if p.kind == "int" else float(value)
        if value in cache:
            return cache[value][0]
        values = {**base, name: value}
        if tie_step and name == "eps" and "step_size" in spec.param_names() and "step_size" not in base:
            steps = int(
                values.get("steps", spec.param("steps").default if "steps" in spec.param_names() else 1) or 1
            )
            values["step_size"] = min(2.5 * value / max(steps, 1), spec.param("step_size").high or math.inf)
        run = make_runs([attack], values)[0]
        ev = evaluate(
            model, images, [run], seed=seed, batch=batch, store=rowstore, explain=explain, progress=progress
        )
        counts[0] += ev.computed
        counts[1] += ev.reused
        if ev.cancelled or not ev.rows:
            cancelled = True
            return None
        s = summarize_rows(ev.rows)
        q = s["mean_ssim"] if metric == "ssim" else s["mean_psnr"]
        q = float(q) if q is not None else math.inf
        cache[value] = (q, ev.rows)
        probes.append({"value": value, metric: q, "fooling_rate": s["fooling_rate"]})
        if (
            progress is not None
            and progress({"stage": "probe", "attack": attack, "param": name, **probes[-1]}) is False
        ):
            cancelled = True
        return q

    slope_prior = 2.0 if metric == "ssim" else 1.0

    def y_of(q: float) -> float:
        """A quantity roughly linear in log(strength): log(1 − SSIM) (∝ ε²) or log RMS error (∝ ε)."""
        if metric == "ssim":
            return math.log(max(1.0 - q, 1e-12))
        return -q / 20.0 * math.log(10.0) if math.isfinite(q) else -50.0

    y_target = y_of(target)
    lo: tuple[float, float] | None = None  # (strength, y): too weak (quality above target)
    hi: tuple[float, float] | None = None  # too strong
    s = min(max(default if default > 0 else high / 100, low), high)
    q = probe(s)
    last: tuple[float, float] | None = None
    while q is not None and not cancelled and len(probes) < max_evals and abs(q - target) > tol:
        y = y_of(q)
        if q > target:
            lo = (s, y) if lo is None or s > lo[0] else lo
        else:
            hi = (s, y) if hi is None or s < hi[0] else hi
        if lo is not None and hi is not None:
            a, b = math.log(lo[0]), math.log(hi[0])
            t = (y_target - lo[1]) / (hi[1] - lo[1]) if hi[1] != lo[1] else 0.5
            cand = math.exp(a + min(max(t, 0.1), 0.9) * (b - a))
        else:
            slope = slope_prior
            if last is not None and last[0] != s:
                est = (y - last[1]) / (math.log(s) - math.log(last[0]))
                slope = est if est > 0.2 else slope_prior
            factor = math.exp((y_target - y) / slope)
            cand = min(max(s * min(max(factor, 1 / 16), 16.0), low), high)
        if p.kind == "int":
            cand = float(round(cand))
        if cand in cache or cand == s:
            break
        last = (s, y)
        s = cand
        q = probe(s)
    if not cache:
        raise ParameterError(f"Matched-quality search for '{attack}' was cancelled before any result.")
    best = min(cache, key=lambda v: abs(cache[v][0] - target))
    achieved, rows = cache[best]
    note = ""
    if cancelled:
        note = "cancelled"
    elif abs(achieved - target) > tol:
        note = (
            f"target {metric}={target} not reached within tolerance {tol:g} "
            f"in [{low:g}, {high:g}] after {len(probes)} probes"
        )
    return MatchResult(
        attack=attack,
        param=name,
        metric=metric,
        target=target,
        value=best,
        achieved=achieved,
        converged=abs(achieved - target) <= tol,
        summary=summarize_rows(rows),
        probes=probes,
        rows=rows,
        note=note,
        computed=counts[0],
        reused=counts[1],
    )
