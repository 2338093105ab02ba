"""Explore in a real browser (Chromium, 1440×900): what the screen shows after each user action.

1. The newest finished run is always the one displayed (PGD → FGSM → FPGAP).
2. The form always shows the recipe of the result on screen (read back widget by widget, also
   after the Home → Explore → immediate Run → view tab path that used to reset it to minimums).
3. The L0 card equals ``result.json`` of the same recipe replayed by the CLI.
4. Cancel stops within about one iteration and shows that run's last iterate, marked cancelled,
   with no duplicate history entry.
5. A view-tab switch reruns only the views (nothing outside them goes stale); the switch time is
   measured and printed, first open and cached; Run → verdict minus the attack's own time too.
6. A link's ``view=`` opens that tab, and the URL follows the open tab.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _browser import CHROMIUM, ROOT, chromium_page, idle, pick, sidebar_values, streamlit_server, verdict_with

pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
]
SHOTS = Path("/tmp/percviz-explore")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with streamlit_server(SHOTS / "streamlit.log") as url:
        yield url


@pytest.fixture()
def page(server: str) -> Iterator[Any]:
    with chromium_page() as pg:
        yield pg


def _open_explore(page: Any, server: str, query: str = "") -> None:
    page.goto(f"{server}/Explore{query}")
    page.get_by_role("button", name="Run attack").wait_for()
    idle(page)


def _set_number(page: Any, label: str, value: str) -> None:
    box = page.locator('[data-testid="stSidebar"] [data-testid="stNumberInput"]').filter(has_text=label)
    field = box.first.locator("input")
    field.fill(value)
    field.press("Tab")


def _run(page: Any) -> None:
    page.get_by_role("button", name="Run attack").first.click()


def _download_json(page: Any, label: str) -> dict[str, Any]:
    with page.expect_download() as info:
        page.get_by_role("button", name=label).first.click()
    return json.loads(Path(info.value.path()).read_text())


def _recipe_on_screen_matches_form(page: Any) -> dict[str, Any]:
    """Read every form widget back and compare it with the recipe of the displayed result."""
    from percviz.attacks.base import get_attack
    from ui.params import UNTARGETED, choice_label, param_label

    idle(page)  # the download button of the result on screen, not the one being replaced
    recipe = _download_json(page, "Recipe JSON")
    spec = get_attack(recipe["attack"])
    labels = [f"{param_label(p)} = ∞" if p.allow_inf else param_label(p) for p in spec.params]
    shown = sidebar_values(page, expect=["Seed", *labels])
    assert int(shown["Seed"]) == recipe["seed"], (shown, recipe)
    for p in spec.params:
        value = recipe["params"][p.name]
        label = param_label(p)
        if p.allow_inf:
            assert shown[f"{label} = ∞"] == str(value in ("inf", math.inf)), (p.name, shown, value)
            if value in ("inf", math.inf):
                continue
        assert label in shown, (label, recipe["attack"], shown)
        text = shown[label]
        if p.kind == "bool":
            assert shown[label] == str(bool(value)), (p.name, shown)
        elif p.kind == "choice":
            assert text == choice_label(p, value), (p.name, text, value)
        elif p.kind == "class":
            expected = "none (untargeted)" if value in (None, UNTARGETED) else f"{value}: "
            assert text.startswith(expected), (p.name, text)
        else:
            number = float(text.replace("∞", "inf"))
            assert math.isclose(number, float(value), rel_tol=2e-3, abs_tol=5e-5), (p.name, text, value)
    return recipe


def test_newest_run_is_always_displayed_and_the_form_shows_its_recipe(server: str, page: Any) -> None:
    _open_explore(page, server)
    _set_number(page, "steps", "3")
    idle(page)
    seen = []
    for attack, title in (("pgd", "PGD / BIM"), ("fgsm", "FGSM"), ("fpgap", "FPGAP")):
        if attack != "pgd":
            pick(page, "Attack", title)
            if attack == "fpgap":
                _set_number(page, "steps", "3")
        _run(page)
        text = verdict_with(page, f"· {title}")
        idle(page)
        seen.append(text)
        assert page.get_by_text("the settings in the sidebar differ").count() == 0
        recipe = _recipe_on_screen_matches_form(page)
        assert recipe["attack"] == attack
        if attack != "pgd":
            picker = page.get_by_role("combobox", name="Result").first
            assert picker.input_value().startswith(attack), picker.input_value()
    page.screenshot(path=str(SHOTS / "explore-three-runs.png"), full_page=True)
    # a pick from the history puts that result's recipe into the form
    pick(page, "Result", re.compile(r"^pgd "))
    verdict_with(page, "· PGD / BIM")
    recipe = _recipe_on_screen_matches_form(page)
    assert recipe["attack"] == "pgd" and recipe["params"]["steps"] == 3
    assert len(seen) == 3


def test_form_keeps_the_recipe_after_home_run_and_a_view_tab(server: str, page: Any) -> None:
    page.goto(server)
    page.get_by_role("heading", name="percviz").wait_for()
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Explore").click()
    run = page.get_by_role("button", name="Run attack")
    run.wait_for()
    run.first.click()  # as soon as it appears
    verdict_with(page, "· PGD / BIM")
    idle(page)
    page.get_by_role("tab", name="SSIM maps").click()
    idle(page)
    recipe = _recipe_on_screen_matches_form(page)
    assert recipe["params"]["eps"] > 0 and recipe["params"]["steps"] > 1
    query = page.url.split("?", 1)[1]
    assert "p_eps=0&" not in query and "p_steps=1&" not in query, query
    # a page switch and back keeps the form and the result
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Learn").click()
    page.get_by_role("heading", name="Learn").first.wait_for()
    idle(page)
    page.locator('[data-testid="stSidebar"]').get_by_role("link", name="Explore").click()
    verdict_with(page, "· PGD / BIM")
    idle(page)
    again = _recipe_on_screen_matches_form(page)
    assert again == recipe


def test_l0_card_equals_result_json_of_the_cli(server: str, page: Any, tmp_path: Path) -> None:
    _open_explore(page, server, "?attack=fpgap&image=coffee&p_steps=3")
    _run(page)
    verdict_with(page, "· FPGAP")
    idle(page)
    report = _download_json(page, "Result JSON")
    recipe = _download_json(page, "Recipe JSON")
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    out = tmp_path / "out"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "percviz",
            "attack",
            "--recipe",
            str(tmp_path / "recipe.json"),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    cli = json.loads((out / "result.json").read_text())
    assert cli["metrics"]["l0"] == report["metrics"]["l0"]
    h, w = cli["image"]["model_size"]
    cards = {
        m.locator('[data-testid="stMetricLabel"]').inner_text().strip(): m.locator(
            '[data-testid="stMetricValue"]'
        ).inner_text()
        for m in page.locator('[data-testid="stMetric"]').all()
    }
    pixels = float(re.match(r"([\d.]+)%", cards["L0"]).group(1))
    values = float(re.match(r"([\d.]+)%", cards["L0 (values)"]).group(1))
    assert abs(pixels - 100 * cli["metrics"]["l0"] / (h * w)) <= 0.05, (cards["L0"], cli["metrics"]["l0"])
    assert abs(values - 100 * cli["metrics"]["l0_values"] / (3 * h * w)) <= 0.05
    assert cards["L0"].endswith("of pixels") and cards["L0 (values)"].endswith("of values")


def test_cancel_stops_within_an_iteration_and_shows_that_run(server: str, page: Any) -> None:
    _open_explore(page, server, "?attack=pgd&image=rocket&p_steps=1")
    _run(page)
    verdict_with(page, "· PGD / BIM")
    idle(page)
    _set_number(page, "steps", "400")
    idle(page)
    _run(page)
    page.get_by_text(re.compile(r"iteration \d+ of 400")).first.wait_for()
    page.get_by_text(re.compile(r"iteration (1[0-9]|[2-9]\d) of 400")).first.wait_for()
    clicked = time.monotonic()
    page.get_by_role("button", name="Cancel").click()
    text = verdict_with(page, "Cancelled")
    stopped = time.monotonic() - clicked
    idle(page)
    iterations = int(re.search(r"Cancelled at iteration (\d+)", text).group(1))
    assert 10 <= iterations < 400, text
    page.get_by_role("combobox", name="Result").first.click()
    options = [o.inner_text() for o in page.get_by_role("option").all()]
    page.keyboard.press("Escape")
    assert len(options) == len(set(options)) == 2, options
    assert any("cancelled at iteration" in o for o in options)
    print(f"cancel → cancelled result on screen: {stopped:.2f} s, {iterations} of 400 iterations")


# Marks every element outside the view tabs that goes stale (a whole-page rerun) from now on.
# Records every visible element outside the view tabs that goes stale (as in a whole-page rerun)
# from now on; an empty zero-height placeholder is not something a user sees.
WATCH_STALE_OUTSIDE_VIEWS = """() => {
  window.__pvStale = [];
  new MutationObserver(records => {
    for (const r of records) {
      const el = r.target;
      if (el.getAttribute('data-stale') === 'true' && !el.closest('.st-key-ex_view') && el.offsetHeight > 0)
        window.__pvStale.push((el.innerText || el.getAttribute('data-testid') || '').slice(0, 60));
    }
  }).observe(document.body, {attributes: true, attributeFilter: ['data-stale'], subtree: true});
}"""
PANEL_SHOWN = (
    "n => { const t = [...document.querySelectorAll('[role=tab]')].find(e => e.innerText.trim() === n);"
    " if (!t || t.getAttribute('aria-selected') !== 'true') return false;"
    " const p = document.getElementById(t.getAttribute('aria-controls'));"
    " return p && p.querySelector('.js-plotly-plot .main-svg') !== null; }"
)


def _switch_times(page: Any, names: tuple[str, ...]) -> dict[str, float]:
    """Click each view tab; seconds from the click to its panel's chart drawn."""
    times = {}
    for name in names:
        tab = page.get_by_role("tab", name=name)
        start = time.monotonic()
        tab.click()
        page.wait_for_function(PANEL_SHOWN, arg=name)
        times[name] = round(time.monotonic() - start, 3)
        idle(page)
    return times


def test_view_tabs_switch_without_a_rerun(server: str, page: Any) -> None:
    _open_explore(page, server, "?attack=fgsm&image=chelsea")
    _run(page)
    verdict_with(page, "· FGSM")
    idle(page)
    page.evaluate(WATCH_STALE_OUTSIDE_VIEWS)
    names = ("SSIM maps", "Difference", "GradCAM++", "Noise vs CAM", "Magnification", "Perturbation")
    first = _switch_times(page, names)
    again = _switch_times(page, names)
    stale = page.evaluate("() => window.__pvStale")
    assert stale == [], f"switching views reran the page outside the views: {stale[:5]}"
    page.screenshot(path=str(SHOTS / "explore-tabs.png"), full_page=True)
    print("tab switch seconds (click → chart drawn), first open:", first)
    print("tab switch seconds (click → chart drawn), cached:", again)


def _attack_seconds(verdict: str) -> float:
    return float(re.search(r"passes, ([0-9.]+) s on", verdict).group(1))


def test_run_to_verdict_is_the_attack_plus_a_little(server: str, page: Any) -> None:
    """Run → verdict on screen, minus the attack's own time (shown in the verdict): what the page
    and the first screen add. Printed for FGSM and FPGAP (no timed assertion)."""
    added = {}
    for attack, tag in (("fgsm", "· FGSM"), ("fpgap", "· FPGAP")):
        for seed in (0, 1):  # the first run loads the model and warms up; the second is measured
            _open_explore(page, server, f"?attack={attack}&image=chelsea&seed={seed}")
            start = time.monotonic()
            _run(page)
            text = verdict_with(page, tag)
            total = time.monotonic() - start
            idle(page)
        assert re.search(r"seed=1", page.url), page.url
        added[attack] = {"click_to_verdict_s": round(total, 3), "attack_s": _attack_seconds(text)}
        added[attack]["added_s"] = round(total - added[attack]["attack_s"], 3)
        assert page.get_by_role("tab", name="Perturbation").get_attribute("aria-selected") == "true"
    page.screenshot(path=str(SHOTS / "explore-first-screen.png"))
    print("run → verdict:", added)


def _selected_view(page: Any) -> str:
    from ui.views import VIEW_TABS

    tabs = page.locator('[role="tab"][aria-selected="true"]').all_inner_texts()
    return next(t.strip() for t in tabs if t.strip() in VIEW_TABS)


def _url_view(page: Any, expected: str | None) -> None:
    page.wait_for_function(
        "v => new URL(location.href).searchParams.get('view') === v", arg=expected, timeout=10_000
    )


def _colour_bar_end(page: Any) -> tuple[int, int, int]:
    """The RGB the browser draws at the zero (bottom) end of the Difference view's colour bar."""
    import io

    from PIL import Image

    panel = page.locator('[role="tabpanel"]').filter(has=page.get_by_text("black = unchanged"))
    bar = panel.locator("rect.cbfill").first
    bar.scroll_into_view_if_needed()
    shot = Image.open(io.BytesIO(bar.screenshot())).convert("RGB")
    return shot.getpixel((shot.width // 2, shot.height - 2))


def _fresh_session(page: Any) -> Any:
    """A page in a new browser context of the same browser: a new Streamlit session, as a link opened elsewhere."""
    context = page.context.browser.new_context(viewport=page.viewport_size, device_scale_factor=1)
    fresh = context.new_page()
    fresh.set_default_timeout(180_000)
    return fresh


def test_a_link_opens_its_view_tab_and_the_url_follows_the_open_tab(server: str, page: Any) -> None:
    _open_explore(page, server, "?attack=fgsm&image=chelsea&run=1&view=gradcam")
    verdict_with(page, "· FGSM")
    idle(page)
    assert _selected_view(page) == "GradCAM++"
    _url_view(page, "gradcam")
    start = time.monotonic()
    page.get_by_role("tab", name="Difference").click()
    _url_view(page, "difference")
    print(f"switch to Difference, click → URL view=difference: {time.monotonic() - start:.3f} s")
    idle(page)
    _set_number(page, "Seed", "7")  # a new run: the server rewrites the URL, the open tab stays in it
    _run(page)
    page.wait_for_function(
        "() => { const q = new URL(location.href).searchParams;"
        " return q.get('seed') === '7' && q.get('run') === '1'; }",
        timeout=300_000,
    )
    idle(page)
    assert _selected_view(page) == "Difference"
    _url_view(page, "difference")
    link = page.url
    assert "run=1" in link, link
    page.get_by_role("tab", name="Perturbation").click()  # the first tab is the default: no view=
    _url_view(page, None)
    other = _fresh_session(page)
    other.goto(link)
    verdict_with(other, "· FGSM")
    idle(other)
    assert _selected_view(other) == "Difference"
    assert max(_colour_bar_end(other)) < 16, "zero difference must be drawn black"
    other.get_by_role("tab", name="Difference").scroll_into_view_if_needed()
    other.screenshot(path=str(SHOTS / "explore-link-opens-its-tab.png"))
    other = _fresh_session(page)
    _open_explore(other, server, "?attack=fgsm&image=chelsea&view=Spectrum")
    other.get_by_text("view “Spectrum” is unknown").wait_for()


# Every metric value or label (and what it holds) that is wider than itself or than its card.
METRIC_OVERFLOW_JS = """() => [...document.querySelectorAll('[data-testid="stMetric"]')].flatMap(m => {
  const card = m.getBoundingClientRect();
  const parts = m.querySelectorAll('[data-testid="stMetricValue"], [data-testid="stMetricValue"] *,'
    + ' [data-testid="stMetricLabel"], [data-testid="stMetricLabel"] *');
  return [...parts].filter(e => e.scrollWidth > e.clientWidth + 1 || e.getBoundingClientRect().right > card.right + 1)
    .map(e => e.innerText.slice(0, 40));
})"""


def test_metric_cards_fit_their_boxes_at_1024_by_768(server: str) -> None:
    with chromium_page(1024, 768) as small:
        _open_explore(small, server, "?attack=fgsm&image=chelsea&run=1&p_eps=1")  # L0 100%: the widest
        verdict_with(small, "· FGSM")
        idle(small)
        assert small.locator('[data-testid="stMetric"]').count() >= 8
        assert small.evaluate(METRIC_OVERFLOW_JS) == []
        small.locator('[data-testid="stMetric"]').first.scroll_into_view_if_needed()
        small.screenshot(path=str(SHOTS / "explore-cards-1024.png"))


# The replay chart's title (step, top-1, loss, distances) and its two image sources.
REPLAY_STATE_JS = """() => {
  const plots = [...document.querySelectorAll('.js-plotly-plot')].filter(p => p.querySelector('.slider-container'));
  if (!plots.length) return null;
  const p = plots[0];
  return {title: (p.querySelector('.gtitle') || {}).textContent || '',
          images: [...p.querySelectorAll('image')].map(i => (i.getAttribute('href') || '').slice(-60))};
}"""


def test_replay_scrubs_the_recorded_steps_in_the_browser(server: str, page: Any) -> None:
    """PGD's replay: dragging the step slider changes the iterate, its perturbation and the title's
    step, top-1 class and distance, without a rerun (no progress bar, the script stays idle)."""
    _open_explore(page, server, "?attack=pgd&image=chelsea&p_steps=12&p_eps=0.0157&run=1&view=replay")
    verdict_with(page, "· PGD")
    idle(page)
    assert _selected_view(page) == "Replay"
    page.locator(".slider-container").first.wait_for(timeout=120_000)
    first = page.evaluate(REPLAY_STATE_JS)
    assert first["title"].startswith("step 0 of 12 · tiger cat"), first
    page.locator(".slider-container").first.scroll_into_view_if_needed()
    rail = page.locator(".slider-rail-touch-rect").first.bounding_box()
    seen = [first]
    for fraction in (0.25, 0.6, 1.0):
        x = rail["x"] + min(fraction * rail["width"], rail["width"] - 2)
        page.mouse.click(x, rail["y"] + rail["height"] / 2)
        page.wait_for_function(
            f"() => {{ const s = ({REPLAY_STATE_JS})(); return s && s.title !== {seen[-1]['title']!r}; }}",
            timeout=10_000,
        )
        seen.append(page.evaluate(REPLAY_STATE_JS))
    assert page.locator('[data-testid="stProgress"]').count() == 0  # scrubbing reran nothing
    titles = [s["title"] for s in seen]
    assert len(set(titles)) == 4, titles
    assert len({tuple(s["images"]) for s in seen}) == 4, "each step shows another iterate"
    assert titles[-1].startswith("step 12 of 12") and "tiger cat" not in titles[-1], titles
    page.locator(".slider-container").first.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "explore-replay.png"))
    print("replay titles:", titles)
