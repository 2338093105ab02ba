"""The evaluation engine (percviz.evaluation) and ``percviz evaluate``: columns, resume, summary maths,
matched quality, sweeps, and the benchmark's JSON line."""

from __future__ import annotations

import csv
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from percviz import evaluation as ev
from percviz.cli import main
from percviz.errors import ParameterError
from percviz.evaluation import engine
from percviz.images import encode_png, fit_to_model, load_sample, sample_names
from percviz.models import Classifier

ROOT = Path(__file__).resolve().parents[1]
SIX = sample_names()[:6]


def _write_folder(folder: Path, size: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in SIX:
        (folder / f"{name}.png").write_bytes(encode_png(fit_to_model(load_sample(name).pixels, size)))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "readme.txt").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def folder224(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_folder(tmp_path_factory.mktemp("photos224"), 224)


@pytest.fixture(scope="module")
def images64(tmp_path_factory: pytest.TempPathFactory) -> list[ev.EvalImage]:
    folder = _write_folder(tmp_path_factory.mktemp("photos64"), 64)
    images, skipped = ev.load_folder(folder, 64)
    assert [s.name for s in skipped] == ["broken.png", "readme.txt"]
    assert len(images) == 6
    return images


# --------------------------------------------------------------------------- CLI end to end


@pytest.mark.slow
def test_cli_evaluate_folder_fills_every_column(folder224: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["evaluate", "--images", str(folder224), "--attack", "fgsm", "--param", "eps=0.03"]
    assert main([*argv, "--batch", "6", "--quiet", "--out", str(out)]) == 0
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6
    wanted = [c for c in ev.CSV_COLUMNS if c != "true_label"]
    for row in rows:
        empty = [c for c in wanted if row[c] == ""]
        assert not empty, f"{row['image']}: empty columns {empty}"
        assert float(row["linf"]) <= 0.03 + 1e-6
        assert 0.0 < float(row["ssim"]) < 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["skipped"]] == ["broken.png", "readme.txt"]
    assert summary["complete"] and summary["computed"] == 6
    assert summary["explainability"].startswith("Pochimireddy et al. 2021")
    group = summary["groups"][0]
    fooled = sum(r["success"] == "true" for r in rows) / 6
    assert group["fooling_rate"] == pytest.approx(fooled)
    assert (out / "operating_characteristic.png").stat().st_size > 1000
    # A rerun recomputes nothing.
    assert main([*argv, "--batch", "6", "--quiet", "--out", str(out)]) == 0
    assert json.loads((out / "summary.json").read_text())["reused"] == 6


def test_cli_evaluate_bad_input_is_one_line(
    folder224: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["evaluate", "--images", str(folder224), "--out", str(tmp_path)]
    assert main([*base, "--attack", "fgsm", "--sweep", "nope=1,2"]) == 2
    assert "valid names" in capsys.readouterr().err
    assert main([*base, "--attack", "fgsm", "--match", "ssim=2"]) == 2
    assert (
        main(["evaluate", "--images", str(tmp_path / "missing"), "--attack", "fgsm", "--out", str(tmp_path)])
        == 2
    )


# --------------------------------------------------------------------------- engine: resume


def test_cancel_then_resume_computes_only_the_rest(
    lite0: Classifier, images64: list[ev.EvalImage], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = ev.make_runs(["pgd"], {"eps": 2 / 255, "steps": 2})
    store = tmp_path / "rows.jsonl"
    attacked: list[int] = []
    real = engine.run_attack

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        attacked.append(int(args[2].shape[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "run_attack", counting)

    def stop_after_three(record: dict) -> bool | None:
        return False if record["stage"] == "row" and record["done"] >= 3 else None

    first = ev.evaluate(lite0, images64, runs, batch=1, store=store, explain=False, progress=stop_after_three)
    assert first.cancelled and first.computed == 3 and len(first.rows) == 3
    assert len(store.read_text().splitlines()) == 3
    # A torn last line (killed mid-write) is ignored.
    with store.open("a") as fh:
        fh.write('{"key": "torn')
    attacked.clear()
    second = ev.evaluate(lite0, images64, runs, batch=2, store=store, explain=False)
    assert (second.computed, second.reused, second.cancelled) == (3, 3, False)
    assert sum(attacked) == 3
    assert [r["image"] for r in second.rows] == [im.name for im in images64]
    assert [r["key"] for r in second.rows[:3]] == [r["key"] for r in first.rows]
    for row in second.rows:
        assert row["linf"] <= 2 / 255 + 1e-6


# --------------------------------------------------------------------------- summary maths


def _row(image: str, success: bool, l2: float, before: int = 1, true: int | None = None) -> dict:
    return {
        "image": image,
        "attack": "a",
        "params_key": "{}",
        "label_before": before,
        "true_label": true,
        "success": success,
        "fooled": success,
        "l2": l2,
        "ssim": 0.9,
        "psnr": 40.0,
        "lpips_self": 0.1,
        "linf": 0.01,
        "png_still_adversarial": success,
        "passes": 4,
        "wall_time_s": 0.1,
        "precision": None,
    }


def test_summary_numbers_on_a_hand_made_table() -> None:
    rows = [
        _row("a", True, 2.0, true=1),
        _row("b", True, 0.5, true=1),
        _row("c", False, 9.0, true=1),
        _row("d", True, 1.0, true=1),
        _row("e", True, 0.1, before=3, true=7),  # misclassified: outside X for P_suc and D̄
    ]
    s = ev.summarize_rows(rows)
    assert s["fooling_rate"] == pytest.approx(4 / 5)
    assert s["correctly_classified"] == 4
    assert s["p_suc"] == pytest.approx(3 / 4)
    assert s["mean_distortion"] == pytest.approx((2.0 + 0.5 + 1.0) / 3)
    d, p = s["operating_characteristic"]["d"], s["operating_characteristic"]["p"]
    assert d == [0.0, 0.5, 1.0, 2.0]
    assert p == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert all(b >= a for a, b in itertools.pairwise(p))
    assert p[-1] == pytest.approx(s["p_suc"])
    assert s["mean_precision"] is None and s["precision_defined"] == 0
    none = ev.summarize_rows([_row("a", False, 1.0)])
    assert none["mean_distortion"] is None and none["p_suc"] == 0.0
    # Seed 002 §5.1: several budgets → success if any run succeeds, least distortion.
    runs = [dict(_row("a", False, 0.2), params_key="e1"), dict(_row("a", True, 0.7), params_key="e2")]
    runs += [dict(_row("b", True, 0.3), params_key="e1"), dict(_row("b", True, 0.9), params_key="e2")]
    env = ev.envelope(runs)[0]
    assert env["p_suc"] == 1.0 and env["mean_distortion"] == pytest.approx((0.7 + 0.3) / 2)
    grid, prob = ev.operating_characteristic([3.0, 1.0, 2.0], [True, True, False])
    assert grid.tolist() == [0.0, 1.0, 3.0] and prob.tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])


def test_make_runs_scopes_and_validates() -> None:
    runs = ev.make_runs(["fgsm", "pgd"], {"pgd.steps": 3}, {"eps": [0.01, 0.02]})
    assert [(r.attack, r.params["eps"]) for r in runs] == [
        ("fgsm", 0.01),
        ("fgsm", 0.02),
        ("pgd", 0.01),
        ("pgd", 0.02),
    ]
    assert all(r.params["steps"] == 3 for r in runs if r.attack == "pgd")
    with pytest.raises(ParameterError, match="valid names"):
        ev.make_runs(["fgsm"], {"steps": 3})
    with pytest.raises(ParameterError):
        ev.make_runs(["fgsm"], {"eps": "nan"})


# --------------------------------------------------------------------------- matched quality, sweeps


def test_match_quality_hits_target_ssim(lite0: Classifier, images64: list[ev.EvalImage]) -> None:
    found = ev.match_quality(lite0, images64, "fgsm", metric="ssim", target=0.95, batch=6)
    assert found.param == "eps" and found.converged, found.probes
    assert abs(found.achieved - 0.95) <= 0.0025
    assert found.summary["mean_ssim"] == pytest.approx(found.achieved)
    assert 0.0 <= found.summary["fooling_rate"] <= 1.0
    assert len(found.probes) <= 12
    # Stronger → lower quality along the probes (monotone search assumption holds here).
    ordered = sorted(found.probes, key=lambda pr: pr["value"])
    assert all(b["ssim"] <= a["ssim"] + 1e-9 for a, b in itertools.pairwise(ordered))


def test_cli_and_app_match_quality_give_the_same_numbers(
    lite0: Classifier, folder224: Path, tmp_path: Path
) -> None:
    """One matched-quality rule (percviz.evaluation.matched_params, MATCH_MAX_EVALS) behind
    ``percviz evaluate --match`` and the Evaluate page's workflow: the same request, the same result."""
    from percviz.workflows import evaluate_work, plan_evaluate

    out = tmp_path / "matched"
    argv = ["evaluate", "--images", str(folder224), "--limit", "2", "--attack", "pgd"]
    argv += ["--param", "steps=2", "--match", "ssim=0.97", "--no-explain", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    cli = json.loads((out / "summary.json").read_text())["matched"][0]
    images, _ = ev.load_folder(folder224, 224, limit=2)
    runs = ev.make_runs(["pgd"], {"steps": 2})
    plan = plan_evaluate(images, runs, 8, ("ssim", 0.97))
    app = evaluate_work(lite0, plan, seed=0, explain=False)(lambda record: None)
    matched = app.matched[0]
    assert [p["value"] for p in matched["probes"]] == [p["value"] for p in cli["probes"]]
    assert matched["value"] == cli["value"] and matched["achieved"] == pytest.approx(
        cli["achieved"], abs=1e-9
    )
    assert matched["fooling_rate"] == cli["fooling_rate"]
    # The step size followed the budget (it was at its default), in both.
    params = ev.matched_params("pgd", runs[0].params)
    assert "step_size" not in params and "eps" not in params and params["steps"] == 2
    moved = ev.matched_params("pgd", {**runs[0].params, "step_size": 0.004})
    assert moved["step_size"] == 0.004


def test_curve_and_grid_sweeps(lite0: Classifier, images64: list[ev.EvalImage]) -> None:
    curve = ev.curve_sweep(lite0, images64[:2], "fgsm", "eps", [0.002, 0.01, 0.05], batch=2, explain=False)
    ssims = [pt["mean_ssim"] for pt in curve.points]
    assert [pt["value"] for pt in curve.points] == [0.002, 0.01, 0.05]
    assert ssims[0] > ssims[1] > ssims[2]
    seen: list[dict] = []
    grid = ev.grid_sweep(
        lite0,
        images64[0].pixels,
        "pgd",
        rows=("eps", (0.001, 0.01)),
        cols=("steps", (1, 2)),
        thumbnail=32,
        progress=lambda r: seen.append(r) if r["stage"] == "cell" else None,
    )
    assert [len(r) for r in grid.cells] == [2, 2] and len(seen) == 4
    cell = grid.cells[1][1]
    assert cell.thumbnail.shape == (32, 32, 3) and cell.thumbnail.dtype == np.uint8
    assert grid.cells[0][0].ssim > cell.ssim
    json.dumps(grid.as_dict())
    stopped = ev.grid_sweep(
        lite0,
        torch.from_numpy(images64[0].pixels).permute(2, 0, 1)[None],
        "fgsm",
        rows=("eps", (0.01, 0.02)),
        cols=("kappa", (0.0, 1.0)),
        progress=lambda r: False if r["stage"] == "cell" else None,
    )
    assert stopped.cancelled and sum(len(r) for r in stopped.cells) == 1


# --------------------------------------------------------------------------- benchmark


@pytest.mark.slow
def test_benchmark_quick_prints_one_json_line() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--attacks", "fgsm,pgd"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    figures = json.loads(last)
    assert figures["quick"] is True
    assert figures["floor_fwd_bwd_s"] > 0
    ratios = figures["attack_ratio_per_pass"]
    assert "pgd" in ratios and all(math.isfinite(v) and v > 0 for v in ratios.values())
    assert figures["peak_rss_mb_one_attack"] > 0


def test_batch_without_device_memory_is_split_until_it_fits(tiny: Classifier) -> None:
    """A batch the device cannot hold is retried in halves; rows equal those of batches that fit (and
    say their batch size); one image that does not fit raises the device's error."""
    from conftest import make_tiny_with_memory_for

    images = ev.load_samples(32)[0][:4]
    runs = ev.make_runs(["fgsm", "pgd"], {"eps": 0.03, "pgd.steps": 3})
    fitting = ev.evaluate(tiny, images, runs, seed=1, batch=1, explain=False)  # metrics pass x and x_adv: 2
    split = ev.evaluate(make_tiny_with_memory_for(2), images, runs, seed=1, batch=4, explain=False)
    strip = ("wall_time_s", "metrics_time_s")
    assert [{k: v for k, v in r.items() if k not in strip} for r in split.rows] == [
        {k: v for k, v in r.items() if k not in strip} for r in fitting.rows
    ]
    with pytest.raises(torch.OutOfMemoryError, match="out of memory"):
        ev.evaluate(make_tiny_with_memory_for(0), images[:2], runs[:1], seed=1, batch=2, explain=False)
