"""Background runs for one session: submit to the shared compute queue, show progress, cancel.

The work runs in a queue thread (``percviz.serving.jobs``); the page script polls it with a progress bar.
Any widget interaction reruns the script and polling resumes; the Cancel button's callback asks
the job to stop at its next progress report, and so does a session that stops while it waits
(its browser disconnected: Streamlit stops the script), so a departed user never holds the compute
slot. A finished job's result is handed to ``on_done`` exactly once; failures become one sentence
kept until the next run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import StopException

from percviz.progress import ProgressCallback
from percviz.serving.jobs import Job, QueueFullError
from ui.common import compute_queue, session_owner

POLL_S = 0.2


def _slot(name: str) -> str:
    return f"pv_job_{name}"


def running(name: str) -> bool:
    info = st.session_state.get(_slot(name))
    return info is not None and not info["job"].finished


def submit(name: str, work: Callable[[ProgressCallback], Any], label: str, **meta: Any) -> bool:
    """Queue ``work(progress)`` for this session under ``name``; False (and a message) if refused."""
    if running(name):
        st.warning("A run is already in progress on this page; cancel it or wait for it to finish.")
        return False
    st.session_state.pop(f"pv_notice_{name}", None)
    try:
        job = compute_queue().submit(work, owner=session_owner())
    except QueueFullError as exc:
        st.error(str(exc))
        return False
    st.session_state[_slot(name)] = {"job": job, "label": label, **meta}
    return True


def pending_key(name: str) -> str | None:
    """The ``key`` meta of this page's job while it runs (None when none runs)."""
    info = st.session_state.get(_slot(name))
    return info.get("key") if info is not None and not info["job"].finished else None


def replace(name: str, work: Callable[[ProgressCallback], Any], label: str, **meta: Any) -> bool:
    """Live mode: cancel this page's running job (its result is dropped), then queue ``work``."""
    info = st.session_state.pop(_slot(name), None)
    if info is not None and not info["job"].finished:
        info["job"].cancel()
        info["job"].wait(REPLACE_WAIT_S)  # stops within one iteration; frees this session's queue share
    return submit(name, work, label, **meta)


REPLACE_WAIT_S = 5.0


def _fraction(record: dict[str, Any]) -> float:
    if "fraction" in record:
        value = float(record["fraction"])
    else:
        done = record.get("iteration", record.get("done", record.get("step", 0)))
        total = record.get("total") or 0
        value = float(done) / float(total) if total else 0.0
    return 0.0 if math.isnan(value) else min(max(value, 0.0), 1.0)


def _describe(job: Job, label: str) -> str:
    if job.status == "queued":
        return f"{label}: waiting for the compute slot ({job.position()} ahead)…"
    record = job.last_progress
    text = f"{label}: starting…"
    if "iteration" in record and "total" in record:
        text = f"{label}: iteration {record['iteration']} of {record['total']}"
    elif "done" in record and "total" in record:
        text = f"{label}: {record['done']} of {record['total']}"
    if "message" in record:
        text += f" — {record['message']}"
    for name in ("loss", "fooled_before_step", "ssim"):
        value = record.get(name)
        if isinstance(value, int | float):
            text += f" · {name.replace('_', ' ')} {value:.3g}"
    if job.cancel_requested:
        text += " — cancelling…"
    return text


def follow(
    name: str,
    on_done: Callable[[Any, dict[str, Any]], str | None],
    while_running: Callable[[Any, dict[str, Any]], None] | None = None,
) -> None:
    """Poll this page's job (if any) until it ends; then hand the result over and clear it.

    ``on_done(result, meta)`` stores the result and may return a note to show (e.g. cancelled).
    ``while_running(placeholder, meta)``, called at every poll, may draw what the job has finished
    so far into ``placeholder`` (an ``st.empty`` under the progress bar, cleared at the end).
    """
    info = st.session_state.get(_slot(name))
    if info is not None:
        job: Job = info["job"]
        if not job.finished:
            box = st.empty()
            partial = st.empty()
            try:
                with box.container(border=True):
                    left, right = st.columns([5, 1], vertical_alignment="center")
                    bar = left.progress(0.0, text=_describe(job, info["label"]))
                    right.button("Cancel", key=f"{name}_cancel", on_click=job.cancel, width="stretch")
                while not job.wait(POLL_S):
                    bar.progress(_fraction(job.last_progress), text=_describe(job, info["label"]))
                    if while_running is not None:
                        while_running(partial, info)
            except StopException:  # the browser left (or pressed Stop): free the compute slot
                job.cancel()
                raise
            box.empty()
            partial.empty()
        st.session_state.pop(_slot(name), None)
        notice: tuple[str, str] | None = None
        if job.status == "failed":
            notice = ("error", job.error or "The computation failed.")
        elif job.result is None:
            notice = ("warning", "The run was cancelled before it started; nothing changed.")
        else:
            try:
                note = on_done(job.result, info)
            except Exception as exc:  # the result could not be stored: say so in one sentence
                from ui.common import one_sentence

                notice = ("error", one_sentence(exc))
            else:
                if job.status == "cancelled":
                    notice = ("warning", note or "Cancelled; showing what was computed so far.")
                elif note:
                    notice = ("info", note)
        if notice:
            st.session_state[f"pv_notice_{name}"] = notice
    shown = st.session_state.get(f"pv_notice_{name}")
    if shown:
        getattr(st, shown[0])(shown[1])
