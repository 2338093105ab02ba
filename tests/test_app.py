"""The Streamlit app runs under AppTest with no exception (browser tests live in test_browser.py)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def test_home_classifies_a_bundled_photo() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    assert not at.error
    assert at.title[0].value == "percviz"
    at.selectbox(key="home_sample").set_value("coffee").run()
    assert not at.exception
    charts = at.get("plotly_chart")
    assert charts and "espresso" in charts[0].proto.spec
