"""One rule for writing numbers to JSON, which has no inf and no NaN.

``±inf`` becomes the string ``"inf"``/``"-inf"`` (read back by the parameter schema and recipes),
NaN becomes ``null`` (a value that is not defined), tensors, arrays and numpy scalars become Python
lists and numbers, mapping keys become strings. Everything percviz writes (result.json, summary.json,
rows, recipes, the registry listing) goes through :func:`json_safe`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch


def json_safe(value: Any) -> Any:
    """``value`` with every part strict-JSON encodable (see the module docstring); other objects as ``str``."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, torch.Tensor):
        return json_safe(value.detach().cpu().tolist())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON text of ``value`` (:func:`json_safe` first; a bare NaN or Infinity can never be written)."""
    import json

    return json.dumps(json_safe(value), allow_nan=False, **kwargs)
