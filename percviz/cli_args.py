"""Command-line arguments shared by ``percviz attack``, ``evaluate`` and the regression commands:
``--param NAME=VALUE``, ``--sweep NAME=V1,V2`` and the model reference with its options."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from percviz.errors import ParameterError


def parse_params(items: Sequence[str]) -> dict[str, str]:
    """``["eps=0.03", "loss=cw"]`` → ``{"eps": "0.03", "loss": "cw"}`` (validated later)."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ParameterError(f"--param takes NAME=VALUE; got '{item}'.")
        out[name.strip()] = value.strip()
    return out


def parse_sweep(items: Sequence[str]) -> dict[str, list[str]]:
    """``["eps=0.01,0.02"]`` → ``{"eps": ["0.01", "0.02"]}`` (validated against the schema later)."""
    out: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        parts = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name.strip() or not parts:
            raise ParameterError(f"--sweep takes NAME=V1,V2,...; got '{item}'.")
        out[name.strip()] = parts
    return out


def model_arg(args: argparse.Namespace, default: str | None = None) -> str | None:
    """The model reference from ``--model`` plus ``--labels/--input-size/--mean/--std/--cam-layer``."""
    from percviz.models.custom import model_ref

    base = args.model or default
    if base is None:
        return None
    return model_ref(
        base,
        labels=getattr(args, "class_names", None),
        input_size=getattr(args, "input_size", None),
        mean=getattr(args, "mean", None),
        std=getattr(args, "std", None),
        cam_layer=getattr(args, "cam_layer", None),
    )
