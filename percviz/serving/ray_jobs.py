"""Hosted jobs on Ray workers (``PERCVIZ_COMPUTE=ray``): :class:`RayDispatcher`.

The compute queue of :mod:`percviz.serving.jobs` keeps its line, caps, cancel and time limit, and
hands each running job to a Ray worker (one per slot, one GPU each when the cluster has GPUs).
Models captured by a job travel by id: each worker loads its own copy once
(:func:`register_model_factory` for models outside the zoo). Ray is imported only when a job runs.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from percviz.errors import PercvizError
from percviz.evaluation.cluster import POLL_S, ModelFactory, system_errors
from percviz.models import Classifier, load_model
from percviz.progress import ProgressCallback

ADDRESS_ENV = "PERCVIZ_RAY_ADDRESS"
"""Cluster address for the hosted queue (``auto``, ``ray://HOST:10001``); unset = local runtime."""
GPUS_ENV = "PERCVIZ_RAY_GPUS_PER_WORKER"
"""GPUs per hosted worker; unset = 1 when the cluster has GPUs, else 0."""

_FACTORIES: dict[str, ModelFactory] = {}
_SENT: dict[str, Classifier] = {}
_WORKER_MODELS: dict[str, Classifier] = {}
_MODEL_LOCK = threading.Lock()


def register_model_factory(model_id: str, factory: ModelFactory) -> None:
    """How hosted workers build a model that is not in the zoo (``factory`` must be picklable)."""
    _FACTORIES[model_id] = factory


def _send_model(model: Classifier) -> tuple[str, str, ModelFactory | None]:
    token = f"{os.getpid()}:{id(model)}"
    _SENT[token] = model
    return model.spec.id, token, _FACTORIES.get(model.spec.id)


def _receive_model(payload: tuple[str, str, ModelFactory | None]) -> Classifier:
    """The sender's own object in the sending process; elsewhere this process's copy, loaded once."""
    model_id, token, factory = payload
    if token in _SENT:
        return _SENT[token]
    with _MODEL_LOCK:
        if model_id not in _WORKER_MODELS:
            _WORKER_MODELS[model_id] = factory() if factory is not None else load_model(model_id)
        return _WORKER_MODELS[model_id]


class JobWorker:
    """The body of one hosted Ray actor: runs job functions, reports their progress when polled."""

    def __init__(self) -> None:
        self._last: dict[str, dict[str, Any]] = {}
        self._stop: set[str] = set()
        self._lock = threading.Lock()

    def pid(self) -> int:
        return os.getpid()

    def run(self, job_id: str, work: Callable[[ProgressCallback], Any]) -> Any:
        from percviz.attacks.base import stop_when

        def progress(record: dict[str, Any]) -> bool:
            with self._lock:
                self._last[job_id] = dict(record)
                return job_id not in self._stop

        try:
            with stop_when(lambda: job_id in self._stop):
                return work(progress)
        finally:
            with self._lock:
                self._stop.discard(job_id)

    def poll(self, job_id: str, stop: bool) -> dict[str, Any] | None:
        with self._lock:
            if stop:
                self._stop.add(job_id)
            return self._last.pop(job_id, None)


class RayDispatcher:
    """Runs compute-queue jobs on Ray workers: ``slots`` actors, one GPU each when there are GPUs.

    :meth:`run` has the signature of a direct call ``work(progress)``: it blocks until the remote
    job ends, relays the job's progress records to ``progress`` (whose ``False`` stops the remote
    job) and returns the job's result or raises its exception. A job whose worker died is started
    once more on a fresh worker.
    """

    def __init__(self, slots: int, address: str | None = None) -> None:
        self.slots = slots
        self.address = address if address is not None else os.environ.get(ADDRESS_ENV) or None
        self._lock = threading.Lock()
        self._free: list[Any] = []
        self._available = threading.Semaphore(0)
        self._started = False

    def _ray(self) -> Any:
        import ray

        with self._lock:
            if not ray.is_initialized():
                kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
                if self.address:
                    kwargs["address"] = self.address
                ray.init(**kwargs)
            ray.util.register_serializer(Classifier, serializer=_send_model, deserializer=_receive_model)
            if not self._started:
                raw = os.environ.get(GPUS_ENV)
                gpus = float(raw) if raw else (1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0)
                cls = ray.remote(JobWorker).options(
                    num_cpus=0, num_gpus=gpus, max_restarts=-1, max_task_retries=2, max_concurrency=2
                )
                self._free = [cls.remote() for _ in range(self.slots)]
                for _ in self._free:
                    self._available.release()
                self._started = True
        return ray

    def run(
        self,
        work: Callable[[ProgressCallback], Any],
        progress: ProgressCallback,
    ) -> Any:
        ray = self._ray()
        self._available.acquire()
        with self._lock:
            actor = self._free.pop()
        try:
            for attempt in (1, 2):
                try:
                    return self._follow(ray, actor, work, progress)
                except system_errors(ray):
                    if attempt == 2:
                        raise PercvizError(
                            "The compute worker stopped twice while running this job."
                        ) from None
        finally:
            with self._lock:
                self._free.append(actor)
            self._available.release()

    def _follow(self, ray: Any, actor: Any, work: Callable[..., Any], progress: ProgressCallback) -> Any:
        job_id = uuid.uuid4().hex
        ref = actor.run.remote(job_id, work)
        stop = False
        last: dict[str, Any] | None = None
        ready: list[Any] = []
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=POLL_S)
                record = ray.get(actor.poll.remote(job_id, stop))
                last = record if record is not None else last
                if last is not None and progress(last) is False:
                    stop = True
                if ready:
                    try:
                        return ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        raise (exc.cause or exc) from None
        finally:
            if not ready:
                actor.poll.remote(job_id, True)
                ray.cancel(ref)
