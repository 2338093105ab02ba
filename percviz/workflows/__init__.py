"""What the pages and the command line run, defined once in the core: each page's plan (the request
checked against this server's limits before anything is queued) and its job body ``work(progress)``,
which :mod:`percviz.serving.jobs` runs in the background with progress and Cancel; results are plain
CPU data.

- :mod:`~percviz.workflows.explore`: one attack on one image, first screen right after the attack;
- :mod:`~percviz.workflows.compare`: several attacks on one image, optionally at matched quality;
- :mod:`~percviz.workflows.sweep`: a parameter grid, and curves over an image set;
- :mod:`~percviz.workflows.evaluate`: attacks over an image set (the Evaluate page and ``percviz evaluate``);
- :mod:`~percviz.workflows.regression`: the Regression page's attack and Fig. 4 curve.

Matched quality goes through :func:`percviz.evaluation.matched_params` and
:data:`~percviz.evaluation.MATCH_MAX_EVALS`, the rule the CLI's ``evaluate --match`` uses too.
"""

from percviz.workflows.compare import CompareRow, Comparison, compare_work, plan_compare
from percviz.workflows.evaluate import EvalOutcome, EvaluatePlan, evaluate_work, plan_evaluate
from percviz.workflows.sweep import (
    CurvePlan,
    GridPlan,
    check_sweep,
    curve_work,
    grid_work,
    plan_curve,
    plan_grid,
)

__all__ = [
    "CompareRow",
    "Comparison",
    "CurvePlan",
    "EvalOutcome",
    "EvaluatePlan",
    "GridPlan",
    "check_sweep",
    "compare_work",
    "curve_work",
    "evaluate_work",
    "grid_work",
    "plan_compare",
    "plan_curve",
    "plan_evaluate",
    "plan_grid",
]
