"""The Streamlit app runs under AppTest with no exception (browser tests live in test_browser.py).

Every page is run; Explore runs a real attack on the offline model (few steps), and the tests
check the elements a user relies on: verdict, charts, metrics, views, downloads, the URL state,
and that switching a view reruns nothing expensive.
"""

from __future__ import annotations

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
        "P(D) (Zhang et al. 2020)",
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
    assert any(b.label == "Evaluate" for b in at.button)  # the page still renders its controls
    assert at.multiselect(key="evl_attacks").value == ["fgsm", "pgd"]


def _explore_clean() -> AppTest:
    at = _app()
    at.switch_page("pages/1_Explore.py").run()
    _clean(at)
    return at


def _request(at: AppTest, attack: str, params: dict, run: bool = False) -> None:
    at.session_state["pv_explore_request"] = {"attack": attack, "params": params, "run": run}
    at.run()
    _clean_or_capped(at)


def _clean_or_capped(at: AppTest) -> None:
    """No exception; an error only as the one sentence naming this server's cap on a value, or
    the missing weights a preset's distance network needs."""
    assert not at.exception, [e.value for e in at.exception]
    allowed = ("This server allows at most", "weights, which are not installed")
    assert all(any(a in e.value for a in allowed) for e in at.error), [e.value for e in at.error]


def test_every_preset_of_every_attack_fills_the_form() -> None:
    """Each paper preset (Learn's "Try it" path) draws the form without error and shows its values."""
    from percviz.attacks.base import registry

    at = _explore_clean()
    count = 0
    for spec in registry("classification").values():
        for name, values in spec.presets.items():
            _request(at, spec.id, dict(values))
            assert at.selectbox(key="ex_attack").value == spec.id, name
            for pname, value in values.items():
                key = f"ex_{spec.id}_{pname}"
                if isinstance(value, float) and value == float("inf"):
                    assert at.session_state[key + "_inf"] is True, (spec.id, name, pname)
                elif isinstance(value, int | float) and not isinstance(value, bool):
                    assert abs(float(at.session_state[key]) - float(value)) <= 1e-9 * max(1.0, abs(value)), (
                        spec.id,
                        name,
                        pname,
                        at.session_state[key],
                    )
            count += 1
    assert count == sum(len(s.presets) for s in registry("classification").values())


def test_every_parameter_at_its_limits_and_infinity_unticked() -> None:
    """Each numeric parameter at its lowest and highest value, and every "= ∞" box unticked."""
    from percviz.attacks.base import registry

    at = _explore_clean()
    for spec in registry("classification").values():
        for p in spec.params:
            if p.kind not in ("int", "float"):
                continue
            edges = [v for v in (p.low, p.high) if v is not None and v != float("inf")]
            if p.allow_inf:
                edges.append(float("inf"))
            for value in edges:
                _request(at, spec.id, {p.name: int(value) if p.kind == "int" else value})
        for p in spec.params:
            if p.allow_inf:
                _request(at, spec.id, {p.name: float("inf")})
                at.checkbox(key=f"ex_{spec.id}_{p.name}_inf").uncheck().run()
                _clean_or_capped(at)


def test_gnm_link_with_a_finite_kappa_and_its_l2_preset_button() -> None:
    at = _app()
    at.query_params.update({"attack": "gnm", "p_kappa": "5"})
    at.switch_page("pages/1_Explore.py").run()
    _clean(at)
    assert at.selectbox(key="ex_attack").value == "gnm"
    assert at.session_state["ex_gnm_kappa_inf"] is False and at.session_state["ex_gnm_kappa"] == 5.0
    at.query_params.clear()
    preset = next(b for b in at.button if b.label == "L2 (ε = 1)")
    preset.click().run()  # sets the preset and runs it
    _clean(at)
    assert any(m.value.startswith('<div class="pv-verdict') for m in at.markdown)
    recipe = at.session_state["pv_results_ex"][at.session_state["pv_current_ex"]].recipe
    assert recipe.params["p"] == 2.0 and recipe.params["eps"] == 1.0
    assert at.number_input(key="ex_gnm_eps").value == 1.0


def test_explore_history_pick_puts_its_recipe_in_the_form(explored: AppTest) -> None:
    at = explored
    first = at.session_state["pv_current_ex"]
    at.selectbox(key="ex_attack").set_value("fgsm").run()
    at.button(key=SUBMIT).click().run()
    _clean(at)
    assert at.session_state["pv_current_ex"] != first
    assert at.selectbox(key="ex_history").value == at.session_state["pv_current_ex"]  # newest shown
    at.selectbox(key="ex_history").set_value(first).run()
    _clean(at)
    assert at.session_state["pv_current_ex"] == first
    assert at.selectbox(key="ex_attack").value == "pgd"
    assert at.number_input(key="ex_pgd_steps").value == 2
    assert not [c for c in at.caption if "settings in the sidebar differ" in c.value]


def _arrays(value, depth: int = 0):
    """Every NumPy array reachable from a session-state value (containers and dataclasses)."""
    import dataclasses

    import numpy as np

    if depth > 6:
        return
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _arrays(v, depth + 1)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _arrays(v, depth + 1)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _arrays(getattr(value, f.name), depth + 1)


def test_an_upload_keeps_only_model_size_and_preview_arrays() -> None:
    """A 2400×2400 upload (66 MB as float32) leaves at most a 256-px preview in session state."""
    import io

    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, 2400, dtype=np.float32)
    rgb = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.tile(ramp, (2400, 1)), np.tile(ramp[:, None], (1, 2400))], -1
    )
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, format="PNG")
    at = _explore_clean()
    at.radio(key="ex_image_source").set_value("Upload").run()
    at.file_uploader(key="ex_image_upload").upload("big.png", buf.getvalue(), "image/png").run()
    _clean(at)
    at.slider(key="ex_image_crop").set_value(0.75).run()
    _clean(at)
    state = {k: at.session_state[k] for k in at.session_state}
    sizes = [a.size for a in _arrays(state)]
    assert sizes and max(sizes) <= 256 * 256 * 3, sorted(sizes)[-3:]
    fitted = at.session_state["ex_image_fitted"]
    assert fitted[1].shape == (224, 224, 3) and fitted[0][2] == 0.75
    summary = at.session_state["ex_image_decoded"][1]
    assert (summary.height, summary.width) == (2400, 2400)


def test_live_mode_reruns_as_a_control_moves() -> None:
    at = _explore_clean()
    at.selectbox(key="ex_attack").set_value("fgsm").run()
    at.toggle(key="ex_live").set_value(True).run()  # live: the current settings run at once
    _clean(at)
    first = at.session_state["pv_current_ex"]
    for eps in (2 / 255, 6 / 255):
        at.number_input(key="ex_fgsm_eps").set_value(eps).run()  # no Run click
        _clean(at)
        entry = at.session_state["pv_results_ex"][at.session_state["pv_current_ex"]]
        assert abs(entry.recipe.params["eps"] - eps) < 1e-9 and entry.key != first
        assert any("Live: this update took" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key == SUBMIT]  # no form in live mode


def test_teaching_view_steps_through_the_lesson() -> None:
    at = _explore_clean()
    at.toggle(key="ex_teach").set_value(True).run()
    _clean(at)
    at.button(key="ex_lesson_0").click().run()  # FGSM on the cat
    _clean(at)
    entry = at.session_state["pv_results_ex"][at.session_state["pv_current_ex"]]
    assert entry.recipe.attack == "fgsm" and entry.recipe.image.sample == "chelsea"
    assert any(m.value.startswith('<div class="pv-verdict') for m in at.markdown)
    assert at.get("latex") and at.slider(key=f"teach_{entry.short}_wipe").value == 0.5
    assert not at.get("tabs") or not [t for t in at.tabs if t.label == "SSIM maps"]


def test_a_bad_link_quotes_each_value_it_could_not_use() -> None:
    at = _app()
    at.query_params.update({"image": "rocket", "attack": "fgsm", "p_eps": "abc", "p_bogus": "3", "view": "x"})
    at.switch_page("pages/1_Explore.py").run()
    assert not at.exception, [e.value for e in at.exception]
    warning = " ".join(w.value for w in at.warning)
    assert "eps=abc ignored: not a number" in warning, warning
    assert "bogus=3 ignored: fgsm has no parameter “bogus”" in warning, warning
    assert any("view “x” is unknown" in i.value for i in at.info)
    assert at.number_input(key="ex_fgsm_eps").value == pytest.approx(4 / 255, abs=1e-6)  # the default
    at.query_params.clear()
