"""End to end in a real browser: `streamlit run app.py` + Debian's Chromium through Playwright.

Picks a bundled photo and an attack on Explore, runs it, checks the adversarial prediction shows,
and saves a screenshot of every page to ``test-output/``. The server is always stopped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api")
pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's Chromium is not installed"),
    pytest.mark.slow,  # a Streamlit server and Chromium: CI runs it, the fast lane does not
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = _free_port()
    OUT.mkdir(exist_ok=True)
    log = (OUT / "streamlit.log").open("w")
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        "app.py",
        f"--server.port={port}",
        "--server.address=127.0.0.1",
        "--server.headless=true",
        "--browser.gatherUsageStats=false",
        "--server.fileWatcherType=none",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not start: {(OUT / 'streamlit.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def page(server: str):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
            pg = context.new_page()
            pg.set_default_timeout(120_000)
            yield pg
        finally:
            browser.close()


def _settle(pg, timeout: float = 180) -> None:
    """Wait until the app stopped running (no 'Running' status widget) and nothing is stale."""
    pg.wait_for_timeout(500)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.locator('[data-testid="stStatusWidget"]').count() == 0:
            break
        pg.wait_for_timeout(300)
    pg.wait_for_timeout(800)


def _pick(pg, label: str, option: str) -> None:
    box = pg.get_by_role("combobox", name=label).first
    box.scroll_into_view_if_needed()
    box.click()
    pg.get_by_role("option", name=option, exact=True).first.click()
    _settle(pg)


def test_every_page_and_an_attack_in_chromium(server: str, page) -> None:
    page.goto(server)
    page.get_by_role("heading", name="percviz").wait_for()
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    _settle(page)
    page.screenshot(path=str(OUT / "home.png"), full_page=True)

    page.goto(f"{server}/Explore")
    page.get_by_role("heading", name="Explore").wait_for()
    _settle(page)
    _pick(page, "Photo", "A cup of coffee (scikit-image)")
    _pick(page, "Attack", "PGD / BIM (L∞) · norm-bounded")
    steps = page.locator('[data-testid="stNumberInput"]').filter(has_text="steps").first.locator("input")
    steps.fill("3")
    steps.press("Tab")
    run = page.get_by_role("button", name="Run attack")
    for _ in range(50):
        if run.count() == 1:
            break
        page.wait_for_timeout(200)
    run.first.click()
    verdict = page.locator(".pv-verdict")
    verdict.wait_for(timeout=300_000)
    _settle(page, 300)
    text = verdict.inner_text()
    assert "Fooled." in text or "Not fooled." in text
    assert "adversarial: top-5" in page.content()
    assert "image=coffee" in page.url and "attack=pgd" in page.url and "p_steps=3" in page.url
    page.screenshot(path=str(OUT / "explore.png"), full_page=True)
    page.get_by_role("tab", name="GradCAM++").click()
    _settle(page)
    page.get_by_role("tab", name="GradCAM++").scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    page.screenshot(path=str(OUT / "explore-gradcam.png"))

    for name in ("Compare", "Sweep", "Evaluate", "Learn"):
        page.goto(f"{server}/{name}")
        page.get_by_role("heading", name=name).first.wait_for()
        _settle(page)
        page.wait_for_timeout(1500)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(OUT / f"{name.lower()}.png"), full_page=True)
