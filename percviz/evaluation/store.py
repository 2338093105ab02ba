"""The resumable row store (JSON lines) and the per-image CSV table."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from percviz.evaluation.data import EvalImage
from percviz.evaluation.plan import RunSpec
from percviz.jsonsafe import dumps

CSV_COLUMNS = (
    "image",
    "attack",
    "params",
    "model",
    "seed",
    "label_before",
    "class_before",
    "prob_before",
    "label_after",
    "class_after",
    "prob_after",
    "true_label",
    "success",
    "already_target",
    "fooled",
    "within_bound",
    "bound_excess",
    "png_still_adversarial",
    "ssim",
    "psnr",
    "s1",
    "s2",
    "l0",
    "l2",
    "linf",
    "l2_255",
    "linf_255",
    "lpips_self",
    "precision",
    "recall",
    "iou",
    "iou_outside",
    "fraction_perturbed",
    "forward_passes",
    "backward_passes",
    "passes",
    "wall_time_s",
    "batch_size",
    "image_sha256",
)
EXPLAIN_COLUMNS = ("precision", "recall", "iou", "iou_outside", "fraction_perturbed")


# --------------------------------------------------------------------------- persistence


class RowStore:
    """Rows appended one JSON line each (flushed), so a killed run keeps what it finished.

    Reading skips what is not a row — a torn last line (killed mid-write), bytes that are not
    UTF-8, anything else — and counts it in :attr:`skipped`; every valid row is kept. Every append
    starts on a fresh line, so a row never lands glued to a torn one.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self.skipped = 0
        self._needs_newline = False
        if self.path.is_file():
            data = self.path.read_bytes()
            self._needs_newline = bool(data) and not data.endswith(b"\n")
            for raw in data.split(b"\n"):
                if not raw.strip():
                    continue
                try:
                    row = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    self.skipped += 1
                    continue
                if isinstance(row, dict) and "key" in row:
                    self.rows[row["key"]] = row
                else:
                    self.skipped += 1

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def get(self, key: str) -> dict[str, Any] | None:
        return self.rows.get(key)

    def append(self, row: dict[str, Any]) -> None:
        self.rows[row["key"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            if self._needs_newline:  # the file ends in a torn line: start this row on its own
                fh.write("\n")
                self._needs_newline = False
            fh.write(dumps(row) + "\n")
            fh.flush()


def row_key(model_id: str, seed: int, image: EvalImage, run: RunSpec) -> str:
    return json.dumps([model_id, seed, image.name, image.sha256, run.attack, run.key])


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> None:
    """Per-image table: the fixed columns, then one ``param.NAME`` column per parameter."""
    pnames = sorted({k for r in rows for k in r.get("params", {})})
    header = [*CSV_COLUMNS, *(f"param.{n}" for n in pnames)]
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for r in rows:
            line = []
            for col in header:
                if col.startswith("param."):
                    line.append(_csv_value(r.get("params", {}).get(col[6:])))
                elif col == "params":
                    line.append(r.get("params_key", ""))
                else:
                    line.append(_csv_value(r.get(col)))
            writer.writerow(line)


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            repr(value)
            if math.isfinite(value)
            else ("inf" if value > 0 else ("-inf" if value < 0 else "nan"))
        )
    return str(value)
