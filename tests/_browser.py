"""Helpers for the Chromium tests: a `streamlit run app.py` server on a free port and a Playwright page.

Waits are on conditions the user sees (an element, a text, the app's "not running" state), never
fixed sleeps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def streamlit_server(log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Start the app; yield its URL; always stop it."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
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
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


@contextlib.contextmanager
def chromium_page(width: int = 1440, height: int = 900) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                viewport={"width": width, "height": height}, device_scale_factor=1, accept_downloads=True
            )
            page = context.new_page()
            page.set_default_timeout(180_000)
            yield page
        finally:
            browser.close()


def idle(page: Any, timeout_s: float = 300) -> None:
    """Wait until the script is not running (Streamlit's own ``data-test-script-state``)."""
    page.wait_for_function(
        "() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
        " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }",
        timeout=timeout_s * 1000,
    )


def click_until(page: Any, target: Any, done_js: str, tries: int = 3, wait_s: float = 30) -> None:
    """Click ``target`` until the JavaScript predicate ``done_js`` holds. Under load a click can
    land while a rerun is redrawing the widget (``idle`` saw the script stopped just before the
    previous click's rerun began) and be lost; the click is repeated, at most ``tries`` times."""
    for attempt in range(tries):
        idle(page)
        target.click()
        try:
            page.wait_for_function(done_js, timeout=wait_s * 1000)
            return
        except Exception:
            if attempt == tries - 1:
                raise


def pick(page: Any, label: str, option_text: Any) -> None:
    """Choose the first option matching ``option_text`` (text or regex) in the select box ``label``."""
    idle(page)
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.scroll_into_view_if_needed()
    box.click()
    page.get_by_role("listbox").first.wait_for()
    page.get_by_role("option").filter(has_text=option_text).first.click()
    idle(page)


def verdict_with(page: Any, text: str, timeout_s: float = 300) -> str:
    """Wait for the verdict banner to contain ``text``; return the banner's text."""
    page.wait_for_function(
        "t => { const v = document.querySelector('.pv-verdict'); return v && v.innerText.includes(t); }",
        arg=text,
        timeout=timeout_s * 1000,
    )
    return str(page.locator(".pv-verdict").inner_text())


SIDEBAR_VALUES_JS = """() => {
  const form = document.querySelector('[data-testid="stSidebar"] [data-testid="stForm"]');
  const out = {};
  if (!form) return out;
  const text = el => (el ? el.innerText : '').trim();
  for (const box of form.querySelectorAll('[data-testid="stNumberInput"]'))
    out[text(box.querySelector('label'))] = box.querySelector('input').value;
  for (const box of form.querySelectorAll('[data-testid="stSelectbox"]')) {
    const input = box.querySelector('input');
    const lines = box.innerText.split('\\n');
    out[text(box.querySelector('label'))] = (input && input.value) || lines[lines.length - 1].trim();
  }
  for (const box of form.querySelectorAll('[data-testid="stSlider"]')) {
    const lines = box.innerText.split('\\n').filter(t => t.trim());
    out[lines[0].trim()] = lines[1].trim();
  }
  for (const box of form.querySelectorAll('[data-testid="stCheckbox"]'))
    out[box.innerText.trim()] = box.querySelector('input').checked ? 'True' : 'False';
  return out;
}"""


def sidebar_values(page: Any, expect: Sequence[str] = (), timeout_s: float = 60) -> dict[str, str]:
    """Every labelled input of the sidebar form as the user reads it (label → shown value), read in
    one pass once the script is idle, so a rerun cannot change the form halfway through; with
    ``expect``, read again until those labels are drawn (the browser may still be rendering the form
    of the result just shown)."""
    deadline = time.monotonic() + timeout_s
    while True:
        idle(page)
        values = dict(page.evaluate(SIDEBAR_VALUES_JS))
        if all(label in values for label in expect) or time.monotonic() > deadline:
            return values
        page.wait_for_timeout(250)
