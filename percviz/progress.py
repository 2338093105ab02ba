"""The progress callback every long computation takes: ``(record) -> bool | None``.

A record is a plain dict (``{"stage": ..., "done": ..., "total": ...}`` and whatever the stage adds);
returning ``False`` asks the computation to stop (work already finished is kept).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ProgressCallback = Callable[[dict[str, Any]], bool | None]


def emit(progress: ProgressCallback | None, record: dict[str, Any]) -> bool:
    """Send ``record`` to ``progress`` (when there is one); True when the receiver asked to stop."""
    return progress is not None and progress(record) is False


def part_progress(progress: ProgressCallback, index: int, count: int, name: str) -> ProgressCallback:
    """Records of part ``index`` of ``count`` with an overall ``fraction`` and ``"name (i of n)"``
    as their message; the part's own ``iteration``/``done`` over ``total`` fills its share."""

    def inner(record: dict[str, Any]) -> bool | None:
        sub = 0.0
        if record.get("total"):
            key = "iteration" if "iteration" in record else "done"
            sub = float(record.get(key, 0)) / float(record["total"])
        return progress(
            {
                **record,
                "fraction": (index + min(sub, 1.0)) / count,
                "message": f"{name} ({index + 1} of {count})",
            }
        )

    return inner
