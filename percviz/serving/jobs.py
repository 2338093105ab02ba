"""A bounded FIFO compute queue for shared servers: N jobs run at once, others wait.

Each job runs in its own thread once a slot is free, in submission order. A waiting job knows its
place in line; a job can be cancelled while waiting (it never runs) or while running: its progress
callback returns ``False`` and, inside a step, the attack's :meth:`AttackContext.check_cancel`
raises, so the attack stops between two gradient passes. A running job past the queue's time limit
(hosted mode) is stopped the same way and fails with a sentence saying so. Any exception —
including a CUDA out-of-memory — is caught and kept as a one-sentence message for the job's owner
only; the queue and the other jobs carry on.

On shutdown (SIGTERM: Streamlit stops its server and the interpreter exits) every queue stops
accepting jobs, cancels the waiting and running ones and waits up to :data:`SHUTDOWN_GRACE_S` for
them to end, so no job thread is inside PyTorch while the interpreter tears down (which aborts
the process).

Usage::

    queue = ComputeQueue(slots=1)
    job = queue.submit(lambda progress: run_attack(..., progress=progress), owner="session-id")
    job.position()   # 0 = running, k = k jobs ahead
    job.cancel()
    job.wait(timeout) / job.status / job.result / job.error / job.last_progress
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Literal

import torch

from percviz.attacks.base import AttackCancelled, stop_when
from percviz.device import out_of_memory
from percviz.errors import PercvizError
from percviz.progress import ProgressCallback

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]

#: Test hook for the fault tests (``scripts/loadtest.py fault``), off unless set: a comma-separated
#: list of job tickets (``"0"`` = the first job a queue runs) whose first progress report raises
#: ``torch.cuda.OutOfMemoryError``, as a device running out of memory mid-run would. Read once when
#: a queue is created.
INJECT_OOM_ENV = "PERCVIZ_TEST_OOM_TICKETS"
#: Seconds a shutting-down process waits for its cancelled jobs to stop.
SHUTDOWN_GRACE_S = 10.0
#: Where running jobs compute: unset = in this process; ``ray`` = on Ray workers, one per slot
#: (:class:`percviz.serving.ray_jobs.RayDispatcher`; ``PERCVIZ_RAY_ADDRESS`` names the cluster). Read
#: once when a queue is created.
COMPUTE_ENV = "PERCVIZ_COMPUTE"


class QueueFullError(PercvizError):
    """The owner already has the maximum number of jobs in the queue."""


class QueueClosedError(QueueFullError):
    """The server is shutting down and takes no new jobs (a refusal shown like a full queue)."""


class Job:
    """One unit of work and its state; created by :meth:`ComputeQueue.submit`."""

    def __init__(
        self, queue: ComputeQueue, ticket: int, owner: str, work: Callable[[ProgressCallback], Any]
    ) -> None:
        self.ticket = ticket
        self.owner = owner
        self.status: JobStatus = "queued"
        self.result: Any = None
        self.error: str | None = None
        self.last_progress: dict[str, Any] = {}
        self._queue = queue
        self._work = work
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._inject_oom = False
        self._deadline: float | None = None
        self.timed_out = False

    def position(self) -> int:
        """0 when running or finished; otherwise how many jobs are ahead in line."""
        return self._queue.position(self)

    def cancel(self) -> None:
        """Stop waiting, or ask a running job to stop at its next progress report."""
        self._cancel.set()
        self._queue.wake()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until finished; True if it finished within ``timeout``."""
        return self._done.wait(timeout)

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    def _should_stop(self) -> bool:
        """Cancelled, or past the time limit (then :attr:`timed_out`)."""
        if self._deadline is not None and not self.timed_out and time.monotonic() > self._deadline:
            self.timed_out = True
            self._cancel.set()
        return self._cancel.is_set()

    def _progress(self, record: dict[str, Any]) -> bool:
        if self._inject_oom:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (simulated by {INJECT_OOM_ENV}).")
        self.last_progress = dict(record)
        return not self._should_stop()

    def _run(self, time_limit_s: float) -> None:
        if time_limit_s > 0:
            self._deadline = time.monotonic() + time_limit_s
        try:
            with stop_when(self._should_stop):
                self.result = self._queue.execute(self._work, self._progress)
            self.status = "cancelled" if self._cancel.is_set() else "done"
        except AttackCancelled:
            self.status = "cancelled"
        except Exception as exc:
            self.status = "failed"
            self.error = describe_failure(exc)
        finally:
            if self.timed_out:
                self.status = "failed"
                self.error = (
                    f"This job reached the server's time limit of {time_limit_s:g} s and was stopped; "
                    "try fewer steps, candidates or images."
                )
            self._done.set()


def describe_failure(exc: BaseException) -> str:
    """One sentence for the user; frees GPU memory after an out-of-memory error."""
    if out_of_memory(exc):
        return "The device ran out of memory for this job; try a smaller image, batch or fewer steps."
    if isinstance(exc, PercvizError | ValueError):
        return " ".join(str(exc).split())
    return f"The computation failed ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})."


def _executor(slots: int) -> Callable[[Callable[[ProgressCallback], Any], ProgressCallback], Any]:
    """How a running job's ``work(progress)`` is executed (:data:`COMPUTE_ENV`)."""
    engine = os.environ.get(COMPUTE_ENV, "").strip().lower()
    if engine == "ray":
        from percviz.serving.ray_jobs import RayDispatcher

        return RayDispatcher(slots).run
    if engine not in ("", "local"):
        raise ValueError(f"{COMPUTE_ENV} must be 'ray' or unset; got {engine!r}.")
    return lambda work, progress: work(progress)


class ComputeQueue:
    """FIFO queue running at most ``slots`` jobs at once; at most ``per_owner`` queued per owner.

    ``time_limit_s``: a running job is stopped after that many seconds (0 = never; ``None`` = the
    limit in force, :attr:`percviz.limits.Limits.job_time_limit_s`).
    """

    def __init__(self, slots: int = 1, per_owner: int = 2, time_limit_s: float | None = None) -> None:
        if slots < 1 or per_owner < 1:
            raise ValueError(f"slots and per_owner must be ≥ 1; got {slots}, {per_owner}.")
        if time_limit_s is None:
            from percviz.limits import current_limits

            time_limit_s = float(current_limits().job_time_limit_s)
        self.slots = slots
        self.per_owner = per_owner
        self.time_limit_s = max(0.0, time_limit_s)
        self.closed = False
        self._lock = threading.Condition()
        self._waiting: list[Job] = []
        self._running: set[Job] = set()
        self._tickets = itertools.count()
        raw = os.environ.get(INJECT_OOM_ENV, "")
        self._inject_oom = {int(t) for t in raw.split(",") if t.strip()}
        self.execute = _executor(slots)
        _QUEUES.add(self)

    def submit(self, work: Callable[[ProgressCallback], Any], owner: str = "") -> Job:
        """Queue ``work(progress)``; returns immediately with the job handle."""
        with self._lock:
            if self.closed:
                raise QueueClosedError("The server is shutting down; try again in a minute.")
            mine = [j for j in (*self._waiting, *self._running) if j.owner == owner and not j.finished]
            if owner and len(mine) >= self.per_owner:
                raise QueueFullError(
                    f"You already have {len(mine)} jobs queued or running; wait for one to finish or cancel it."
                )
            job = Job(self, next(self._tickets), owner, work)
            job._inject_oom = job.ticket in self._inject_oom
            self._waiting.append(job)
        threading.Thread(
            target=self._serve, args=(job,), name=f"percviz-job-{job.ticket}", daemon=True
        ).start()
        return job

    def position(self, job: Job) -> int:
        with self._lock:
            return self._waiting.index(job) + 1 if job in self._waiting else 0

    def wake(self) -> None:
        with self._lock:
            self._lock.notify_all()

    def close(self, grace_s: float = SHUTDOWN_GRACE_S) -> bool:
        """Take no more jobs, cancel every waiting and running one, and wait up to ``grace_s`` for
        the running ones to stop; True if none is left running."""
        with self._lock:
            self.closed = True
            jobs = [*self._waiting, *self._running]
        for job in jobs:
            job.cancel()
        deadline = time.monotonic() + grace_s
        with self._lock:
            while self._running or self._waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(left)
        return True

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"waiting": len(self._waiting), "running": len(self._running), "slots": self.slots}

    def _serve(self, job: Job) -> None:
        with self._lock:
            while not job.cancel_requested and not (
                self._waiting and self._waiting[0] is job and len(self._running) < self.slots
            ):
                self._lock.wait()
            self._waiting.remove(job)
            if job.cancel_requested:
                job.status = "cancelled"
                job._done.set()
                self._lock.notify_all()
                return
            self._running.add(job)
            job.status = "running"
            self._lock.notify_all()
        try:
            job._run(self.time_limit_s)
        finally:
            with self._lock:
                self._running.discard(job)
                self._lock.notify_all()


_QUEUES: weakref.WeakSet[ComputeQueue] = weakref.WeakSet()


def close_all(grace_s: float = SHUTDOWN_GRACE_S) -> bool:
    """:meth:`ComputeQueue.close` on every queue of this process, sharing one grace period."""
    deadline = time.monotonic() + grace_s
    return all([q.close(max(0.0, deadline - time.monotonic())) for q in list(_QUEUES)])


atexit.register(close_all)
