"""The Streamlit app runs under AppTest with no exception (browser tests live in test_browser.py).

Every page is run; Explore runs a real attack on the offline model (few steps), and the tests
check the elements a user relies on: verdict, charts, metrics, views, downloads, the URL state,
and that switching a view reruns nothing expensive.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
SUBMIT = "FormSubmitter:ex_form-Run attack"


def _app() -> AppTest:
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)


def _clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_home_classifies_a_bundled_photo() -> None:
    at = _app().run()
    _clean(at)
    assert at.title[0].value == "percviz"
    at.selectbox(key="home_sample").set_value("coffee").run()
    _clean(at)
    charts = at.get("plotly_chart")
    assert charts and "espresso" in charts[0].proto.spec


@pytest.fixture(scope="module")
def explored() -> AppTest:
    """Explore after one PGD run (2 steps) on the bundled coffee photo."""
    at = _app()
    at.switch_page("pages/1_Explore.py").run()
    _clean(at)
    at.selectbox(key="ex_image_sample").set_value("coffee").run()
    at.selectbox(key="ex_attack").set_value("pgd").run()
    _clean(at)
    at.number_input(key="ex_pgd_steps").set_value(2)
    at.number_input(key="ex_pgd_eps").set_value(8 / 255)
    at.number_input(key="ex_pgd_step_size").set_value(4 / 255)
    at.button(key=SUBMIT).click().run()
    return at


def test_explore_runs_an_attack_and_shows_every_part(explored: AppTest) -> None:
    at = explored
    _clean(at)
    verdict = [m.value for m in at.markdown if m.value.startswith('<div class="pv-verdict')]
    assert verdict and "Fooled." in verdict[0] and "espresso" in verdict[0]
    assert {m.label for m in at.metric} >= {"SSIM", "PSNR", "L∞", "L2", "L0", "8-bit PNG"}
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("adversarial: top-5" in s for s in specs)
    assert [t.label for t in at.tabs][:6] == [
        "Perturbation",
        "SSIM maps",
        "Difference",
        "Magnification",
        "GradCAM++",
        "Noise vs CAM",
    ]
    labels = {d.proto.label for d in at.get("download_button")}
    assert {"Adversarial PNG", "Float NPY", "Result JSON", "Recipe JSON"} <= labels
    assert {"Figure PDF", "Figure SVG", "Figure PNG"} <= labels
    q = at.query_params
    assert (q["attack"], q["image"], q["p_steps"]) == ("pgd", "coffee", "2")


def test_explore_view_switch_reuses_the_cached_result(explored: AppTest) -> None:
    at = explored
    entry = at.session_state["pv_results_ex"]
    assert len(entry) == 1
    timings = {}
    for tab in ("SSIM maps", "GradCAM++", "Noise vs CAM", "Magnification", "Difference", "Perturbation"):
        at.session_state["ex_view"] = tab
        at.run()
        _clean(at)
        timings[tab] = at.session_state["pv_render_s_explore"]
        assert len(at.session_state["pv_results_ex"]) == 1  # nothing recomputed, nothing added
    gain = next(s for s in at.select_slider if s.key and "_gain_" in s.key)
    gain.set_value(10.0).run()
    _clean(at)
    assert any("perturbation × 10" in c.proto.spec for c in at.get("plotly_chart"))
    print("cached view toggle, script seconds:", {k: round(v, 3) for k, v in timings.items()})


def test_explore_url_state_and_a_bad_parameter() -> None:
    at = _app()
    at.query_params.update({"image": "rocket", "attack": "fgsm", "p_eps": "0.0313725", "seed": "7"})
    at.switch_page("pages/1_Explore.py").run()
    _clean(at)
    assert at.selectbox(key="ex_image_sample").value == "rocket"
    assert at.selectbox(key="ex_attack").value == "fgsm"
    assert at.number_input(key="ex_seed").value == 7
    assert abs(at.number_input(key="ex_fgsm_eps").value - 0.0313725) < 1e-6
    at.query_params.clear()


def test_learn_lists_every_method_and_try_it_opens_explore() -> None:
    from percviz.attacks.base import registry

    at = _app()
    at.switch_page("pages/5_Learn.py").run()
    _clean(at)
    assert len(at.get("latex")) >= len([s for s in registry().values() if s.formula])
    at.button(key="learn_pgd_0").click().run()
    _clean(at)
    assert at.selectbox(key="ex_attack").value == "pgd"
    assert at.number_input(key="ex_pgd_steps").value == 10  # the preset's steps


def test_compare_runs_two_attacks_in_one_grid() -> None:
    at = _app()
    at.switch_page("pages/2_Compare.py").run()
    _clean(at)
    at.multiselect(key="cmp_attacks").set_value(["fgsm", "pgd"]).run()
    at.number_input(key="cmp_pgd_steps").set_value(1).run()
    at.button(key="cmp_run").click().run()
    _clean(at)
    assert any("SSIM map R" in c.proto.spec for c in at.get("plotly_chart"))
    table = at.dataframe[0].value
    assert list(table["attack"]) == ["fgsm", "pgd"]


def test_sweep_grid_and_curves() -> None:
    at = _app()
    at.switch_page("pages/3_Sweep.py").run()
    _clean(at)
    at.selectbox(key="sw_gattack").set_value("pgd").run()
    at.selectbox(key="sw_grow_pgd").set_value("eps").run()
    at.text_input(key="sw_growv_pgd_eps").set_value("2/255, 8/255").run()
    at.selectbox(key="sw_gcol_pgd").set_value("steps").run()
    at.text_input(key="sw_gcolv_pgd_steps").set_value("1").run()
    _clean(at)
    at.button(key="sw_grun").click().run()
    _clean(at)
    assert any("eps = 0.03137" in c.proto.spec for c in at.get("plotly_chart"))
    at.multiselect(key="sw_cimages").set_value(["chelsea", "coffee"]).run()
    at.multiselect(key="sw_cattacks").set_value(["fgsm"]).run()
    at.text_input(key="sw_cvalues").set_value("1/255, 8/255").run()
    at.button(key="sw_crun").click().run()
    _clean(at)
    assert any("fooling rate" in c.proto.spec for c in at.get("plotly_chart"))


def test_evaluate_tables_and_downloads() -> None:
    at = _app()
    at.switch_page("pages/4_Evaluate.py").run()
    _clean(at)
    at.multiselect(key="evl_samples").set_value(["chelsea", "coffee"]).run()
    at.multiselect(key="evl_attacks").set_value(["fgsm"]).run()
    at.button(key="evl_run").click().run()
    _clean(at)
    assert [t.label for t in at.tabs][:4] == [
        "Attack summary",
        "Explainability (Table I)",
        "Matched quality (Tables II–III)",
        "P(D) (seed 002)",
    ]
    summary = at.dataframe[0].value
    assert list(summary["images"]) == [2]
    assert {d.proto.label for d in at.get("download_button")} >= {"Rows CSV", "Summary JSON"}
    assert at.dataframe[1].value.shape[0] == 1  # explainability row for fgsm


def test_pages_survive_a_server_folder_that_does_not_exist() -> None:
    at = _app()
    at.switch_page("pages/4_Evaluate.py").run()
    at.radio(key="evl_source").set_value("Server folder").run()
    at.text_input(key="evl_folder").set_value("/nonexistent/folder").run()
    assert not at.exception
    assert at.error and "folder" in at.error[0].value
    assert time.time()  # the page still renders its attack controls
    assert at.multiselect(key="evl_attacks").value == ["fgsm", "pgd"]
