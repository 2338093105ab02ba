"""Load and fault tests of hosted mode against a real ``streamlit run`` on 127.0.0.1 (issue 10).

Starts ``scripts/hosted.sh`` (the locked-down profile, bound to 127.0.0.1 on a free port), drives
it with headless Chromium through Playwright and prints one JSON line of measurements; the server
is always stopped. Only loopback is ever contacted; session count and run time are bounded.

``load``: first a few sessions open Explore at once on the fresh server (the cold start, where the
attack registry is first imported); after a warm-up run (loads the model), one *blocker* session
per compute slot (``--slots``, the server's ``PERCVIZ_COMPUTE_SLOTS``) starts a long PGD and holds
its slot; then N sessions (≤ 16, one Chromium) open Explore, each on its own photo or attack
setting, and press *Run attack* one after the other (each waits until the server took its job, so
the submission order is known); once every one of them shows its place in the queue, the blockers
press *Cancel* and the queue drains. Reports what each page showed (verdict, captions, L∞, SSIM,
PSNR, the queue places it displayed, completion time), whether that equals the same run computed
alone in this process (labels, probabilities, SSIM, PSNR and L∞ as the page rounds them), and the
server's RSS: idle after the warm-up, peak under load, and idle again after the sessions closed and
their ``disconnectedSessionTTL`` expired.

``sigterm``: a session starts a long PGD (``--page regression``: a long Fig. 4 curve on the
Regression page); once it runs, the server gets SIGTERM. Reports the exit code and how long the
exit took.

``fault``: with the test hook ``PERCVIZ_TEST_OOM_TICKETS=0`` the first job raises an out-of-memory
error; then a client disconnects in the middle of a long run; then another session runs a job.
Reports health, what each page showed and how long the next job waited.

    python scripts/loadtest.py load            # one JSON line on stdout
    python scripts/loadtest.py load --sessions 16 --slots 2
    python scripts/loadtest.py sigterm
    python scripts/loadtest.py sigterm --page regression
    python scripts/loadtest.py fault --ttl 30
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's percviz, not whichever one is installed
from percviz.attacks import get_attack  # noqa: E402

HOST = "127.0.0.1"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
MAX_SESSIONS = 16
MAX_SLOTS = 4
COLD_SESSIONS = 4
FGSM_EPS = 4 / 255
PLAN: list[tuple[str, str, dict[str, Any]]] = [
    ("chelsea", "fgsm", {"eps": FGSM_EPS}),
    ("coffee", "fgsm", {"eps": FGSM_EPS}),
    ("rocket", "fgsm", {"eps": FGSM_EPS}),
    ("astronaut", "fgsm", {"eps": FGSM_EPS}),
    ("motorcycle", "fgsm", {"eps": FGSM_EPS}),
    ("china", "fgsm", {"eps": FGSM_EPS}),
    ("flower", "fgsm", {"eps": 8 / 255}),
    ("chelsea", "pgd", {"eps": FGSM_EPS, "steps": 2, "step_size": 2 / 255}),  # same photo, other attack
    ("coffee", "fgsm", {"eps": 2 / 255}),
    ("rocket", "fgsm", {"eps": 1 / 255}),
    ("astronaut", "pgd", {"eps": FGSM_EPS, "steps": 2, "step_size": 2 / 255}),
    ("motorcycle", "fgsm", {"eps": 2 / 255}),
    ("china", "pgd", {"eps": 2 / 255, "steps": 2, "step_size": 1 / 255}),
    ("flower", "fgsm", {"eps": 2 / 255}),
    ("chelsea", "fgsm", {"eps": 1 / 255}),
    ("coffee", "pgd", {"eps": FGSM_EPS, "steps": 2, "step_size": 2 / 255}),
]
BLOCKER = ("rocket", "pgd", {"steps": 200})  # holds the slot until all sessions queued, then cancelled
#: The load scenario's blockers run longer (the server allows it: ``LOAD_ENV``), so they still hold
#: their slots after 16 sessions were opened and queued on a busy 2-core machine.
LOAD_BLOCKER = ("rocket", "pgd", {"steps": 1000})
LOAD_ENV = {"PERCVIZ_MAX_STEPS": "1000"}
WAITING = re.compile(r"waiting for the compute slot \((\d+) ahead\)")
SNAPSHOT_JS = """() => {
  const texts = s => Array.from(document.querySelectorAll(s)).map(e => e.innerText.trim());
  return {
    verdict: texts('.pv-verdict'),
    progress: texts('[data-testid="stProgress"]'),
    errors: texts('[data-testid="stAlertContentError"]'),
    warnings: texts('[data-testid="stAlertContentWarning"]'),
    exceptions: document.querySelectorAll('[data-testid="stException"]').length,
    captions: texts('[data-testid="stImageCaption"]'),
    metrics: texts('[data-testid="stMetric"]'),
    traceback: document.body.innerText.includes('Traceback'),
    running: document.querySelector('[data-testid="stStatusWidget"]') !== null,
  };
}"""


# ---------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def health(url: str) -> str:
    """The body of ``/_stcore/health`` ('ok' when serving), or the error's name."""
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as r:
            return r.read().decode().strip()
    except OSError as exc:
        return type(exc).__name__


def memory_mb(pid: int) -> dict[str, float]:
    """``VmRSS`` and its parts (``RssAnon``, ``RssFile``, ``RssShmem``) from ``/proc/<pid>/status``, MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            values[key] = round(int(rest.split()[0]) / 1024, 1)
    return values


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (exists and is not a zombie)."""
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" not in status.read_text()


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` (``VmRSS`` in ``/proc/<pid>/status``) in MiB."""
    return memory_mb(pid)["VmRSS"]


@contextlib.contextmanager
def hosted_server(
    ttl: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``scripts/hosted.sh`` on 127.0.0.1:<free port>; yields (url, process) and always stops it."""
    port = free_port()
    cmd = [
        "bash",
        str(ROOT / "scripts" / "hosted.sh"),
        f"--server.port={port}",
        f"--server.address={HOST}",
        f"--server.disconnectedSessionTTL={ttl}",
    ]
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PERCVIZ_")}  # the stock limits
    with log.open("w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, "PATH": path, **(env or {})},
        )
        url = f"http://{HOST}:{port}"
        try:
            deadline = time.monotonic() + 90
            while health(url) != "ok":
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"streamlit did not start: {log.read_text()[-2000:]}")
                time.sleep(0.3)
            if b"streamlit" not in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                raise RuntimeError("scripts/hosted.sh no longer execs streamlit: its pid is not the server")
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=15)


# ---------------------------------------------------------------------------------- one session


@dataclass
class Session:
    """One browser session's plan and what its page showed."""

    index: int
    image: str
    attack: str
    params: dict[str, Any]
    expected_label: str = ""
    click_s: float | None = None
    started_s: float | None = None
    done_s: float | None = None
    positions: list[int] = field(default_factory=list)
    verdict: str = ""
    captions: list[str] = field(default_factory=list)
    linf: str = ""
    ssim: str = ""
    psnr: str = ""
    solo: dict[str, str] = field(default_factory=dict)
    same_as_solo: bool = False
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    exceptions: int = 0
    traceback: bool = False
    url: str = ""
    ok: bool = False

    def query(self) -> str:
        params = "&".join(
            f"p_{k}={v:.8g}" if isinstance(v, float) else f"p_{k}={v}" for k, v in self.params.items()
        )
        return f"model=efficientnet_lite0&image={self.image}&attack={self.attack}&seed=0&{params}"


async def open_explore(browser: Any, url: str, session: Session) -> Any:
    """A new context on Explore with this session's photo and attack (from the URL); waits until ready."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(120_000)
    await page.goto(f"{url}/Explore?{session.query()}")
    await page.get_by_role("button", name="Run attack").wait_for()
    await page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    return page


async def snapshot(page: Any) -> dict[str, Any]:
    return await page.evaluate(SNAPSHOT_JS)


async def press_run(page: Any, session: Session, t0: float) -> None:
    """Press *Run attack* and wait until the server took the job (its progress bar or result shows)."""
    await page.get_by_role("button", name="Run attack").click()
    session.click_s = round(time.monotonic() - t0, 3)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        snap = await snapshot(page)
        if snap["progress"] or snap["verdict"] or snap["errors"]:
            return
        await asyncio.sleep(0.05)
    raise RuntimeError(f"session {session.index}: the run was not accepted within 60 s")


async def follow(page: Any, session: Session, t0: float, timeout: float) -> None:
    """Poll the page until a verdict or an error shows; records queue places, start and end times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = await snapshot(page)
        for text in snap["progress"]:
            match = WAITING.search(text)
            if match is None and session.started_s is None:
                session.started_s = round(time.monotonic() - t0, 3)
            elif match and (not session.positions or session.positions[-1] != int(match.group(1))):
                session.positions.append(int(match.group(1)))
        if (snap["verdict"] or snap["errors"] or snap["exceptions"]) and not snap["progress"]:
            session.done_s = round(time.monotonic() - t0, 3)
            record(session, await rendered(page, deadline), page.url)
            return
        await asyncio.sleep(0.1)
    session.errors.append(f"no result within {timeout:.0f} s")


async def rendered(page: Any, deadline: float) -> dict[str, Any]:
    """The page once its script run ended (no 'Running' status widget for 1 s) or at ``deadline``."""
    quiet_since = None
    while time.monotonic() < deadline:
        snap = await snapshot(page)
        if snap["running"]:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.0:
            return snap
        await asyncio.sleep(0.1)
    return await snapshot(page)


def record(session: Session, snap: dict[str, Any], url: str) -> None:
    """Keep what the page shows and decide whether it is this session's own result."""
    session.verdict = snap["verdict"][0] if snap["verdict"] else ""
    session.captions = snap["captions"]
    session.linf = card(snap, "L∞")
    session.ssim = card(snap, "SSIM")
    session.psnr = card(snap, "PSNR")
    session.errors += snap["errors"]
    session.warnings = snap["warnings"]
    session.exceptions = snap["exceptions"]
    session.traceback = snap["traceback"]
    session.url = url
    session.ok = is_own_result(session)


def card(snap: dict[str, Any], name: str) -> str:
    """The value of the metric card called ``name`` ('' when absent)."""
    return next((m.split("\n")[-1] for m in snap["metrics"] if m.split("\n")[0].strip() == name), "")


def solo_results(sessions: list[Session]) -> None:
    """Each session's run computed alone in this process, as the page shows it: the verdict's start
    (labels and probabilities), SSIM, PSNR and L∞ (``Session.solo``)."""
    from percviz.analysis.metrics import compare_images
    from percviz.attacks import run_attack
    from percviz.images import fit_to_model, load_sample, to_tensor
    from percviz.models import load_model, predict

    model = load_model("efficientnet_lite0", "cpu")
    for s in sessions:
        x = to_tensor(fit_to_model(load_sample(s.image).pixels, model.input_size))
        res = run_attack(s.attack, model, x, s.params, seed=0)
        b0, a0 = predict(model, res.x, top=1)[0][0], predict(model, res.x_adv, top=1)[0][0]
        m = compare_images(res.x, res.x_adv)[0]
        head = (
            f"Fooled. {b0.label} ({b0.probability:.0%}) → {a0.label} ({a0.probability:.0%})"
            if bool(res.success[0])
            else f"Not fooled. The model still says {a0.label} ({a0.probability:.0%})"
        )
        s.solo = {
            "verdict": head,
            "ssim": f"{m['ssim']:.4f}",
            "psnr": f"{m['psnr']:.1f} dB",
            "linf": f"{m['linf'] * 255:.2f}/255",
        }


def same_as_solo(s: Session) -> bool:
    solo = s.solo
    return (
        bool(solo)
        and s.verdict.startswith(f"{solo['verdict']} ·")
        and (s.ssim, s.psnr, s.linf)
        == (
            solo["ssim"],
            solo["psnr"],
            solo["linf"],
        )
    )


def is_own_result(s: Session) -> bool:
    """The verdict, captions, URL and (for FGSM) L∞ all belong to this session's image and attack."""
    label = s.expected_label
    verdict_ok = s.verdict.startswith((f"Fooled. {label} (", f"Not fooled. The model still says {label} ("))
    attack_ok = f"· {get_attack(s.attack).title}," in s.verdict
    caption_ok = f"original — {label}" in s.captions
    url_ok = f"image={s.image}" in s.url and f"attack={s.attack}" in s.url
    linf_ok = linf_matches(s)
    clean = not s.errors and not s.exceptions and not s.traceback
    return verdict_ok and attack_ok and caption_ok and url_ok and linf_ok and clean


def linf_matches(s: Session) -> bool:
    """FGSM's L∞ is exactly its eps; other attacks stay within theirs (the page shows k/255)."""
    match = re.fullmatch(r"([0-9.]+)/255", s.linf)
    eps = s.params.get("eps")
    if match is None or eps is None:
        return eps is None
    shown, bound = float(match.group(1)), round(eps * 255, 2)
    return shown == bound if s.attack == "fgsm" else shown <= bound


def expected_labels(images: set[str]) -> dict[str, str]:
    """Top-1 label of each photo as the app computes it (offline model, centre crop 1.0), in-process."""
    from percviz.images import fit_to_model, load_sample, to_tensor
    from percviz.models import load_model, predict

    model = load_model("efficientnet_lite0", "cpu")
    labels = {}
    for name in sorted(images):
        x = to_tensor(fit_to_model(load_sample(name).pixels, model.input_size))
        labels[name] = predict(model, x, top=1)[0][0].label
    return labels


async def run_alone(browser: Any, url: str, session: Session, timeout: float) -> None:
    """Open, run and follow one session to its end, then close it."""
    page = await open_explore(browser, url, session)
    t0 = time.monotonic()
    await press_run(page, session, t0)
    await follow(page, session, t0, timeout)
    await page.context.close()


async def settle(url: str, pid: int, browser: Any, ttl: int) -> dict[str, float]:
    """RSS once no session is left: wait out the TTL, let a probe session connect and leave
    (Streamlit drops expired sessions when another one disconnects), give hosted mode's memory
    release one period, and read VmRSS."""
    from percviz.serving.memory import RELEASE_INTERVAL_S

    await asyncio.sleep(ttl + 2)
    probe = await browser.new_context()
    page = await probe.new_page()
    await page.goto(url)
    await page.get_by_role("heading", name="percviz").first.wait_for(timeout=60_000)
    await probe.close()
    await asyncio.sleep(RELEASE_INTERVAL_S + 3)
    return memory_mb(pid)


async def sample_peak(pid: int, stop: asyncio.Event, peak: list[float]) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], rss_mb(pid))
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------- scenarios


async def cold_start(browser: Any, url: str, n: int) -> list[dict[str, Any]]:
    """``n`` sessions open Explore at once on a server no page has run on yet; what each showed."""

    async def one(i: int) -> dict[str, Any]:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        page = await context.new_page()
        page.set_default_timeout(120_000)
        await page.goto(f"{url}/Explore?model=efficientnet_lite0&image={PLAN[i][0]}&attack={PLAN[i][1]}")
        await page.wait_for_selector(
            'button:has-text("Run attack"), [data-testid="stException"], [data-testid="stAlertContentError"]'
        )
        snap = await rendered(page, time.monotonic() + 60)
        await context.close()
        return {"errors": snap["errors"], "exceptions": snap["exceptions"], "traceback": snap["traceback"]}

    return list(await asyncio.gather(*(one(i) for i in range(n))))


async def open_all(browser: Any, url: str, sessions: list[Session], at_once: int = 4) -> list[Any]:
    """Explore pages for ``sessions``, opened ``at_once`` at a time (a small CI machine renders a
    handful of fresh pages at once; all of them load slower than the page timeout)."""
    gate = asyncio.Semaphore(at_once)

    async def one(s: Session) -> Any:
        async with gate:
            return await open_explore(browser, url, s)

    return list(await asyncio.gather(*(one(s) for s in sessions)))


async def load_scenario(url: str, pid: int, n: int, ttl: int, slots: int = 1) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    sessions = [Session(i, img, atk, dict(p)) for i, (img, atk, p) in enumerate(PLAN[:n])]
    blockers = [Session(-2 - k, *LOAD_BLOCKER) for k in range(slots)]
    warm = Session(-1, "coffee", "fgsm", {"eps": FGSM_EPS})
    labels = expected_labels({s.image for s in (*sessions, *blockers, warm)})
    for s in (*sessions, *blockers, warm):
        s.expected_label = labels[s.image]
    solo_results(sessions)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            cold = await cold_start(browser, url, COLD_SESSIONS)
            phase("cold start")
            await run_alone(browser, url, warm, 180)
            idle = await settle(url, pid, browser, ttl)
            phase("warm-up and idle RSS")
            pages = await open_all(browser, url, [*blockers, *sessions])
            phase(f"{len(pages)} pages open")
            blocker_pages, session_pages = pages[:slots], pages[slots:]
            stop, peak = asyncio.Event(), [rss_mb(pid)]
            sampler = asyncio.create_task(sample_peak(pid, stop, peak))
            t0 = time.monotonic()
            followers = []
            for page, b in zip(blocker_pages, blockers, strict=True):
                await press_run(page, b, t0)
                await wait_iterations(page, 1, 120)
                followers.append(asyncio.create_task(follow(page, b, t0, 300)))
            for page, s in zip(session_pages, sessions, strict=True):
                await press_run(page, s, t0)
                followers.append(asyncio.create_task(follow(page, s, t0, 300)))
            await wait_until(lambda: all(s.positions for s in sessions), 60 + 10 * n)
            phase("every session queued")
            for page in blocker_pages:
                await page.get_by_role("button", name="Cancel").click()
            blocker_cancel_s = round(time.monotonic() - t0, 3)
            await asyncio.gather(*followers)
            phase("queue drained")
            stop.set()
            await sampler
            for page in pages:
                await page.context.close()
            after = await settle(url, pid, browser, ttl)
        finally:
            await browser.close()
    done = sorted((s for s in sessions if s.done_s is not None), key=lambda s: s.done_s or 0.0)
    for s in sessions:
        s.same_as_solo = same_as_solo(s)
    return {
        "slots": slots,
        "cold_start": cold,
        "warmup": asdict(warm),
        "blocker": {**asdict(blockers[0]), "cancel_s": blocker_cancel_s},
        "blockers": [asdict(b) for b in blockers],
        "sessions": [asdict(s) for s in sessions],
        "click_order": [s.index for s in sorted(sessions, key=lambda s: s.click_s or 0.0)],
        "completion_order": [s.index for s in done],
        "throughput": throughput(done, blocker_cancel_s),
        "all_ok": all(s.ok for s in sessions) and warm.ok,
        "health_end": health(url),
        "server_alive": alive(pid),
        "rss_mb": {"idle": idle["VmRSS"], "peak": round(peak[0], 1), "after": after["VmRSS"]},
        "rss_after_over_idle": round(after["VmRSS"] / idle["VmRSS"], 3),
        "memory_mb": {"idle": idle, "after": after},
    }


def throughput(done: list[Session], start_s: float) -> dict[str, Any]:
    """Runs completed per minute once the blockers freed the compute slots: the sessions that
    finished, over the time from the blockers' Cancel to the last of them on screen."""
    if not done:
        return {"runs": 0, "seconds": None, "runs_per_min": 0.0}
    seconds = max(s.done_s or 0.0 for s in done) - start_s
    return {
        "runs": len(done),
        "seconds": round(seconds, 2),
        "runs_per_min": round(60 * len(done) / seconds, 2),
    }


_START = time.monotonic()


def phase(name: str) -> None:
    """One progress line on stderr (stdout carries only the JSON report)."""
    print(f"loadtest: {name} at {time.monotonic() - _START:.0f} s", file=sys.stderr, flush=True)


async def wait_until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"condition not met within {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def fault_scenario(url: str, pid: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    labels = expected_labels({"chelsea", "rocket", "coffee"})
    oom = Session(0, "chelsea", "pgd", {"steps": 5}, expected_label=labels["chelsea"])
    gone = Session(1, "rocket", "pgd", {"steps": 200}, expected_label=labels["rocket"])
    nxt = Session(2, "coffee", "fgsm", {"eps": FGSM_EPS}, expected_label=labels["coffee"])
    out: dict[str, Any] = {"health_start": health(url)}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await run_alone(browser, url, oom, 120)
            out["health_after_oom"] = health(url)
            page_gone, page_next = await asyncio.gather(
                open_explore(browser, url, gone), open_explore(browser, url, nxt)
            )
            t0 = time.monotonic()
            await press_run(page_gone, gone, t0)
            first, t_first = await wait_iterations(page_gone, 2, 120), time.monotonic()
            iterations = await wait_iterations(page_gone, first + 4, 120)
            step_s = (time.monotonic() - t_first) / (iterations - first)
            await page_gone.context.close()  # the client goes away mid-run
            t_gone = time.monotonic()
            out["health_after_disconnect"] = health(url)
            await press_run(page_next, nxt, t_gone)
            await follow(page_next, nxt, t_gone, 240)
            out["next_done_after_disconnect_s"] = nxt.done_s
            out["disconnected_at_iteration"] = iterations
            out["disconnected_step_s"] = round(step_s, 3)
            out["disconnected_remaining_s_estimate"] = round((200 - iterations) * step_s, 2)
            await page_next.context.close()
        finally:
            await browser.close()
    out.update(
        health_end=health(url),
        server_alive=alive(pid),
        oom=asdict(oom),
        next=asdict(nxt),
    )
    return out


#: The sigterm scenario's Fig. 4 curve: 4 ε values × 3 photos × 3 attacks (hosted mode's cap of 36).
CURVE_EPS = "0.5, 1, 2, 4"


async def start_long_curve(browser: Any, url: str) -> Any:
    """A new context on the Regression page that starts a Fig. 4 curve (3 photos × 4 ε)."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(120_000)
    await page.goto(f"{url}/Regression")
    field = page.get_by_label("ε values (comma-separated; empty = default grid)")
    await field.fill(CURVE_EPS)
    await page.get_by_role("button", name="Compute the curve").click()
    return page


async def sigterm_scenario(
    url: str, proc: subprocess.Popen[bytes], grace: float, page_name: str = "explore"
) -> dict[str, Any]:
    """A session starts a long PGD (or a long Fig. 4 curve on the Regression page); once it runs,
    the server gets SIGTERM (as ``docker stop`` or systemd send it). Reports the exit code, how
    long the exit took and what the page showed."""
    from playwright.async_api import async_playwright

    long_run = Session(0, *BLOCKER, expected_label="")
    out: dict[str, Any] = {"health_start": health(url), "page": page_name}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            if page_name == "regression":
                page = await start_long_curve(browser, url)
                out["iteration_at_sigterm"] = await wait_iterations(page, 2, 180, r"(\d+) of \d+")
            else:
                page = await open_explore(browser, url, long_run)
                await press_run(page, long_run, time.monotonic())
                out["iteration_at_sigterm"] = await wait_iterations(page, 2, 120)
            t_term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                code = None
            out["exit_s"] = round(time.monotonic() - t_term, 2)
            out["exit_code"] = code
            await page.context.close()
        finally:
            await browser.close()
    return out


async def wait_iterations(
    page: Any, at_least: int, timeout: float, pattern: str = r"iteration (\d+) of"
) -> int:
    """Wait until the page's progress bar reports step k (``pattern``'s group) with k ≥ ``at_least``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for text in (await snapshot(page))["progress"]:
            match = re.search(pattern, text)
            if match and int(match.group(1)) >= at_least:
                return int(match.group(1))
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the long run did not reach iteration {at_least} within {timeout:.0f} s")


# ---------------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", choices=("load", "fault", "sigterm"))
    parser.add_argument("--sessions", type=int, default=8, help=f"1–{MAX_SESSIONS} (load; default 8)")
    parser.add_argument(
        "--slots", type=int, default=1, help=f"compute slots of the server, 1–{MAX_SLOTS} (load; default 1)"
    )
    parser.add_argument("--ttl", type=int, default=30, help="server.disconnectedSessionTTL, seconds")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this many seconds")
    parser.add_argument("--log", type=Path, default=None, help="server log (default: a temporary file)")
    parser.add_argument(
        "--page", choices=("explore", "regression"), default="explore", help="sigterm: the long job's page"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= MAX_SESSIONS or not 1 <= args.ttl <= 120 or not 1 <= args.slots <= MAX_SLOTS:
        parser.error(f"--sessions must be 1–{MAX_SESSIONS}, --slots 1–{MAX_SLOTS} and --ttl 1–120")
    log = args.log or Path(tempfile.mkdtemp(prefix="percviz-loadtest-")) / "streamlit.log"
    from percviz.serving.jobs import INJECT_OOM_ENV

    env = {INJECT_OOM_ENV: "0"} if args.scenario == "fault" else {}
    if args.scenario == "load":
        env = {**LOAD_ENV, "PERCVIZ_COMPUTE_SLOTS": str(args.slots)}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the server is stopped on SIGTERM too
    start = time.monotonic()
    with hosted_server(args.ttl, log, env) as (url, proc):
        if args.scenario == "load":
            work = load_scenario(url, proc.pid, args.sessions, args.ttl, args.slots)
        elif args.scenario == "fault":
            work = fault_scenario(url, proc.pid)
        else:
            from percviz.serving.jobs import SHUTDOWN_GRACE_S

            work = sigterm_scenario(url, proc, SHUTDOWN_GRACE_S + 20, args.page)
        report = asyncio.run(asyncio.wait_for(work, args.timeout))
    if args.scenario == "sigterm":
        report["log_tail"] = log.read_text(errors="replace")[-2000:]
    report.update(
        scenario=args.scenario, ttl_s=args.ttl, wall_s=round(time.monotonic() - start, 1), log=str(log)
    )
    print(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
