"""Live mode, the teaching view and every page at two window sizes, read back from Chromium.

- Live mode: FGSM re-runs as ε changes; the L∞ card follows ε at three positions (screenshots).
- Teaching view: one switch gives the large verdict, the lesson buttons and the wipe comparison;
  a lesson step loads and runs its attack.
- Every page at 1024×768 and 1920×1080: no exception, no clipped label, value or button text.

Screenshots go to ``/tmp/percviz-modes``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import CHROMIUM, chromium_page, idle, streamlit_server, verdict_with

sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
]
SHOTS = Path("/tmp/percviz-modes")
PAGES = ("", "Explore", "Compare", "Sweep", "Evaluate", "Learn", "Regression")
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
def server() -> Iterator[str]:
    with streamlit_server(SHOTS / "streamlit.log") as url:
        yield url


def _card(page: Any, label: str) -> str:
    """The value of the metric card labelled exactly ``label`` (one read of the whole page)."""
    cards = page.evaluate(
        """() => [...document.querySelectorAll('[data-testid="stMetric"]')].map(m => [
             m.querySelector('[data-testid="stMetricLabel"]').innerText.trim(),
             m.querySelector('[data-testid="stMetricValue"]').innerText.trim()])"""
    )
    values = [value for name, value in cards if name == label]
    assert len(values) == 1, cards
    return str(values[0])


def _set_eps(page: Any, value: str) -> None:
    box = page.locator('[data-testid="stSidebar"] [data-testid="stNumberInput"]').filter(has_text="ε")
    field = box.first.locator("input")
    field.fill(value)
    field.press("Enter")


def test_live_mode_reruns_as_eps_moves(server: str) -> None:
    with chromium_page() as page:
        page.goto(f"{server}/Explore?attack=fgsm&image=chelsea")
        page.get_by_role("button", name="Run attack").wait_for()
        idle(page)
        page.get_by_text("Live", exact=True).click()
        expect(page.get_by_role("button", name="Run attack")).to_have_count(0, timeout=60_000)  # no form
        idle(page)
        seen = []
        for eps, shown in (("0.0039", "0.99/255"), ("0.0157", "4.00/255"), ("0.0314", "8.01/255")):
            _set_eps(page, eps)
            idle(page)
            verdict_with(page, "· FGSM")
            page.wait_for_function(
                "t => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
                ".some(e => e.innerText.includes(t))",
                arg=shown,
                timeout=120_000,
            )
            idle(page)
            seen.append(_card(page, "L∞"))
            page.screenshot(path=str(SHOTS / f"live-eps-{eps}.png"), full_page=False)
        assert seen == ["0.99/255", "4.00/255", "8.01/255"], seen
        assert page.locator('[data-testid="stException"]').count() == 0


# While a live update computes: is a progress bar shown, is it the current run's (not a faded one left
# by a run that a newer rerun replaced), and which verdict or metric card is faded?
UPDATE_STATE_JS = """() => ({
  progress: document.querySelector('[data-testid="stProgress"]') !== null,
  current: [...document.querySelectorAll('[data-testid="stProgress"]')]
    .some(e => e.closest('[data-stale="true"]') === null),
  cards: document.querySelectorAll('[data-testid="stMetric"]').length,
  stale: [...document.querySelectorAll('.pv-verdict, [data-testid="stMetric"]')]
    .filter(e => e.closest('[data-stale="true"]') !== null && e.offsetHeight > 0)
    .map(e => e.innerText.replace(/\\s+/g, ' ').slice(0, 40)),
})"""


def test_live_update_keeps_the_last_result_drawn_while_it_computes(server: str) -> None:
    """While a live update computes (its progress bar shows), the last result's verdict and cards
    stay drawn: the verdict is never faded, and once the page has redrawn the last result (the last
    look at the current run's progress bar before the update lands) no card is faded either; then the
    update replaces them in place. (The old order — wait for the update, then draw — kept every card
    faded the whole time.) A progress bar that is itself faded belongs to a run that a newer rerun
    replaced while that rerun redraws the page; cards not yet redrawn are faded then, by design."""
    with chromium_page() as page:
        page.goto(f"{server}/Explore?attack=pgd&image=chelsea&p_steps=10&p_eps=0.0039")
        page.get_by_role("button", name="Run attack").wait_for()
        idle(page)
        page.get_by_text("Live", exact=True).click()
        verdict_with(page, "· PGD")
        idle(page)
        before = _card(page, "L∞")
        _set_eps(page, "0.0157")
        page.locator('[data-testid="stProgress"]').first.wait_for(timeout=60_000)
        looks = []
        while True:
            state = page.evaluate(UPDATE_STATE_JS)
            if not state["progress"]:
                break
            looks.append(state)
            page.wait_for_timeout(40)
        page.screenshot(path=str(SHOTS / "live-updated.png"), full_page=False)
        page.wait_for_function(
            "t => [...document.querySelectorAll('[data-testid=\"stMetricValue\"]')]"
            ".some(e => e.innerText.includes(t))",
            arg="4.00/255",
            timeout=120_000,
        )
        idle(page)
        assert looks, "the update's progress bar was never seen"
        assert all(look["cards"] >= 8 for look in looks), "the last result must stay on screen"
        assert not any(any(text.startswith("Fooled") for text in look["stale"]) for look in looks), looks
        current = [look for look in looks if look["current"]]
        assert current, f"the update's own progress bar was never seen: {looks}"
        assert current[-1]["stale"] == [], f"cards still faded just before the update landed: {current[-1]}"
        assert before == "0.99/255" and _card(page, "L∞") == "4.00/255"
        assert page.get_by_text("Live: this update took").count() == 1


def test_teaching_view_and_a_lesson_step(server: str) -> None:
    with chromium_page() as page:
        page.goto(f"{server}/Explore")
        page.get_by_role("button", name="Run attack").wait_for()
        idle(page)
        page.get_by_text("Teaching view", exact=True).click()
        idle(page)
        page.get_by_role("button", name="1 · FGSM").click()
        page.get_by_text("One signed gradient step of 4/255").first.wait_for(timeout=120_000)
        text = verdict_with(page, "ooled", timeout_s=120)  # "Fooled." or "Not fooled."
        idle(page)
        assert "Fooled" in text or "Not fooled" in text
        page.screenshot(path=str(SHOTS / "teaching-fgsm.png"), full_page=True)
        page.locator(".katex").first.wait_for(timeout=30_000)  # the formula
        assert page.get_by_text("left").filter(has_text="original").count() >= 1  # the wipe caption
        page.screenshot(path=str(SHOTS / "teaching-fgsm.png"), full_page=True)
        assert page.locator('[data-testid="stException"]').count() == 0


@pytest.mark.parametrize(("width", "height"), [(1024, 768), (1920, 1080)])
def test_every_page_fits_the_window(server: str, width: int, height: int) -> None:
    with chromium_page(width, height) as page:
        for name in PAGES:
            page.goto(f"{server}/{name}")
            page.locator("h1").first.wait_for()
            idle(page)
            page.wait_for_timeout(500)
            assert page.locator('[data-testid="stException"]').count() == 0, name
            assert page.evaluate(CLIPPED_JS) == [], (name, width)
            page.screenshot(path=str(SHOTS / f"{name or 'Home'}-{width}x{height}.png"), full_page=True)
