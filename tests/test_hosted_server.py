"""Hosted mode on a real server: load and fault tests through ``scripts/loadtest.py``.

Each test runs the script (``scripts/hosted.sh`` on 127.0.0.1, headless Chromium) in its own
process group, killed on timeout so no server outlives the test, and checks the JSON line it
prints. The measurements are kept in ``test-output/loadtest-<scenario>.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from percviz.serving.jobs import INJECT_OOM_ENV, ComputeQueue, describe_failure

pytestmark = pytest.mark.slow  # hosted servers under load and signals: CI runs it, the fast lane does not

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "test-output"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OOM_SENTENCE = describe_failure(torch.cuda.OutOfMemoryError("CUDA out of memory"))
browser = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("bash") is None,
    reason="needs Debian's Chromium and bash",
)


def _run_script(scenario: str, *args: str, timeout: float, tag: str = "") -> dict[str, Any]:
    """Run ``scripts/loadtest.py``; on timeout kill its whole process group (server included)."""
    pytest.importorskip("playwright.async_api")
    OUT.mkdir(exist_ok=True)
    name = f"loadtest-{scenario}{tag}"
    cmd = [
        sys.executable,
        "scripts/loadtest.py",
        scenario,
        *args,
        "--log",
        str(OUT / f"{name}.log"),
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        pytest.fail(f"scripts/loadtest.py {scenario} did not finish within {timeout:.0f} s")
    assert proc.returncode == 0, stderr[-4000:]
    line = stdout.strip().splitlines()[-1]
    (OUT / f"{name}.json").write_text(line + "\n")
    return json.loads(line)


@browser
def test_eight_sessions_queue_in_order_stay_isolated_and_memory_returns() -> None:
    report = _run_script("load", "--ttl", "5", timeout=540)
    sessions = report["sessions"]
    assert len(sessions) == 8
    settings = {(s["image"], s["attack"], json.dumps(s["params"], sort_keys=True)) for s in sessions}
    assert len(settings) == 8, "every session picks its own photo or attack setting"
    for s in sessions:  # its own photo's label, its own attack and eps, its own URL; no error
        assert s["ok"], s
    assert report["warmup"]["ok"], report["warmup"]

    # one compute slot, first come first served: a blocker holds the slot while all eight queue
    assert report["click_order"] == list(range(8))
    assert report["completion_order"] == report["click_order"]
    for s in sessions:
        places = s["positions"]
        assert places and places[0] == s["index"] + 1, s  # the blocker and every earlier click ahead
        assert places == sorted(places, reverse=True) and places[-1] >= 1, s  # only ever moves up
    blocker = report["blocker"]
    assert any(w.startswith("Cancelled after") for w in blocker["warnings"]), blocker
    assert not blocker["errors"] and not blocker["exceptions"]

    assert report["health_end"] == "ok" and report["server_alive"]
    rss = report["rss_mb"]
    assert rss["peak"] > rss["idle"]
    assert abs(rss["after"] - rss["idle"]) <= 0.2 * rss["idle"], rss


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("PERCVIZ_LOAD_TESTS") != "1",
    reason="about 9 minutes on 2 cores, beyond the CI budget: PERCVIZ_LOAD_TESTS=1 runs it",
)
@browser
def test_sixteen_sessions_on_two_slots_match_solo_runs_and_memory_returns() -> None:
    """16 sessions, 2 compute slots, a cold start; every page shows exactly what the same
    run computed alone shows, and RSS returns within 20 % of idle once the sessions left."""
    report = _run_script(
        "load",
        "--sessions",
        "16",
        "--slots",
        "2",
        "--ttl",
        "5",
        "--timeout",
        "1600",
        timeout=1700,
        tag="-16x2",
    )
    assert report["slots"] == 2
    cold = report["cold_start"]  # sessions opening Explore at once on a fresh server (item 1)
    assert len(cold) == 4 and all(
        not c["errors"] and not c["exceptions"] and not c["traceback"] for c in cold
    ), cold
    sessions = report["sessions"]
    assert len(sessions) == 16
    settings = {(s["image"], s["attack"], json.dumps(s["params"], sort_keys=True)) for s in sessions}
    assert len(settings) == 16, "every session picks its own photo or attack setting"
    for s in sessions:
        assert s["ok"], s
        assert s["same_as_solo"], (s["verdict"], s["ssim"], s["psnr"], s["linf"], s["solo"])
    assert report["click_order"] == list(range(16))
    for s in sessions:  # both blockers run, so only the earlier clicks wait ahead
        places = s["positions"]
        assert places and places[0] == s["index"] + 1, s
        assert places == sorted(places, reverse=True) and places[-1] >= 1, s
    for b in report["blockers"]:
        assert any(w.startswith("Cancelled after") for w in b["warnings"]), b
        assert not b["errors"] and not b["exceptions"]
    assert report["health_end"] == "ok" and report["server_alive"]
    rss = report["rss_mb"]
    assert rss["peak"] > rss["idle"]
    assert abs(rss["after"] - rss["idle"]) <= 0.2 * rss["idle"], rss


@browser
def test_oom_and_a_departed_client_leave_the_server_healthy() -> None:
    report = _run_script("fault", timeout=300)
    for key in ("health_start", "health_after_oom", "health_after_disconnect", "health_end"):
        assert report[key] == "ok", (key, report[key])
    assert report["server_alive"]

    oom = report["oom"]  # the failing user reads one sentence: no traceback, no result
    assert oom["errors"] == [OOM_SENTENCE] and "\n" not in OOM_SENTENCE, oom
    assert not oom["exceptions"] and not oom["traceback"] and not oom["verdict"]

    nxt = report["next"]  # the next job, from another session, succeeds
    assert nxt["ok"], nxt
    # the departed client's job was cancelled instead of holding the slot for its remaining steps
    waited = nxt["started_s"] if nxt["started_s"] is not None else nxt["done_s"]
    assert waited < 0.5 * report["disconnected_remaining_s_estimate"], report


def test_oom_hook_fails_only_the_listed_ticket(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault tests' hook: off unless set; when set, only the listed jobs raise, mid-run."""

    def work(progress: Any) -> str:
        progress({"iteration": 1, "total": 1})
        return "done"

    monkeypatch.delenv(INJECT_OOM_ENV, raising=False)
    job = ComputeQueue().submit(work, owner="a")
    assert job.wait(10) and job.status == "done"
    monkeypatch.setenv(INJECT_OOM_ENV, "1")
    queue = ComputeQueue(slots=1, per_owner=5)
    jobs = [queue.submit(work, owner=f"s{i}") for i in range(3)]
    assert all(j.wait(10) for j in jobs)
    assert [j.status for j in jobs] == ["done", "failed", "done"]
    assert jobs[1].error == OOM_SENTENCE


@browser
@pytest.mark.parametrize("page", ["explore", "regression"])
def test_sigterm_during_a_job_exits_zero_within_the_grace_period(page: str) -> None:
    """SIGTERM mid-PGD (and mid Fig. 4 curve on the Regression page) used to abort the server
    (exit −6, "terminate called without an active exception"); now the job is cancelled and the
    process exits 0."""
    report = _run_script("sigterm", "--page", page, timeout=300, tag=f"-{page}")
    assert report["health_start"] == "ok" and report["iteration_at_sigterm"] >= 2, report
    assert report["exit_code"] == 0, report  # None: still running after the grace period (+20 s)
    assert "terminate called" not in report["log_tail"], report["log_tail"]
