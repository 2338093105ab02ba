"""Batch evaluation on a Ray cluster (``percviz evaluate --engine ray``).

Ray (https://docs.ray.io) is imported only inside these functions: without ``--engine ray`` (or
``PERCVIZ_COMPUTE=ray`` for the hosted queue, :mod:`percviz.serving.ray_jobs`) percviz never imports it.

The work is planned exactly as the in-process engine plans it — one *work unit* per (image batch ×
attack × parameter point), the same batches in the same order — so every row is the number the
in-process engine writes for the same seed, device type and intra-op thread count (workers use the
driver's thread count unless told otherwise: PyTorch's CPU reductions round differently with other
thread counts). Each worker is a Ray actor that loads the model once and keeps it. The driver hands
one unit at a time to each idle worker, writes the returned rows to the row store (once per key: a
duplicated or retried unit never adds a second row), and reports progress in rows across the cluster.

Faults: a worker whose process or node dies is restarted by Ray (``max_restarts``) while its unit
goes back to the front of the line and runs on the next idle worker, up to :data:`MAX_ATTEMPTS`
times; a batch out of device memory is split in halves until it fits
(:func:`percviz.evaluation.run_unit`); a unit that raises (a bad image, one image out of device
memory) is re-run one image at a time so only the offending images become *error rows* —
``{"key", "image", "attack", …, "error": reason}`` — stored like any row and listed in
:attr:`RayEvaluation.errors`. Cancelling (the progress callback returns ``False``, or ``Ctrl-C`` in
the driver) cancels the units in flight and ends the workers; finished rows stay in the store, so
the next run resumes.
"""

from __future__ import annotations

import functools
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from percviz.errors import ParameterError, PercvizError
from percviz.evaluation.data import EvalImage
from percviz.evaluation.engine import Evaluation, explainability_scorer, run_unit
from percviz.evaluation.plan import RunSpec
from percviz.evaluation.store import RowStore, row_key
from percviz.models import Classifier, load_model
from percviz.progress import ProgressCallback

ModelFactory = Callable[[], Classifier]

MAX_ATTEMPTS = 3
"""How many times a unit is started before its rows become error rows (worker deaths)."""
POLL_S = 0.2


# --------------------------------------------------------------------------- runtime


@contextmanager
def ray_runtime(address: str | None = None, num_cpus: int | None = None) -> Iterator[Any]:
    """The ``ray`` module, connected: to ``address`` (``auto``, ``ray://HOST:PORT``), to the runtime
    this process already joined, or to a new local runtime (shut down again on exit)."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if address:
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PercvizError(f"Cannot reach the Ray cluster at '{address}': {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def system_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """Failures of the machinery (a worker or node lost), as opposed to errors raised by a unit."""
    e = ray.exceptions
    return (e.RayActorError, e.WorkerCrashedError, e.ObjectLostError, e.NodeDiedError)


# --------------------------------------------------------------------------- work units


@dataclass(frozen=True)
class WorkUnit:
    """One batch of images under one attack at one parameter point."""

    index: int
    run: RunSpec
    images: tuple[EvalImage, ...]


def plan_units(
    model_id: str,
    images: Sequence[EvalImage],
    runs: Sequence[RunSpec],
    seed: int,
    batch: int,
    store: RowStore | None,
) -> tuple[list[WorkUnit], int]:
    """The in-process engine's batches (rows already in ``store`` left out), and how many were reused."""
    units: list[WorkUnit] = []
    reused = 0
    for run in runs:
        pending = [im for im in images if store is None or row_key(model_id, seed, im, run) not in store]
        reused += len(images) - len(pending)
        for start in range(0, len(pending), batch):
            units.append(WorkUnit(len(units), run, tuple(pending[start : start + batch])))
    return units, reused


def error_row(model_id: str, seed: int, image: EvalImage, run: RunSpec, reason: str) -> dict[str, Any]:
    """The row of an image its unit could not evaluate (same key and identity columns, plus ``error``)."""
    return {
        "key": row_key(model_id, seed, image, run),
        "image": image.name,
        "image_sha256": image.sha256,
        "attack": run.attack,
        "params": json.loads(run.key),
        "params_key": run.key,
        "model": model_id,
        "seed": seed,
        "true_label": image.true_label,
        "error": reason,
    }


def _first_line(exc: BaseException) -> str:
    """The last line of a Ray error's text (the original exception), not its traceback."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())[:300]
    return text if isinstance(exc, PercvizError | ValueError) else f"{type(exc).__name__}: {text}"


class EvalWorker:
    """The body of one Ray actor: one model, loaded once, evaluating units on request."""

    def __init__(self, factory: ModelFactory, threads: int | None, explain: bool) -> None:
        if threads:
            torch.set_num_threads(threads)
        self.failure: str | None = None
        try:
            self.model = factory()
        except Exception as exc:  # reported by info(), so the driver stops with the reason
            self.failure = _reason(exc)
            return
        self.explainer = explainability_scorer() if explain else None

    def info(self) -> dict[str, Any]:
        if self.failure is not None:
            return {"pid": os.getpid(), "failure": self.failure}
        return {"pid": os.getpid(), "device": str(self.model.device), "threads": torch.get_num_threads()}

    def run_unit(self, unit: WorkUnit, seed: int) -> list[dict[str, Any]] | None:
        """The unit's rows (``None`` when cancelled); failing images become error rows."""
        import ray

        context = ray.get_runtime_context()

        def progress(record: dict[str, Any]) -> bool | None:
            return False if context.is_canceled() else None

        try:
            return run_unit(self.model, unit.images, unit.run, seed, self.explainer, progress)
        except Exception as exc:
            if len(unit.images) == 1:
                return [error_row(self.model.spec.id, seed, unit.images[0], unit.run, _reason(exc))]
        rows: list[dict[str, Any]] = []
        for image in unit.images:
            rows += self.run_unit(WorkUnit(unit.index, unit.run, (image,)), seed) or []
        return rows


# --------------------------------------------------------------------------- the driver


@dataclass
class RayEvaluation(Evaluation):
    """:class:`percviz.evaluation.Evaluation` plus error rows and what the cluster did."""

    errors: list[dict[str, Any]] = field(default_factory=list)
    retried: int = 0
    """Units started again because their worker died."""
    duplicates: int = 0
    """Rows that arrived for a key already written (dropped)."""
    workers: list[dict[str, Any]] = field(default_factory=list)


def evaluate_ray(
    model: ModelFactory | str,
    model_id: str,
    images: Sequence[EvalImage],
    runs: Sequence[RunSpec],
    *,
    seed: int = 0,
    batch: int = 8,
    store: RowStore | str | Path | None = None,
    explain: bool = True,
    progress: ProgressCallback | None = None,
    address: str | None = None,
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    threads: int | None = None,
    device: str | None = None,
) -> RayEvaluation:
    """:func:`percviz.evaluation.evaluate` with the units spread over ``workers`` Ray actors.

    ``model`` is a zoo id (each worker calls ``load_model(id, device)``; with ``gpus_per_worker`` > 0
    the worker's default device is its GPU) or a picklable factory. ``threads`` is each worker's
    PyTorch thread count (default: this process's, which keeps CPU rows bit-identical to the
    in-process engine). Progress records are those of the in-process engine (``start``, ``row``)
    plus ``{"stage": "worker", "pid", "device"}`` when a worker is ready, ``{"stage": "dispatch",
    "unit", "worker", "images"}`` when a unit is handed out and ``{"stage": "retry", "unit",
    "attempt", "reason"}`` when a unit's worker died. Raises :class:`KeyboardInterrupt` after
    cleaning up when interrupted (the cluster's work is cancelled, finished rows kept).
    """
    if batch < 1:
        raise ParameterError(f"batch must be at least 1; got {batch}.")
    if workers < 1:
        raise ParameterError(f"--workers must be at least 1; got {workers}.")
    if threads is not None and threads < 1:
        raise ParameterError(f"--threads-per-worker must be at least 1; got {threads}.")
    if gpus_per_worker < 0:
        raise ParameterError(f"--gpus-per-worker must be ≥ 0; got {gpus_per_worker}.")
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        raise ParameterError("Image names must be unique within an evaluation.")
    factory = functools.partial(load_model, model, device) if isinstance(model, str) else model
    rowstore = RowStore(store) if isinstance(store, str | Path) else store
    units, reused = plan_units(model_id, images, runs, seed, batch, rowstore)
    total = len(images) * len(runs)
    out = RayEvaluation([], reused=reused, explain_available=explain)
    if progress is not None and progress({"stage": "start", "total": total, "reused": reused}) is False:
        out.cancelled = True
    fresh: dict[str, dict[str, Any]] = {}
    if units and not out.cancelled:
        with ray_runtime(address, num_cpus=None if address else workers) as ray:
            _drive(
                ray,
                factory,
                model_id,
                units,
                _Options(seed, explain, workers, gpus_per_worker, threads or torch.get_num_threads()),
                _Sink(rowstore, fresh, out, progress, total, reused),
            )
    for run in runs:
        for im in images:
            key = row_key(model_id, seed, im, run)
            row = fresh.get(key) or (rowstore.get(key) if rowstore is not None else None)
            if row is None:
                continue
            (out.errors if "error" in row else out.rows).append(row)
    return out


@dataclass(frozen=True)
class _Options:
    seed: int
    explain: bool
    workers: int
    gpus_per_worker: float
    threads: int


@dataclass
class _Sink:
    """Where finished rows go: the store (once per key), the result and the progress callback."""

    store: RowStore | None
    fresh: dict[str, dict[str, Any]]
    result: RayEvaluation
    progress: ProgressCallback | None
    total: int
    done: int

    def emit(self, record: dict[str, Any]) -> None:
        if self.progress is not None and self.progress(record) is False:
            self.result.cancelled = True

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            key = row["key"]
            if key in self.fresh or (self.store is not None and key in self.store):
                self.result.duplicates += 1
                continue
            if self.store is not None:
                self.store.append(row)
            self.fresh[key] = row
            self.result.computed += 1
            self.done += 1
            self.emit({"stage": "row", "done": self.done, "total": self.total, "row": row})


def _drive(
    ray: Any,
    factory: ModelFactory,
    model_id: str,
    units: list[WorkUnit],
    opts: _Options,
    sink: _Sink,
) -> None:
    """Hand units to idle workers until all are done, cancelled or interrupted; then end the workers."""
    actor_cls = ray.remote(EvalWorker).options(
        num_cpus=1,
        num_gpus=opts.gpus_per_worker,
        max_restarts=-1,
        max_task_retries=0,
    )
    pool = [
        actor_cls.remote(factory, opts.threads, opts.explain) for _ in range(min(opts.workers, len(units)))
    ]
    lost = system_errors(ray)
    line: deque[WorkUnit] = deque(units)
    attempts = dict.fromkeys(range(len(units)), 0)
    probes = {_probe(a): i for i, a in enumerate(pool)}
    busy: dict[Any, tuple[int, WorkUnit]] = {}
    idle: list[int] = []
    pids: dict[int, int] = {}
    failures = dict.fromkeys(range(len(pool)), 0)
    try:
        while (line or busy) and not sink.result.cancelled:
            while idle and line:
                worker, unit = idle.pop(0), line.popleft()
                attempts[unit.index] += 1
                busy[pool[worker].run_unit.remote(unit, opts.seed)] = (worker, unit)
                sink.emit(
                    {
                        "stage": "dispatch",
                        "unit": unit.index,
                        "worker": pids.get(worker),
                        "images": len(unit.images),
                    }
                )
            ready, _ = ray.wait([*probes, *busy], num_returns=1, timeout=POLL_S)
            for ref in ready:
                if ref in probes:
                    worker = probes.pop(ref)
                    try:
                        info = ray.get(ref)
                    except (*lost, ray.exceptions.RayTaskError) as exc:
                        failures[worker] += 1
                        if failures[worker] >= MAX_ATTEMPTS:  # e.g. the factory cannot be unpickled there
                            raise PercvizError(f"A Ray worker could not start: {_first_line(exc)}") from None
                        probes[_probe(pool[worker])] = worker
                        continue
                    if "failure" in info:
                        raise PercvizError(f"A Ray worker could not load the model: {info['failure']}")
                    failures[worker] = 0
                    if pids.get(worker) != info["pid"]:
                        pids[worker] = info["pid"]
                        sink.result.workers.append(info)
                        sink.emit({"stage": "worker", **info})
                    idle.append(worker)
                    continue
                worker, unit = busy.pop(ref)
                try:
                    rows = ray.get(ref)
                except lost as exc:
                    _lost_unit(unit, attempts, line, sink, model_id, opts.seed, exc)
                    probes[_probe(pool[worker])] = worker
                    continue
                except ray.exceptions.RayTaskError as exc:
                    cause = exc.cause or exc
                    rows = [
                        error_row(model_id, opts.seed, im, unit.run, _reason(cause)) for im in unit.images
                    ]
                if rows is None:
                    sink.result.cancelled = True
                    break
                sink.add(rows)
                idle.append(worker)
    except KeyboardInterrupt:
        sink.result.cancelled = True
        raise
    finally:
        for ref in busy:
            ray.cancel(ref)
        for actor in pool:
            ray.kill(actor, no_restart=True)


def _probe(actor: Any) -> Any:
    """A reference that resolves when ``actor`` is up (again, after a restart) with its info."""
    return actor.info.options(max_task_retries=-1).remote()


def _lost_unit(
    unit: WorkUnit,
    attempts: dict[int, int],
    line: deque[WorkUnit],
    sink: _Sink,
    model_id: str,
    seed: int,
    exc: BaseException,
) -> None:
    """A unit whose worker died: back to the front of the line, or error rows after the last attempt."""
    reason = f"its worker stopped ({type(exc).__name__})"
    if attempts[unit.index] < MAX_ATTEMPTS:
        sink.result.retried += 1
        line.appendleft(unit)
        sink.emit({"stage": "retry", "unit": unit.index, "attempt": attempts[unit.index], "reason": reason})
        return
    text = f"gave up after {attempts[unit.index]} attempts: {reason}"
    sink.add([error_row(model_id, seed, im, unit.run, text) for im in unit.images])


def cluster_summary(result: RayEvaluation) -> Mapping[str, Any]:
    """What the cluster did, for ``summary.json``."""
    return {
        "engine": "ray",
        "workers": result.workers,
        "retried_units": result.retried,
        "duplicate_rows_dropped": result.duplicates,
    }
