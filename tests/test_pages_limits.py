"""Compare/Sweep/Evaluate inputs pass the same checks as Explore's: hosted caps on every swept
value (ints and floats alike), one upload path with the size checks, no silent truncation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from percviz.errors import ParameterError, PercvizError
from percviz.limits import HOSTED, LOCAL
from percviz.workflows import check_sweep, curve_work, grid_work
from ui.common import MB, accept_uploads, read_upload, upload_total_mb

ROOT = Path(__file__).resolve().parent.parent


def _png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("steps", [[3, 1000], [3.0, 1000.0], [200.5], ["1e23"]])
def test_swept_iteration_counts_above_the_hosted_cap_are_refused(steps):
    with pytest.raises(ParameterError, match=r"Hosted mode allows at most 200 for 'steps'"):
        check_sweep("pgd", {"eps": 0.01}, {"steps": steps, "eps": [0.01, 0.02]}, HOSTED)


def test_swept_values_within_the_caps_pass():
    check_sweep("pgd", {"eps": 0.01}, {"steps": [1.0, 200.0], "eps": [0.01, 0.02]}, HOSTED)
    check_sweep("pgd", {}, {"steps": [1000.0]}, LOCAL)
    with pytest.raises(ParameterError, match="at most 1000 for 'steps'"):
        check_sweep("pgd", {}, {"steps": [1001.0]}, LOCAL)


def test_the_fixed_parameters_of_a_sweep_are_checked_too():
    with pytest.raises(ParameterError, match="'steps'"):
        check_sweep("pgd", {"steps": 500}, {"eps": [0.01]}, HOSTED)


def test_sweep_jobs_refuse_before_running_anything(tiny, photos32, monkeypatch):
    """The job bodies check again, so a grid or curve can never run 'iteration 3 of 1000'."""
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    seen: list[dict] = []
    pixels = photos32[0].permute(1, 2, 0).numpy()
    grid = grid_work(tiny, pixels, "pgd", ("steps", [3.0, 1000.0]), ("eps", [0.01]), {}, 0)
    with pytest.raises(ParameterError, match="at most 200 for 'steps'"):
        grid(lambda r: seen.append(r) or True)
    from percviz import evaluation as ev

    images = [ev.EvalImage.from_pixels("a", pixels)]
    curves = curve_work(tiny, images, [("fgsm", {}), ("pgd", {})], "steps", [5.0, 400.0], 0, 1)
    with pytest.raises(ParameterError, match="at most 200 for 'steps'"):
        curves(lambda r: seen.append(r) or True)
    assert seen == []  # refused before the first iteration


def test_sweep_page_refuses_a_hosted_grid_above_the_cap(monkeypatch):
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    at = AppTest.from_file(str(ROOT / "pages" / "3_Sweep.py"), default_timeout=300).run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="sw_gattack").set_value("pgd").run()
    at.selectbox(key="sw_grow_pgd").set_value("steps").run()
    at.text_input(key="sw_growv_pgd_steps").set_value("3, 1000").run()
    assert not at.exception, [e.value for e in at.exception]
    errors = [e.value for e in at.error]
    assert any("Hosted mode allows at most 200 for 'steps'" in e for e in errors), errors
    assert at.button(key="sw_grun").disabled
    at.text_input(key="sw_growv_pgd_steps").set_value("3, 150").run()
    assert not [e.value for e in at.error if "steps" in e.value]
    assert not at.button(key="sw_grun").disabled


def test_one_upload_check_for_every_page():
    """Explore's single upload and Evaluate's set go through read_upload: size, pixels, side."""
    with pytest.raises(PercvizError, match="at most 6000 pixels on a side"):
        read_upload(_png(20000, 20), "strip.png", HOSTED)
    with pytest.raises(PercvizError, match="at most 12000 pixels on a side"):
        read_upload(_png(20000, 20), "strip.png", LOCAL)
    assert read_upload(_png(6000, 20), "strip.png", HOSTED).pixels.shape == (20, 6000, 3)
    assert read_upload(_png(64, 48), "small.png", HOSTED).pixels.shape == (48, 64, 3)
    with pytest.raises(PercvizError, match=r"big\.png is larger than 5 MB"):
        read_upload(b"\0" * (5 * MB + 1), "big.png", HOSTED)


def test_upload_sets_are_capped_in_count_and_total_size_and_say_so():
    big = [(f"photo{i}.png", int(4.5 * MB)) for i in range(40)]
    accepted, refused = accept_uploads(big, HOSTED)
    assert upload_total_mb(HOSTED) == 20
    assert accepted == [0, 1, 2, 3]  # 4 × 4.5 MB ≤ 20 MB < 5 × 4.5 MB
    assert len(refused) == 36 and all("at most 20 MB" in reason for _, reason in refused)
    small = [(f"p{i}.png", 1000) for i in range(20)]
    accepted, refused = accept_uploads(small, HOSTED)
    assert accepted == list(range(16))
    assert [n for n, _ in refused] == [f"p{i}.png" for i in range(16, 20)]
    assert all("at most 16 images" in reason for _, reason in refused)


def test_plans_check_every_cap_in_the_core(photos32):
    """Sweep and Evaluate pages call these plans; the refusals are the core's, one sentence each."""
    from percviz import evaluation as ev
    from percviz.limits import command_line_limits
    from percviz.workflows import plan_curve, plan_evaluate, plan_grid

    grid = plan_grid("pgd", {"eps": 0.02, "steps": 5}, ("eps", [0.01, 0.02]), ("steps", [2, 3]), HOSTED)
    assert grid.cells == 4 and grid.fixed == {} and grid.rows == ("eps", [0.01, 0.02])
    with pytest.raises(ParameterError, match="At most 36 cells; got 49"):
        plan_grid("pgd", {}, ("eps", [0.01] * 7), ("steps", [2] * 7), HOSTED)
    with pytest.raises(ParameterError, match="same parameter 'eps'"):
        plan_grid("pgd", {}, ("eps", [0.01]), ("eps", [0.02]), LOCAL)
    with pytest.raises(ParameterError, match="batch must lie in \\[1, 8\\]; got 9"):
        plan_curve([("pgd", {})], "eps", [0.01], 9, HOSTED)
    curve = plan_curve([("pgd", {"eps": 0.5, "steps": 3})], "eps", [0.01, 0.02], 2, HOSTED)
    assert curve.attacks == [("pgd", {"steps": 3})] and curve.values == [0.01, 0.02]

    pixels = photos32[0].permute(1, 2, 0).numpy()
    images = [ev.EvalImage.from_pixels(f"im{i}", pixels) for i in range(20)]
    runs = ev.make_runs(["pgd"], {"steps": 3})
    plan = plan_evaluate(images, runs, 8, limits=HOSTED)
    assert [im.name for im in plan.images] == [f"im{i}" for i in range(16)]
    assert [s.name for s in plan.skipped] == ["im16", "im17", "im18", "im19"]
    assert all(s.reason == "not used: at most 16 images per evaluation" for s in plan.skipped)
    with pytest.raises(ParameterError, match="at most 200 for 'steps'"):
        plan_evaluate(images, ev.make_runs(["pgd"], {"steps": 500}), 8, limits=HOSTED)
    # The command line streams rows to disk: no image or batch cap, the loop caps stay.
    wide = plan_evaluate(images, runs, 128, limits=command_line_limits())
    assert len(wide.images) == 20 and wide.skipped == [] and wide.batch == 128
    with pytest.raises(ParameterError, match="at most 1000 for 'steps'"):
        plan_evaluate(images, [ev.RunSpec("pgd", {"steps": 1001})], 8, limits=command_line_limits())
