"""The Regression page in a real browser: an attack on the autoencoder and the Fig. 4 curve.

`streamlit run app.py` on a free port + Debian's Chromium through Playwright; screenshots go to
``$PERCVIZ_SHOTS`` (default: the system temp folder), never into the repository. The server is
always stopped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import chromium_page, streamlit_server

ROOT = Path(__file__).resolve().parent.parent
SHOTS = Path(os.environ.get("PERCVIZ_SHOTS", Path(tempfile.gettempdir()) / "percviz-shots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with streamlit_server(SHOTS / "streamlit-regression.log") as url:
        yield url


def _settle(pg, timeout: float = 400) -> None:
    pg.wait_for_timeout(500)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            break
        pg.wait_for_timeout(300)
    pg.wait_for_timeout(800)


def test_regression_page_attack_and_fig4(server: str) -> None:
    with chromium_page(1440, 1000) as page:
        page.set_default_timeout(400_000)
        page.goto(f"{server}/Regression")
        page.get_by_role("heading", name="Regression").first.wait_for()
        _settle(page)
        page.get_by_role("button", name="Run").first.click()
        page.get_by_text("output PSNR").first.wait_for()
        _settle(page)
        page.locator(".js-plotly-plot").first.wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(SHOTS / "regression-attack.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0
        assert "f(x + η)" in page.content()
        eps = page.get_by_label("ε values (comma-separated; empty = default grid)")
        eps.fill("0.5, 1, 2")
        eps.press("Tab")
        page.get_by_role("button", name="Compute the curve").click()
        chart = page.locator(".js-plotly-plot").filter(has_text="Output PSNR against ε")
        chart.first.wait_for()
        _settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        content = page.content()
        assert "quadratic-ℓ2" in content and "random-ℓ2" in content and "linear-ℓ2-10" in content
        chart.first.scroll_into_view_if_needed()
        page.wait_for_timeout(800)
        page.screenshot(path=str(SHOTS / "regression-fig4.png"), full_page=True)


def test_regression_curve_runs_on_the_queue_and_cancels(server: str) -> None:
    """The Fig. 4 curve is a queued job: a progress bar and Cancel; a cancelled curve keeps the
    points it finished. The quadratic attack's form shows only what the chosen norm uses."""
    with chromium_page(1440, 1000) as page:
        page.set_default_timeout(400_000)
        page.goto(f"{server}/Regression")
        page.get_by_role("heading", name="Regression").first.wait_for()
        _settle(page)
        assert page.get_by_text("iterations (p = 2) / sign blocks (p = ∞)").count() == 1
        assert page.get_by_text("solver", exact=True).count() == 1  # Lanczos or power: p = 2 only
        assert page.get_by_text("candidates", exact=True).count() == 0  # p = 2 does not use it
        assert page.get_by_text("L1 rule", exact=True).count() == 0
        eps = page.get_by_label("ε values (comma-separated; empty = default grid)")
        eps.fill(", ".join(f"{0.1 * (i + 1):.1f}" for i in range(30)))
        eps.press("Tab")
        page.get_by_role("button", name="Compute the curve").click()
        page.get_by_role("button", name="Cancel").wait_for()
        page.get_by_text("Fig. 4 curve (30 ε values, 3 photos)").first.wait_for()
        page.wait_for_timeout(3000)
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text("Cancelled after").wait_for(timeout=120_000)
        _settle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
