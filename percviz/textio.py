"""Reading the small text files a user names (labels, recipes, configs) without trusting their size.

A path may point at ``/dev/zero``, a FIFO or a multi-gigabyte file: at most ``limit + 1`` bytes are
ever read, and a larger file is refused with one sentence.
"""

from __future__ import annotations

from pathlib import Path

from percviz.errors import PercvizError

MAX_TEXT_BYTES = 16 * 2**20  # labels of a million classes fit many times over


def read_capped(
    path: str | Path, what: str, limit: int = MAX_TEXT_BYTES, error: type[PercvizError] = PercvizError
) -> bytes:
    """The bytes of ``path`` (``what`` names it in messages), refused with ``error`` when larger
    than ``limit`` or unreadable; never reads more than ``limit + 1`` bytes."""
    try:
        with Path(path).expanduser().open("rb") as fh:
            data = fh.read(limit + 1)
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise error(f"Cannot read {what} '{path}': {reason}.") from None
    if len(data) > limit:
        raise error(
            f"{what.capitalize()} '{path}' is larger than {limit:,} bytes; a {what} is at most {limit:,} bytes."
        )
    return data


def read_capped_text(
    path: str | Path, what: str, limit: int = MAX_TEXT_BYTES, error: type[PercvizError] = PercvizError
) -> str:
    """:func:`read_capped` decoded as UTF-8 (refused with ``error`` when it is not)."""
    try:
        return read_capped(path, what, limit, error).decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what.capitalize()} '{path}' is not UTF-8 text.") from None
