"""The compute queue (order, slots, cancel, isolation of failures) and the hosted-mode limits."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from percviz.attacks import run_attack
from percviz.attacks.caps import check_any_params
from percviz.errors import ParameterError
from percviz.limits import HOSTED, LOCAL, check_image_size, current_limits
from percviz.serving.jobs import ComputeQueue, QueueFullError


def _wait_all(jobs, timeout: float = 60.0) -> None:
    for job in jobs:
        assert job.wait(timeout), f"job {job.ticket} did not finish"


def test_fifo_order_and_single_slot() -> None:
    queue = ComputeQueue(slots=1, per_owner=10)
    gate = threading.Event()
    order: list[int] = []
    running = {"now": 0, "max": 0}
    lock = threading.Lock()

    def work(i: int):
        def run(progress):
            with lock:
                running["now"] += 1
                running["max"] = max(running["max"], running["now"])
            if i == 0:
                gate.wait(10)
            order.append(i)
            with lock:
                running["now"] -= 1
            return i

        return run

    jobs = [queue.submit(work(i), owner=f"s{i}") for i in range(5)]
    deadline = time.time() + 10
    while jobs[0].status != "running" and time.time() < deadline:
        time.sleep(0.01)
    assert [j.position() for j in jobs] == [0, 1, 2, 3, 4]
    gate.set()
    _wait_all(jobs)
    assert order == [0, 1, 2, 3, 4] and running["max"] == 1
    assert [j.result for j in jobs] == [0, 1, 2, 3, 4] and all(j.status == "done" for j in jobs)


def test_two_slots_run_concurrently() -> None:
    queue = ComputeQueue(slots=2)
    barrier = threading.Barrier(2, timeout=10)
    jobs = [queue.submit(lambda p: barrier.wait(), owner=f"s{i}") for i in range(2)]
    _wait_all(jobs)
    assert all(j.status == "done" for j in jobs)


def test_cancel_waiting_and_running(tiny, photos32) -> None:
    queue = ComputeQueue(slots=1)
    started = threading.Event()

    def long_attack(progress):
        def cb(record):
            started.set()
            return progress(record)

        return run_attack("pgd", tiny, photos32, {"steps": 1000}, progress=cb)

    running = queue.submit(long_attack, owner="a")
    waiting = queue.submit(lambda p: "never", owner="b")
    assert started.wait(30)
    waiting.cancel()
    assert waiting.wait(10) and waiting.status == "cancelled" and waiting.result is None
    running.cancel()
    assert running.wait(30) and running.status == "cancelled"
    assert running.result.cancelled and running.result.backward_passes < 1000
    after = queue.submit(lambda p: "next", owner="c")
    assert after.wait(10) and after.result == "next"


def test_failures_are_isolated_messages() -> None:
    queue = ComputeQueue(slots=1)

    def oom(progress):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20 GiB")

    def boom(progress):
        raise ValueError("eps must be finite")

    jobs = [
        queue.submit(oom, owner="a"),
        queue.submit(boom, owner="b"),
        queue.submit(lambda p: 42, owner="c"),
    ]
    _wait_all(jobs)
    assert jobs[0].status == "failed" and "ran out of memory" in jobs[0].error
    assert jobs[1].status == "failed" and jobs[1].error == "eps must be finite"
    assert jobs[2].status == "done" and jobs[2].result == 42


def test_per_owner_cap() -> None:
    queue = ComputeQueue(slots=1, per_owner=1)
    gate = threading.Event()
    first = queue.submit(lambda p: gate.wait(10), owner="same")
    with pytest.raises(QueueFullError, match="already have 1"):
        queue.submit(lambda p: None, owner="same")
    gate.set()
    assert first.wait(10)


def test_concurrent_attacks_equal_sequential(lite0, photos224) -> None:
    """A shared model serves concurrent jobs without cross-talk: same numbers as run alone."""
    params = {"eps": 2 / 255, "steps": 2, "step_size": 1 / 255, "random_start": True}
    alone = [run_attack("pgd", lite0, photos224[i : i + 1], params, seed=i).x_adv for i in range(3)]
    queue = ComputeQueue(slots=3)
    jobs = [
        queue.submit(
            lambda p, i=i: run_attack("pgd", lite0, photos224[i : i + 1], params, seed=i), owner=str(i)
        )
        for i in range(3)
    ]
    _wait_all(jobs, 120)
    for i, job in enumerate(jobs):
        assert job.status == "done", job.error
        torch.testing.assert_close(job.result.x_adv, alone[i], atol=1e-6, rtol=0)


def test_limits_local_and_hosted(monkeypatch) -> None:
    monkeypatch.delenv("PERCVIZ_HOSTED", raising=False)
    assert current_limits() == LOCAL
    monkeypatch.setenv("PERCVIZ_HOSTED", "1")
    assert current_limits() == HOSTED
    monkeypatch.setenv("PERCVIZ_MAX_STEPS", "50")
    limits = current_limits()
    assert limits.hosted and limits.max_steps == 50 and not limits.allow_server_folders
    with pytest.raises(ParameterError, match="at most 50 for 'steps'"):
        check_any_params({"steps": 51}, limits)
    check_any_params({"steps": 50, "random_start": True}, limits)
    with pytest.raises(ParameterError, match="pixels on a side"):
        check_image_size(100, 7000, limits)
    monkeypatch.setenv("PERCVIZ_MAX_STEPS", "many")
    with pytest.raises(ParameterError, match="PERCVIZ_MAX_STEPS"):
        current_limits()
