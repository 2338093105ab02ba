"""Compare, Sweep, Evaluate and Learn in a real browser at 1024×768 (Debian's Chromium, Playwright).

Learn: every formula renders without a KaTeX error and fits its column, every preset label is
whole, and "Try it" opens Explore *and runs* the preset. Compare: the grid's labels stay inside
the chart, the download labels are whole, and the PDF export downloads (rendered to PNG with
poppler's ``pdftoppm`` where installed). The server is always stopped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _browser import chromium_page, streamlit_server

from percviz.attacks.base import registry

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
    pytest.mark.slow,  # a Streamlit server and Chromium: CI runs it, the fast lane does not
]

# Text elements that must never be cut off (ellipsis or hidden overflow): button and download
# labels, metric values and labels, multiselect tags.
CLIPPED_JS = """
() => {
  const sel = ['.stButton [data-testid="stMarkdownContainer"]', '.stDownloadButton [data-testid="stMarkdownContainer"]',
               '[data-testid="stMetricValue"] div', '[data-testid="stMetricLabel"] div',
               '[data-testid="stMultiSelectTagsContainer"] span', '[data-testid="stMultiSelectTagsContainer"]'];
  const out = [];
  for (const el of document.querySelectorAll(sel.join(','))) {
    if (!el.offsetParent) continue;
    if (el.scrollWidth > el.clientWidth + 1 || el.scrollHeight > el.clientHeight + 2) {
      const s = getComputedStyle(el);
      if (s.overflow !== 'visible' || s.textOverflow === 'ellipsis') out.push(el.innerText.slice(0, 60));
    }
  }
  return out;
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with streamlit_server(tmp_path_factory.mktemp("streamlit") / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str):
    with chromium_page(1024, 768) as pg:
        pg.set_default_timeout(120_000)
        yield pg


def _settle(pg, timeout: float = 180) -> None:
    pg.wait_for_timeout(500)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            break
        pg.wait_for_timeout(300)
    pg.wait_for_timeout(800)


def _wait_job(pg, timeout: float = 600) -> None:
    """Wait until the page's job finished (its Cancel button is gone)."""
    pg.wait_for_timeout(2000)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pg.get_by_role("button", name="Cancel").count():
        pg.wait_for_timeout(500)
    _settle(pg)


def test_learn_formulas_render_fit_and_label_every_preset(server: str, page) -> None:
    page.goto(f"{server}/Learn")
    page.get_by_role("heading", name="Learn").first.wait_for()
    page.locator(".katex-display").first.wait_for()
    _settle(page)
    formulas = [s for s in registry().values() if s.formula]
    shown = page.locator(".katex-display")
    for _ in range(60):  # long pages render in pieces
        if shown.count() >= len(formulas):
            break
        page.wait_for_timeout(500)
    assert shown.count() >= len(formulas)
    assert page.locator(".katex-error").count() == 0
    overflow = page.evaluate(
        """() => [...document.querySelectorAll('.katex-display')]
              .filter(d => d.querySelector('.katex').scrollWidth > d.clientWidth + 1)
              .map(d => d.innerText.slice(0, 40))"""
    )
    assert overflow == []
    assert page.evaluate(CLIPPED_JS) == []
    assert page.locator('[data-testid="stException"]').count() == 0


def test_learn_try_it_opens_explore_and_runs_the_preset(server: str, page) -> None:
    page.goto(f"{server}/Learn")
    page.get_by_role("heading", name="Learn").first.wait_for()
    _settle(page)
    preset = next(iter(registry()["fgsm"].presets))
    page.get_by_role("button", name=preset, exact=True).first.click()
    page.get_by_role("heading", name="Explore").first.wait_for()
    verdict = page.locator(".pv-verdict")
    verdict.wait_for(timeout=300_000)
    text = verdict.inner_text()
    assert "Fooled." in text or "Not fooled." in text
    _settle(page)
    assert "attack=fgsm" in page.url


def test_compare_grid_labels_and_downloads_fit_and_the_pdf_exports(server: str, page, tmp_path) -> None:
    page.goto(f"{server}/Compare")
    page.get_by_role("heading", name="Compare").first.wait_for()
    _settle(page)
    page.get_by_role("button", name="Compare", exact=True).first.click()
    _wait_job(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for()
    page.wait_for_timeout(1500)
    outside = chart.evaluate(
        """c => { const box = c.getBoundingClientRect();
                  return [...c.querySelectorAll('.annotation')].map(a => a.getBoundingClientRect())
                    .filter(r => r.left < box.left - 1 || r.right > box.right + 1 || r.top < box.top - 1)
                    .length; }"""
    )
    assert outside == 0
    titles = chart.evaluate("c => [...c.querySelectorAll('.annotation')].map(a => a.textContent).join(' | ')")
    assert "new class" in titles and "FGSM" in titles and "prec." in titles  # the print's captions
    assert page.evaluate(CLIPPED_JS) == []
    page.screenshot(path="/tmp/percviz-compare.png", full_page=True)
    with page.expect_download() as download:
        page.get_by_role("button", name="Figure PDF").first.click()
    pdf = tmp_path / "compare.pdf"
    download.value.save_as(pdf)
    assert pdf.read_bytes().startswith(b"%PDF-")
    if shutil.which("pdftoppm"):
        subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp_path / "compare")], check=True)
        assert list(tmp_path.glob("compare*.png"))


def test_compare_shows_each_row_as_its_attack_finishes(server: str, page) -> None:
    """With a long PGD in the middle, FGSM's row is on screen (grid and table) while PGD still runs."""
    page.goto(f"{server}/Compare")
    page.get_by_role("heading", name="Compare").first.wait_for()
    _settle(page)
    page.get_by_text("PGD / BIM (L∞) — parameters").click()  # open PGD's expander
    steps = page.locator(".st-key-cmp_pgd_steps input")
    steps.fill("400")
    steps.press("Tab")
    _settle(page)
    page.get_by_role("button", name="Compare", exact=True).first.click()
    page.get_by_text("1 of 3 attacks finished").wait_for(timeout=180_000)
    assert page.get_by_role("button", name="Cancel").count() == 1  # PGD is still running
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".main-svg").first.wait_for()
    titles = chart.evaluate("c => [...c.querySelectorAll('.annotation')].map(a => a.textContent).join(' | ')")
    assert "FGSM" in titles and "PGD" not in titles, titles
    page.get_by_text("1 of 3 attacks finished").scroll_into_view_if_needed()
    page.screenshot(path="/tmp/percviz-compare-first-row.png")
    page.get_by_role("button", name="Cancel").click()
    _wait_job(page)
    assert page.get_by_text("Cancelled; showing the attacks that finished.").count() == 1


def test_evaluate_runs_and_draws_the_operating_characteristic(server: str, page, tmp_path) -> None:
    """Evaluate → the summary table and the P(D) chart (one step line per run) read back from the screen."""
    page.goto(f"{server}/Evaluate")
    page.get_by_role("heading", name="Evaluate").first.wait_for()
    _settle(page)
    page.get_by_role("button", name="Evaluate", exact=True).first.click()
    _wait_job(page)
    page.get_by_role("tab", name="P(D) (Zhang et al. 2020)").click()
    chart = page.locator('[data-testid="stPlotlyChart"]:visible').first
    chart.wait_for()
    page.wait_for_timeout(1000)
    title = chart.evaluate("c => c.querySelector('.gtitle')?.textContent || ''")
    assert "Operating characteristic" in title
    lines = chart.evaluate("c => c.querySelectorAll('.scatterlayer .trace path.js-line').length")
    legend = chart.evaluate("c => [...c.querySelectorAll('.legendtext')].map(t => t.textContent)")
    assert lines >= 1 and len(legend) == lines, (lines, legend)
    chart.scroll_into_view_if_needed()
    chart.screenshot(path=str(Path(os.environ.get("PERCVIZ_SHOTS", tmp_path)) / "evaluate_pd.png"))
    assert page.evaluate(CLIPPED_JS) == []
