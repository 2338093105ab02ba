"""The ``percviz evaluate`` command: an image folder or the bundled photos × attacks (× swept values, or at
matched quality) → ``rows.jsonl``, ``results.csv``, ``summary.json`` and the PNG plots, in process or
on a Ray cluster, optionally with a transfer matrix onto other models. Regression attacks go to
:mod:`percviz.cli.regression`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from percviz.cli import regression
from percviz.cli.args import (
    load_image_set,
    make_out_folder,
    model_arg,
    parse_params,
    parse_sweep,
    report_image_set,
)
from percviz.errors import ParameterError
from percviz.limits import command_line_limits
from percviz.workflows.evaluate import evaluate_work, plan_evaluate


def evaluate_command(args: argparse.Namespace) -> int:
    """Run ``percviz evaluate`` with parsed ``args``; returns the exit status."""
    from percviz import evaluation as ev
    from percviz.figures.report import plot_report
    from percviz.jsonsafe import json_safe

    if any(regression.is_regression_attack(a) for a in args.attack):
        return regression.cmd_evaluate(args)
    from percviz.models import load_model

    out = Path(args.out)
    raw_params = parse_params(args.param)
    runs = ev.make_runs(args.attack, raw_params, parse_sweep(args.sweep))
    match = ev.parse_match(args.match) if args.match else None
    if match is not None and args.sweep:
        raise ParameterError("--match searches the strength itself; it cannot be combined with --sweep.")
    if args.engine == "ray" and match is not None:
        raise ParameterError("--match runs in this process; drop --engine ray to use it.")
    # With Ray the workers compute; this process only needs the model's input size and id.
    model = load_model(model_arg(args) or "", "cpu" if args.engine == "ray" else args.device)
    # Every --transfer-to model is loaded now: an unknown name or missing weights is refused before
    # anything is computed, not after the whole evaluation.
    transfer_models = [load_model(m, args.device) for m in split_models(args.transfer_to or "")]
    labels = ev.read_true_labels(args.labels) if args.labels else None
    images, skipped = load_image_set(args, model.input_size, labels)
    report_image_set(args, images, skipped)
    # The same plan as the Evaluate page's (caps, strengths); with --match only the matched rows.
    plan = plan_evaluate(
        images, runs, args.batch, match, baseline=False, skipped=skipped, limits=command_line_limits()
    )
    make_out_folder(out)
    store = ev.RowStore(out / "rows.jsonl")
    if store.skipped:
        print(
            f"percviz: skipped {store.skipped} unreadable line(s) of {out / 'rows.jsonl'}; "
            "their runs are computed again.",
            file=sys.stderr,
        )
    bar = _ProgressBar(disable=args.quiet)
    explain = not args.no_explain
    cluster: dict[str, Any] | None = None
    try:
        if args.engine == "ray":
            from percviz.evaluation import cluster as ray_cluster

            result = ray_cluster.evaluate_ray(
                model_arg(args) or "",
                model.spec.id,
                plan.images,
                plan.runs,
                explain=explain,
                address=args.address,
                workers=args.workers,
                gpus_per_worker=args.gpus_per_worker,
                threads=args.threads_per_worker,
                device=args.device,
                seed=args.seed,
                batch=plan.batch,
                store=store,
                progress=bar,
            )
            cluster = dict(ray_cluster.cluster_summary(result))
            rows, cancelled, matched = [*result.rows, *result.errors], result.cancelled, []
            computed, reused, explain_ok = result.computed, result.reused, result.explain_available
        else:
            outcome = evaluate_work(model, plan, seed=args.seed, explain=explain, store=store)(bar)
            rows = outcome.evaluation.rows if plan.baseline else outcome.matched_rows
            cancelled, matched = outcome.cancelled, outcome.matched
            computed, reused = outcome.computed, outcome.reused
            explain_ok = any(k in r for r in rows for k in ev.EXPLAIN_COLUMNS)
    finally:
        bar.close()
    # Error rows (an image a Ray worker could not evaluate, also when resumed here) stay out of
    # the numbers and are listed in summary.json.
    errors = [r for r in rows if "error" in r]
    rows = [r for r in rows if "error" not in r]
    for r in errors:
        print(f"percviz: failed {r['image']} ({r['attack']}): {r['error']}", file=sys.stderr)
    summaries = ev.summarize(rows)
    ev.write_csv(out / "results.csv", rows)
    sweep_names = [n.rpartition(".")[2] for n in parse_sweep(args.sweep)]
    plots = plot_report(out, summaries, list(dict.fromkeys(sweep_names)))
    payload = {
        "model": model.spec.id,
        "device": str(model.device),
        "seed": args.seed,
        "images": [im.name for im in plan.images],
        "skipped": [s.as_dict() for s in plan.skipped],
        "computed": computed,
        "reused": reused,
        "complete": not cancelled and len(rows) + len(errors) == len(plan.images) * len(plan.runs),
        "errors": [{k: r.get(k) for k in ("image", "attack", "params", "error")} for r in errors],
        "explainability": "Pochimireddy et al. 2021 §V-B at noise threshold 0.11"
        if explain and explain_ok
        else "not computed",
        "distortion": "L2 of x_adv − x in [0,1] units over the whole image",
        "groups": summaries,
        "envelopes": ev.envelope(rows),
        "matched": matched,
        "files": ["rows.jsonl", "results.csv", "summary.json", *(p.name for p in plots)],
    }
    if cluster is not None:
        payload["cluster"] = cluster
    if args.transfer_to and not cancelled:
        payload["transfer"] = _transfer(args, [model, *transfer_models], plan.runs, out, bar)
    (out / "summary.json").write_text(json.dumps(json_safe(payload), indent=2) + "\n", encoding="utf-8")
    for s in summaries:
        print(
            f"{ev.run_label(s['attack'], s['params'])}: fooling rate {s['fooling_rate']:.3f}, "
            f"within bound {s.get('within_bound_rate', 1.0):.3f}, "
            f"mean SSIM {s['mean_ssim']:.4f}, P_suc {s['p_suc']:.3f}, D̄ {_opt(s['mean_distortion'])} "
            f"({s['images']} images)"
        )
    print(f"wrote {out} ({computed} computed, {reused} reused, {len(plan.skipped)} skipped)")
    return 0


def split_models(text: str) -> list[str]:
    """``"a,file:b.onnx?mean=0.5,0.5,0.5"`` → two references (commas inside options stay)."""
    from percviz.models import ZOO_MODELS

    out: list[str] = []
    for token in (t.strip() for t in text.split(",")):
        starts = token in ZOO_MODELS or token.partition("?")[0] in ZOO_MODELS
        starts = starts or token.startswith(("file:", "hf:")) or "@" in token.partition("?")[0]
        if out and not starts:
            out[-1] += "," + token
        elif token:
            out.append(token)
    return out


def _transfer(
    args: argparse.Namespace, loaded: list[Any], runs: Sequence[Any], out: Path, bar: Any
) -> list[Any]:
    """Transfer matrices over ``--model`` and ``--transfer-to`` (``loaded``; one per attack, its first run)."""
    from percviz.transfer import transfer_matrix

    models = list({m.spec.id: m for m in loaded}.values())
    size = max(m.input_size for m in models)
    images, _ = load_image_set(args, size)
    pairs = [(im.name, im.pixels) for im in images]
    summaries = []
    for attack in dict.fromkeys(r.attack for r in runs):
        params = next(r.params for r in runs if r.attack == attack)
        bar.describe(f"transfer {attack}")
        matrix = transfer_matrix(models, pairs, attack, dict(params), seed=args.seed, batch=args.batch)
        matrix.write(out, f"transfer-{attack}")
        summary = {k: v for k, v in matrix.as_dict().items() if k != "rows"}
        summaries.append(summary)
        print(f"transfer matrix ({attack}; rows = source, columns = target; fooling rate):")
        width = max(len(m.spec.id) for m in models)
        print(" " * (width + 1) + " ".join(f"{m.spec.id[-width:]:>{width}s}" for m in models))
        for sid, row in zip(summary["sources"], summary["fooling_rate"], strict=True):
            print(f"{sid:{width}s} " + " ".join(f"{_opt(v):>{width}s}" for v in row))
    return summaries


def _opt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


class _ProgressBar:
    """tqdm on stderr fed by the engine's progress records (the engine itself never prints)."""

    def __init__(self, disable: bool = False) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=0, unit="img", file=sys.stderr, disable=disable, dynamic_ncols=True)

    def describe(self, text: str) -> None:
        self._bar.set_description(text)

    def __call__(self, record: dict[str, Any]) -> None:
        stage = record.get("stage")
        if stage == "start" and record.get("message"):
            self._bar.set_description(str(record["message"]).split(" (")[0])
        if stage == "start":
            self._bar.reset(total=record["total"])
            self._bar.update(record["reused"])
        elif stage == "row":
            self._bar.update(1)
        elif stage == "iteration":
            self._bar.set_postfix_str(
                f"{record.get('attack')} it {record.get('iteration')}/{record.get('total')}"
            )
        elif stage == "probe":
            self._bar.write(
                f"  {record['attack']} {record['param']}={record['value']:.5g}: "
                + ", ".join(
                    f"{k}={v:.4g}" for k, v in record.items() if k in ("ssim", "psnr", "fooling_rate")
                ),
                file=sys.stderr,
            )

    def close(self) -> None:
        self._bar.close()
