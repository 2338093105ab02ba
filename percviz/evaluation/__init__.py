"""Dataset numbers and sweeps — the one package behind ``percviz evaluate`` and the Sweep/Evaluate pages.

What it computes:

- per image and attack run: prediction before/after, success, SSIM, PSNR, S1, S2, L0/L2/L∞,
  the self-bounded perceptual distance (Laidlaw et al. 2021) (``lpips_self``), whether the 8-bit PNG is still adversarial,
  passes, wall time, and (unless ``explain=False``) the Pochimireddy et al. 2021 §V-B :mod:`percviz.analysis.explain`
  explainability scores at noise threshold 0.11 (precision, recall, IOU, IOU-outside);
- per run (attack + parameters): the fooling rate of Pochimireddy et al. 2021 §V-A, the success probability
  ``P_suc``, the conditional mean distortion ``D̄`` (mean L2 over successes) and the operating
  characteristic ``P(D)`` of Zhang et al. 2020 §5.1 eq. 20–21, and mean SSIM / PSNR / LPIPS-self;
- matched quality (Pochimireddy et al. 2021 Tables II–III): bisection on each attack's strength parameter until the
  mean SSIM (or PSNR) hits a target, then the fooling rate there (:func:`match_quality`);
- the ε1×ε2 grid of Pochimireddy et al. 2021 Fig. 1 (:func:`grid_sweep`) and strength-vs-metric curves of
  Fig. 6–9 (:func:`curve_sweep`).

Rows can be appended to a JSONL file as they finish (:class:`RowStore`); a later call with the same
store skips every (model, seed, image, attack, parameters) row already there, so an interrupted
evaluation resumes where it stopped. Progress goes through one callback ``(record) -> bool | None``;
returning ``False`` cancels (rows already finished are kept). No printing here: the CLI draws the
progress bar, the app its own.

Images are batched ``batch`` at a time through :func:`percviz.attacks.run_attack`; attacks with
random starts draw their noise per batch, so their rows depend (slightly) on the batch composition.
"""

from percviz.evaluation.data import (
    IMAGE_SUFFIXES,
    EvalImage,
    Skipped,
    load_folder,
    load_samples,
    read_true_labels,
)
from percviz.evaluation.engine import EXPLAIN_THRESHOLD, Evaluation, evaluate, result_rows, run_unit
from percviz.evaluation.matching import (
    MATCH_MAX_EVALS,
    MatchResult,
    QualityMetric,
    match_quality,
    match_runs,
    matched_params,
    parse_match,
)
from percviz.evaluation.plan import RunSpec, make_runs, params_key, run_label, scoped_params, strength_param
from percviz.evaluation.stats import envelope, operating_characteristic, summarize, summarize_rows
from percviz.evaluation.store import CSV_COLUMNS, EXPLAIN_COLUMNS, RowStore, row_key, write_csv
from percviz.evaluation.sweeps import CurveSweep, GridCell, GridSweep, curve_sweep, grid_sweep

__all__ = [
    "CSV_COLUMNS",
    "EXPLAIN_COLUMNS",
    "EXPLAIN_THRESHOLD",
    "IMAGE_SUFFIXES",
    "MATCH_MAX_EVALS",
    "CurveSweep",
    "EvalImage",
    "Evaluation",
    "GridCell",
    "GridSweep",
    "MatchResult",
    "QualityMetric",
    "RowStore",
    "RunSpec",
    "Skipped",
    "curve_sweep",
    "envelope",
    "evaluate",
    "grid_sweep",
    "load_folder",
    "load_samples",
    "make_runs",
    "match_quality",
    "match_runs",
    "matched_params",
    "operating_characteristic",
    "params_key",
    "parse_match",
    "read_true_labels",
    "result_rows",
    "row_key",
    "run_label",
    "run_unit",
    "scoped_params",
    "strength_param",
    "summarize",
    "summarize_rows",
    "write_csv",
]
