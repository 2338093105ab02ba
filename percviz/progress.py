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
