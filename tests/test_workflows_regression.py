"""The Regression page's jobs in the core (percviz.workflows.regression): caps checked before
anything runs, a run and a curve that report progress and stop on Cancel, and the local caps that
every attack template enforces."""

from __future__ import annotations

from dataclasses import replace

import pytest

from percviz.attacks.regression_run import run_regression_attack
from percviz.errors import ParameterError
from percviz.images import fit_to_model, load_sample, to_tensor
from percviz.limits import LOCAL
from percviz.models.regression import load_regressor
from percviz.workflows.regression import curve_work, regression_work


@pytest.fixture(scope="module")
def autoencoder():  # type: ignore[no-untyped-def]
    return load_regressor("autoencoder")


def test_an_over_long_curve_is_refused_before_it_runs(autoencoder) -> None:  # type: ignore[no-untyped-def]
    hosted = replace(LOCAL, hosted=True, max_sweep_cells=60)
    with pytest.raises(ParameterError, match=r"would run 63 attacks .* at most 60"):
        curve_work(autoencoder, ["chelsea"], "2", [0.1 * (i + 1) for i in range(21)], limits=hosted)
    with pytest.raises(ParameterError, match="finite"):
        curve_work(autoencoder, ["chelsea"], "2", [float("nan")])
    with pytest.raises(ParameterError, match="photo"):
        curve_work(autoencoder, [], "2", [1.0])


def test_a_curve_stops_on_cancel_and_keeps_its_finished_points(autoencoder) -> None:  # type: ignore[no-untyped-def]
    work = curve_work(autoencoder, ["chelsea"], "2", [0.5, 1.0, 2.0])
    records: list[dict] = []

    def progress(record: dict) -> bool:
        records.append(record)
        return record["done"] < 2  # cancel once two points are done

    curve = work(progress)
    assert curve.cancelled and len(curve.rows) == 2
    assert {r["eps"] for r in curve.rows} == {0.5, 1.0}


def test_a_run_reports_the_attack_and_local_caps_hold(autoencoder) -> None:  # type: ignore[no-untyped-def]
    pixels = fit_to_model(load_sample("coffee").pixels, autoencoder.input_size)
    run = regression_work(autoencoder, pixels, "reg_quad", {"p": "2", "eps": 1.0}, seed=0)(lambda _r: True)
    assert run.within and not run.cancelled and run.metrics["l2"] <= 1.0 + 1e-5
    with pytest.raises(ParameterError, match="subsets"):
        regression_work(autoencoder, pixels, "reg_subset", {"subsets": 100_000}, seed=0)
    x = to_tensor(pixels)
    with pytest.raises(ParameterError, match="candidates"):  # the template refuses it too (a recipe)
        run_regression_attack("reg_quad", autoencoder, x, {"p": "1", "candidates": 1_000_000})
